"""Memory limits: the memory a size taken from input implies, checked before it is allocated.

Every size that comes from a flag (``--n``, ``--samples``, ``--nll-samples``, ...), a config
(``latent_dim``, ``hidden``, ``channels``, ``num_particles``, ``batch_size``, ...), a
checkpoint's config and input shape, or the header of a data file is turned into an estimate
of the bytes it needs. Above the memory this machine has available, a one-line error names
the size, the memory and the fix, before anything large is allocated::

    check_bytes(n_bytes, what, fix)      the one check; ``what`` names the size, ``fix`` the cure

Available memory (the budget): the smallest of what the machine and this process's limits
leave, each where present (:func:`memory_budget`):

    the machine      ``MemAvailable`` of /proc/meminfo (Linux), else ``os.sysconf``'s available
                     (or, failing that, total) physical pages, else :data:`FALLBACK_BYTES`
    RLIMIT_AS        ``ulimit -v``, less the address space the process already holds (VmSize
                     of /proc/self/status); RLIMIT_DATA likewise, less VmData
    the cgroup       memory.max (cgroup v2) or memory.limit_in_bytes (v1) of this process's
                     cgroup and each cgroup above it, less its usage (memory.current /
                     memory.usage_in_bytes) without the reclaimable inactive file cache

and on a CUDA device, the free memory torch reports for it.

Work: a size that costs time rather than memory (``evaluate --ais-steps`` x ``--ais-chains``
x ``--ais-leapfrog`` x points: gradient evaluations of one point) is refused above
:data:`MAX_WORK` (:func:`check_work`; raise it with the environment variable
``PYROVAE_MAX_WORK=N`` to confirm a long job).

Estimates (float32, 4 bytes a number; within about 2x of what torch really allocates, and
erring on the high side, so only sizes far beyond the machine are refused):

    model_parameters(config, shape)   numbers (parameters and buffers) of the model a [model]
                                      config builds for inputs of ``shape``, before building
                                      it: asked of its kind in MODEL_KINDS
                                      (``Kind.parameter_count``, exact: a meta-device build or
                                      its components' own counts); None for a kind that cannot
                                      say (a module you wrote)
    point_floats(config, shape)       numbers one data point (one particle) passes through the
                                      decoder and the likelihood, as its kind estimates them
                                      (``Kind.point_floats``; else a built model's
                                      ``particle_bytes``): activations per point
    training_bytes(...)               gradients and Adam's moments (3 x 4 bytes a parameter)
                                      + 2 x activations of batch x particles (forward and
                                      backward)
    inference_bytes(model, points)    activations of ``points`` points (or points x draws)
                                      through a built model, without gradients
    array_bytes(shape, dtype)         an array file's data, from its header

Pictures: a grid shows at most :data:`MAX_GRID_IMAGES` images, and a labelled grid
(interpolate, traverse, the latent manifold, by-class) at most :data:`MAX_GRID_SIDE` rows or
columns (docs/reliability.md, "Every command: inputs, sizes and arguments").
"""

from __future__ import annotations

import math
import os

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.interface import input_dim
from pyrovae.runtime.registry import MODEL_KINDS

PROC_STATUS, PROC_MOUNTS, PROC_CGROUP = "/proc/self/status", "/proc/mounts", "/proc/self/cgroup"
FALLBACK_BYTES = 64 * 2**30  # when the machine does not say how much memory it has
MAX_WORK = 10**10            # gradient evaluations of one point that one command may start
WORK_ENV = "PYROVAE_MAX_WORK"  # the environment variable that raises (confirms) MAX_WORK
FLOAT = 4                    # bytes of one float32
MAX_GRID_IMAGES = 1024       # images in one PNG grid (sample.png: the first 1024 draws)
MAX_GRID_SIDE = 100          # rows or columns of a labelled grid (steps, --top, --grid, ...)
GROUPED_BOUNDS = ("miwae", "piwae")  # bounds that draw objective.groups x num_particles


# ---- the machine -------------------------------------------------------------------------------

def _kb_line(path: str, key: str) -> int | None:
    """A ``key:  N kB`` line of a /proc file (MemAvailable, VmSize, VmData) in bytes."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _meminfo_available() -> int | None:
    return _kb_line("/proc/meminfo", "MemAvailable")


def _sysconf_available() -> int | None:
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            n, size = os.sysconf(pages), os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
        if n > 0 and size > 0:
            return n * size
    return None


def _status_bytes(key: str) -> int | None:
    """A ``key:  N kB`` line of /proc/self/status (VmSize, VmData) in bytes."""
    return _kb_line(PROC_STATUS, key)


def _rlimit_available() -> tuple[int, str] | None:
    """(bytes, why) that RLIMIT_AS (less VmSize) or RLIMIT_DATA (less VmData) still allow
    this process, the smaller; None when neither is set."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    best = None
    for name, used, flag in (("RLIMIT_AS", "VmSize", "ulimit -v"),
                             ("RLIMIT_DATA", "VmData", "ulimit -d")):
        try:
            soft = resource.getrlimit(getattr(resource, name))[0]
        except (AttributeError, ValueError, OSError):
            continue
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        held = _status_bytes(used) or 0
        left = max(soft - held, 0)
        if best is None or left < best[0]:
            best = (left, f"the process's {name} ({flag}) of {format_bytes(soft)} less "
                          f"{format_bytes(held)} it holds")
    return best


def _read_number(path: str) -> int | None:
    """The integer in a cgroup file; None for "max", a missing file or junk."""
    try:
        with open(path) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stat_value(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_mounts() -> dict:
    """{"v2": mount point, "v1": mount point of the memory controller} from /proc/mounts."""
    mounts = {}
    try:
        with open(PROC_MOUNTS) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 4:
                    continue
                if parts[2] == "cgroup2":
                    mounts.setdefault("v2", parts[1])
                elif parts[2] == "cgroup" and "memory" in parts[3].split(","):
                    mounts.setdefault("v1", parts[1])
    except OSError:
        pass
    return mounts


#: cgroup version -> (limit file, usage file, memory.stat key of reclaimable file cache)
_CGROUP_FILES = {"v2": ("memory.max", "memory.current", "inactive_file"),
                 "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}
_NO_LIMIT = 2**60  # v1 writes "no limit" as a huge number (9223372036854771712)


def _cgroup_available() -> tuple[int, str] | None:
    """(bytes, why) this process's memory cgroups still allow: over its cgroup and every one
    above it (v2 and v1), the smallest limit less usage (without the inactive file cache,
    which the kernel reclaims first); None where no cgroup has a memory limit."""
    mounts, best = _cgroup_mounts(), None
    try:
        with open(PROC_CGROUP) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        version = ("v2" if parts[0] == "0" and parts[1] == "" else
                   "v1" if "memory" in parts[1].split(",") else None)
        if version is None or version not in mounts:
            continue
        limit_name, usage_name, cache_key = _CGROUP_FILES[version]
        root = os.path.normpath(mounts[version])
        here = os.path.normpath(os.path.join(root, parts[2].lstrip("/")))
        if os.path.commonpath([root, here]) != root or not os.path.isdir(here):
            here = root  # a cgroup namespace: the mount is this process's own cgroup
        while True:
            limit = _read_number(os.path.join(here, limit_name))
            if limit is not None and 0 < limit < _NO_LIMIT:
                usage = _read_number(os.path.join(here, usage_name)) or 0
                usage -= min(_stat_value(os.path.join(here, "memory.stat"), cache_key), usage)
                left = max(limit - usage, 0)
                if best is None or left < best[0]:
                    best = (left, f"the cgroup's {limit_name} of {format_bytes(limit)} less "
                                  f"{format_bytes(usage)} in use")
            if here == root:
                break
            here = os.path.dirname(here)
    return best


def memory_budget(device=None) -> tuple[int, str | None]:
    """(bytes this process may still use, why, when a limit of the process rather than the
    machine's available memory sets it): on ``device`` when it is a CUDA device (its free
    memory), else the smallest of the machine's available memory, RLIMIT_AS / RLIMIT_DATA
    and the cgroup's limit (module docstring)."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.mem_get_info(device)[0]), None
        except (RuntimeError, AssertionError, ValueError):
            pass  # no usable GPU: the device check says so elsewhere
    budget = (_meminfo_available() or _sysconf_available() or FALLBACK_BYTES, None)
    for limit in (_rlimit_available(), _cgroup_available()):
        if limit is not None and limit[0] < budget[0]:
            budget = limit
    return budget


def available_bytes(device=None) -> int:
    """Memory this process may still use: on ``device`` when it is a CUDA device (free
    memory there), else the smallest of the machine's available memory and the process's
    limits (:func:`memory_budget`)."""
    return memory_budget(device)[0]


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; 7.3e12 -> '6.6 TiB'."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_bytes(n_bytes: float, what: str, fix: str, error=ConfigError, device=None) -> None:
    """Refuse ``n_bytes`` (an estimate) when it is more than the memory available (on
    ``device``): one line naming ``what`` needs it and the ``fix``, raised as ``error``."""
    available, why = memory_budget(device)
    if n_bytes > available:
        where = f" on {device}" if device is not None and str(device) != "cpu" else ""
        limit = f" ({why})" if why else ""
        raise error(f"{what} needs about {format_bytes(n_bytes)} of memory{where}, more than "
                    f"the {format_bytes(available)} available{limit}; {fix}")


def max_work() -> int:
    """The cap of :func:`check_work`: :data:`MAX_WORK`, or the environment variable
    ``PYROVAE_MAX_WORK`` (a positive number, e.g. 1e12) when set."""
    text = os.environ.get(WORK_ENV, "").strip()
    if not text:
        return MAX_WORK
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 1):
        raise ConfigError(f"{WORK_ENV} = {text!r} must be a number >= 1 (gradient "
                          f"evaluations, e.g. 1e12), or unset for the default {MAX_WORK:.0e}")
    return int(value)


def check_work(units: float, what: str, fix: str, unit: str = "gradient evaluations of one "
               "point") -> None:
    """Refuse, in one line, a job of ``units`` of work above :func:`max_work`: ``what`` names
    the sizes that multiply to it, ``fix`` the knob to lower."""
    cap = max_work()
    if units > cap:
        step = 10 ** max(math.floor(math.log10(units)) - 1, 0)  # 2 digits, rounded up
        enough = math.ceil(units / step) * step
        raise ConfigError(f"{what} is about {units:.2g} {unit}, more than the cap of "
                          f"{cap:.2g} (days of computing on a CPU); {fix}, or set "
                          f"{WORK_ENV}={enough:.2g} to run it anyway")


# ---- a model, from its config --------------------------------------------------------------------

def _kind(config, input_shape):
    """(the class MODEL_KINDS has for ``config.kind``, the shape as ints), or None for a kind
    not registered, a factory (a module you wrote: nothing is built to estimate it) or a
    negative size."""
    name = getattr(config, "kind", None)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        return None
    if not isinstance(name, str) or name not in MODEL_KINDS or any(s < 0 for s in shape):
        return None
    kind = MODEL_KINDS.get(name)
    return (kind, shape) if hasattr(kind, "parameter_count") else None


def model_parameters(config, input_shape, buffers: bool = True) -> int | None:
    """Numbers the model a [model] config builds for inputs of ``input_shape`` holds: its
    parameters (sum p.numel()) and, with ``buffers``, its buffers (masks, index tables), as
    its kind counts them before building (``Kind.parameter_count``: a meta-device build, or
    each component's own count); None for a kind that cannot say (a module you wrote)."""
    found = _kind(config, input_shape)
    return None if found is None else int(found[0].parameter_count(config, found[1], buffers))


def point_floats(config, input_shape) -> int | None:
    """Numbers one data point (one particle) produces on its way through the decoder and the
    likelihood (times the classes, which enumeration sums over), as its kind estimates them
    (``Kind.point_floats``); None where it does not (then a built model's
    ``particle_bytes``)."""
    found = _kind(config, input_shape)
    floats = getattr(found[0], "point_floats", None) if found is not None else None
    n = floats(config, found[1]) if floats is not None else None
    return None if n is None else int(n)


def check_model(config, input_shape) -> None:
    """Refuse a [model] config whose parameters alone would not fit in memory, before it is
    built (``pyrovae.runs.make_model``: training, loading a run or a checkpoint)."""
    n = model_parameters(config, input_shape)
    if n is None:
        return
    kind, shape = _kind(config, input_shape)
    named = getattr(kind, "size_fields", lambda c: ("latent_dim", "hidden"))(config)
    fields = [f for f in named if hasattr(config, f)] or ["latent_dim"]
    sizes = ", ".join(f"{f} = {_plain(getattr(config, f, '?'))}" for f in fields)
    knobs = fields[0] if len(fields) == 1 else f"{', '.join(fields[:-1])} or {fields[-1]}"
    check_bytes(FLOAT * n, f"the model ({n:.3g} parameters: model.{sizes}, inputs of shape "
                f"{shape})", f"make model.{knobs} smaller")


def _plain(value):
    """Tuples (of tuples) as lists, as a config file writes them."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# ---- running a model -----------------------------------------------------------------------------

def inference_bytes(model, points: int) -> int:
    """Bytes of ``points`` data points (or points x draws) through a built model without
    gradients: from its config when the estimators read it, else from the model's
    ``particle_bytes(batch)``, else 16 bytes per input value."""
    config, shape = getattr(model, "config", None), getattr(model, "input_shape", None)
    per = point_floats(config, shape) if config is not None and shape is not None else None
    if per is not None:
        return FLOAT * per * points
    particle_bytes = getattr(model, "particle_bytes", None)
    if callable(particle_bytes):
        return int(particle_bytes(1)) * points
    return 4 * FLOAT * (input_dim(model) or 1) * points


def model_device(model):
    """The device of a model's parameters (None when it has none)."""
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return None


def check_points(model, points: int, what: str, fix: str, extra_bytes: int = 0) -> None:
    """Refuse running ``points`` points (x draws) through ``model`` at once, plus
    ``extra_bytes`` of results, when that does not fit in memory."""
    check_bytes(inference_bytes(model, points) + extra_bytes, what, fix,
                device=model_device(model))


def check_training(config, input_shape, model, device=None, points: int | None = None) -> None:
    """Refuse, before training, a run whose steps cannot fit in memory: gradients and Adam's
    two moments of every parameter, and the activations of batch_size x num_particles points
    forward and backward (plus the labelled batch of a kind that has one); then the ELBO's
    batches of train.eval_batch_size (at most ``points``, the size of the larger split)."""
    params = sum(p.numel() for p in model.parameters())
    mc, tc = config.model, config.train
    particles = int(getattr(mc, "num_particles", 1) or 1)
    objective = getattr(mc, "objective", None)
    groups = (int(getattr(objective, "groups", 1) or 1)
              if getattr(objective, "bound", None) in GROUPED_BOUNDS else 1)
    batch = tc.batch_size + int(getattr(mc, "label_batch_size", 0) or 0)
    per_point = point_floats(mc, input_shape)
    if per_point is not None:
        per_point *= FLOAT
    elif callable(getattr(model, "particle_bytes", None)):
        per_point = int(model.particle_bytes(1))
    else:
        return  # a module whose activations cannot be estimated without running it
    sizes = f"train.batch_size = {tc.batch_size} and model.num_particles = {particles}"
    if groups > 1:
        sizes += f" x model.objective.groups = {groups}"
    check_bytes(3 * FLOAT * params + 2 * per_point * batch * particles * groups,
                f"training with {sizes}", "lower model.num_particles or train.batch_size (or "
                "make the model smaller)", device=device)
    eval_batch = tc.eval_batch_size if points is None else min(tc.eval_batch_size, points)
    check_bytes(per_point * eval_batch,
                f"evaluating with train.eval_batch_size = {tc.eval_batch_size}",
                "lower train.eval_batch_size", device=device)


# ---- arrays -------------------------------------------------------------------------------------

def array_bytes(shape, itemsize: int) -> int:
    """Bytes of an array of ``shape`` with items of ``itemsize`` bytes."""
    return math.prod(int(s) for s in shape) * int(itemsize)
