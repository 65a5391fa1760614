"""The data-parallel context of this process: who it is among how many, and the collectives that
training and evaluation need.

torchrun (or any launcher that sets the same variables) starts one process per device::

    RANK, WORLD_SIZE     this process's index and the number of processes (on all machines)
    LOCAL_RANK           its index on this machine (a CUDA run's process i takes cuda:i)
    MASTER_ADDR, _PORT   where rank 0 listens (the rendezvous)

With WORLD_SIZE > 1 the first :func:`init` (``train()`` and ``pyrovae evaluate`` call it) joins
the process group: gloo for a CPU run, NCCL for a CUDA run (``PYROVAE_DIST_BACKEND`` overrides),
with a timeout on every collective (``PYROVAE_DIST_TIMEOUT`` seconds, default 300), so a process
that dies or stops answering makes the others stop with a one-line :class:`DistributedError`
instead of waiting forever. A process group the user initialised is joined as it is. Without
those variables (or with WORLD_SIZE = 1) nothing is initialised and every helper here is the
identity: one process runs exactly as it always did.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
from datetime import timedelta

import torch
import torch.distributed as dist

from pyrovae.runtime.errors import ConfigError, DistributedError, PyroVAEError

TIMEOUT_ENV, BACKEND_ENV = "PYROVAE_DIST_TIMEOUT", "PYROVAE_DIST_BACKEND"
DEFAULT_TIMEOUT = 300.0
BACKENDS = ("gloo", "nccl")


class SharedStop:
    """A stop flag all ranks agree on: true once any rank has seen SIGINT/SIGTERM, as learnt at
    the last gradient all-reduce (which carries each rank's local flag), so every rank stops at
    the same step. ``local`` is this process's own :class:`~pyrovae.training.guards.StopFlag`."""

    def __init__(self, local):
        self.local, self.signum = local, 0

    def __bool__(self) -> bool:
        return self.signum != 0


class Context:
    """This process among the data-parallel processes (one inactive context when alone)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0,
                 timeout: float = DEFAULT_TIMEOUT, backend: str | None = None):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.timeout, self.backend = timeout, backend
        self.run_dir = None  # named in the message when another process is lost
        self.suspended = 0   # local(): this process computes alone for a while

    @property
    def active(self) -> bool:
        """Several processes share the work (and :func:`local` is not in force)."""
        return self.world > 1 and not self.suspended

    @property
    def writer(self) -> bool:
        """Whether this process writes files (rank 0 alone does)."""
        return self.rank == 0

    # ---- devices and shares -----------------------------------------------------------------

    def device_for(self, device: torch.device) -> torch.device:
        """The device of this process for a run's ``device``: ``cuda`` is cuda:LOCAL_RANK."""
        if not self.active or device.type != "cuda":
            return device
        if device.index is not None:
            raise ConfigError(f"device = \"{device}\" names one GPU, but each of the {self.world} "
                              f"processes needs its own: set device = \"cuda\" (process i takes "
                              f"cuda:LOCAL_RANK)")
        return torch.device("cuda", self.local_rank)

    def check_divisible(self, n: int, what: str) -> None:
        """Refuse a batch of ``n`` rows that the processes cannot share equally."""
        if self.active and n % self.world:
            up = (n // self.world + 1) * self.world
            raise DistributedError(f"{what} = {n} cannot be split equally over {self.world} "
                                   f"processes (WORLD_SIZE); each process takes 1/{self.world} of "
                                   f"every batch: use a multiple of {self.world} (e.g. {up}) or "
                                   f"a number of processes that divides {n}")

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (rank r: rows r*B/R .. (r+1)*B/R)."""
        if not self.active:
            return rows
        self.check_divisible(rows.shape[0], "a batch of rows")
        size = rows.shape[0] // self.world
        return rows[self.rank * size:(self.rank + 1) * size]

    def own_batches(self, n: int, batch_size: int) -> range:
        """The starts of the batches of ``n`` points this rank computes: r, r+R, r+2R, ..."""
        starts = range(0, n, batch_size)
        return starts[self.rank::self.world] if self.active else starts

    # ---- collectives --------------------------------------------------------------------------

    def _collective(self, what: str, fn):
        try:
            return fn()
        except RuntimeError as err:  # gloo/NCCL errors and timeouts (DistBackendError too)
            lost = DistributedError(self.lost(what, err))
            lost.every_rank = True  # each surviving process reports it (the CLI prints all)
            raise lost from None

    def lost(self, what: str, err: BaseException) -> str:
        """The message of a rank that lost the others: what it was doing, and the way on."""
        first = re.sub(r"\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*", "", " ".join(str(err).split()))
        first = (first[:157] + "...") if len(first) > 160 else first or type(err).__name__
        resume = (f"; resume from the last checkpoint, with any number of processes: pyrovae "
                  f"train --resume {self.run_dir}" if self.run_dir else "")
        return (f"rank {self.rank} of {self.world}: another process died or stopped answering "
                f"during {what} (timeout {self.timeout:g} s, {TIMEOUT_ENV}; {first}); every "
                f"process stops{resume}")

    def mean(self, t: torch.Tensor, what: str = "averaging a number") -> torch.Tensor:
        """The mean of ``t`` over the ranks (``t`` itself when alone)."""
        if not self.active:
            return t
        out = t.detach().clone()
        self._collective(what, lambda: dist.all_reduce(out, op=dist.ReduceOp.SUM))
        return out / self.world

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Make every rank's parameters and buffers rank 0's (a module the user built without
        a seed, or parameters created before the run's seed was set)."""
        if not self.active:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                self._collective("the start of training (parameters from rank 0)",
                                 lambda t=t: dist.broadcast(t.data, src=0))

    def gather_objects(self, obj, what: str) -> list:
        """Every rank's ``obj``, in rank order (``[obj]`` when alone)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        self._collective(what, lambda: dist.all_gather_object(out, obj))
        return out

    def agree(self, fn):
        """``fn()`` on every rank; if it raises a :class:`PyroVAEError` on any rank, every rank
        raises it (the lowest failing rank's), so a refusal made by one process (rank 0's run
        folder checks) stops all of them with the same one-line message."""
        error, result = None, None
        try:
            result = fn()
        except PyroVAEError as err:
            error = err
        if not self.active:
            if error is not None:
                raise error
            return result
        mine = None if error is None else (type(error), str(error))
        reports = self.gather_objects(mine, "the checks before training")
        if error is not None:
            raise error
        first = next((r for r in reports if r is not None), None)
        if first is not None:
            cls, message = first
            try:
                raised = cls(message)
            except TypeError:  # an error class with other arguments
                raised = PyroVAEError(message)
            raise raised
        return result

    def average_gradients(self, params, stop: SharedStop | None = None) -> None:
        """Replace every gradient by its mean over the ranks, in one all-reduce per dtype.

        Each rank's loss is its share of B/R rows scaled by N/(B/R) (the data plate's scale for
        its rows), so the mean of the R gradients is the gradient of one process's loss on all B
        rows, scaled by N/B (docs/distributed.md). A parameter without a gradient on every rank
        keeps none (Adam then skips it, as in one process). The all-reduce also carries each
        rank's stop flag, so ``stop`` learns whether any rank was signalled."""
        if not self.active:
            return
        params = [p for p in params if p.requires_grad]
        groups: dict = {}
        for p in params:
            groups.setdefault(p.dtype, []).append(p)
        flags_dtype = torch.float32 if torch.float32 in groups else next(iter(groups),
                                                                          torch.float32)
        groups.setdefault(flags_dtype, [])
        for dtype, group in groups.items():
            device = group[0].device if group else params[0].device if params else "cpu"
            parts = [p.grad.reshape(-1) if p.grad is not None
                     else torch.zeros(p.numel(), dtype=dtype, device=device) for p in group]
            parts.append(torch.tensor([p.grad is not None for p in group], dtype=dtype,
                                      device=device))
            if dtype == flags_dtype:  # [is stopping, signal number]
                local = stop.local.signum if stop is not None else 0
                parts.append(torch.tensor([local != 0, local], dtype=dtype, device=device))
            flat = torch.cat(parts)
            self._collective("a training step (gradient all-reduce)",
                             lambda flat=flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
            total = sum(p.numel() for p in group)
            means = flat[:total].div_(self.world)
            tail = flat[total:].tolist()  # the one host sync of a step: which grads, the flags
            offset = 0
            for p, has in zip(group, tail):
                n = p.numel()
                if has > 0:
                    mean = means[offset:offset + n].view_as(p)
                    if p.grad is None:
                        p.grad = mean
                    else:
                        p.grad.copy_(mean)
                offset += n
            if dtype == flags_dtype and stop is not None:
                count, signals = tail[-2:]
                if count > 0 and not stop.signum:
                    stop.signum = int(round(signals / count))

    def shared_stop(self, local):
        """A :class:`SharedStop` over this process's stop flag (the flag itself when alone)."""
        return SharedStop(local) if self.active else local

    def metrics(self) -> dict:
        """What a run's metrics.json records of the processes (nothing when alone)."""
        return {"world_size": self.world, "backend": self.backend} if self.world > 1 else {}


_CONTEXT = Context()


def current() -> Context:
    """This process's context (inactive until :func:`init` joins a process group)."""
    return _CONTEXT


def launched() -> bool:
    """Whether a launcher started this process as one of several (WORLD_SIZE > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def is_writer() -> bool:
    """Whether this process writes files: rank 0, or a process on its own."""
    rank = _CONTEXT.rank if _CONTEXT.world > 1 else _env_int("RANK", 0) if launched() else 0
    return rank == 0


@contextlib.contextmanager
def local():
    """Compute alone inside the block: evaluation does all points in this process (e.g. rank 0
    evaluating by itself, while the others wait or have stopped)."""
    _CONTEXT.suspended += 1
    try:
        yield _CONTEXT
    finally:
        _CONTEXT.suspended -= 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{name} = {text!r} is not an integer; start the processes with "
                               f"torchrun, which sets it") from None


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(f"{TIMEOUT_ENV} = {text!r} is not a number of seconds > 0; unset "
                               f"it for the default {DEFAULT_TIMEOUT:g}")
    return value


def choose_backend(device) -> str:
    """gloo for a CPU run, NCCL for a CUDA run, or ``PYROVAE_DIST_BACKEND``; refuses NCCL
    without a GPU for this process."""
    kind = torch.device(device).type if device is not None else "cpu"
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if kind == "cuda" else "gloo")
    if backend not in BACKENDS:
        raise DistributedError(f"{BACKEND_ENV} = {backend!r} is not one of: "
                               f"{', '.join(BACKENDS)}; unset it to choose by the device")
    if backend == "nccl":
        if not torch.cuda.is_available() or not dist.is_nccl_available():
            raise DistributedError("the nccl backend needs CUDA GPUs and this machine has none "
                                   "usable; train on the CPU (device = \"cpu\", which uses gloo) "
                                   f"or unset {BACKEND_ENV}")
        if kind != "cuda":
            raise DistributedError(f"{BACKEND_ENV} = nccl needs device = \"cuda\"; a CPU run "
                                   f"uses gloo (unset {BACKEND_ENV})")
    return backend


def init(device=None) -> Context:
    """Join the process group torchrun describes (module docstring) once, and return the
    context; ``device`` (a run's ``train.device``) chooses the backend. Alone: the inactive
    context, nothing initialised."""
    global _CONTEXT
    if _CONTEXT.world > 1:
        return _CONTEXT
    if dist.is_available() and dist.is_initialized():  # the user's own process group
        _CONTEXT = Context(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0),
                           _timeout(), dist.get_backend())
        return _CONTEXT
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return _CONTEXT
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; run one process")
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        raise DistributedError(f"WORLD_SIZE = {world} but RANK or MASTER_ADDR is not set; start "
                               f"the processes with torchrun (docs/distributed.md)")
    rank, local_rank, timeout = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0), _timeout()
    backend = choose_backend(device)
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(f"process LOCAL_RANK = {local_rank} has no GPU of its own: "
                                   f"this machine has {torch.cuda.device_count()}; start at most "
                                   f"that many processes per machine (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    context = Context(rank, world, local_rank, timeout, backend)
    context._collective("the rendezvous (init_process_group)", lambda: dist.init_process_group(
        backend, timeout=timedelta(seconds=timeout), rank=rank, world_size=world))
    _CONTEXT = context
    atexit.register(_shutdown)
    return context


def _shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
