"""Issue 28, memory: the budget the size checks use is the smallest of the machine's available
memory, RLIMIT_AS (less what the process holds) and the cgroup's limit; the sizes that scale
work (``sample --n``, AIS steps x chains, num_particles, importance samples) are refused in one
line before anything is allocated or started; an allocation that fails at run time anyway is
one line naming the size to lower, exit 2, and leaves no half-made run folder.

The subprocesses run under a lowered RLIMIT_AS (their parent's address space + a few GiB), so
no test here, and no regression of the code it checks, can take the machine's memory; the
in-process tests guard the functions that would start the work, so a regression fails fast.
"""

from __future__ import annotations

import errno
import importlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae import limits as memory  # (the 0.1 path: these cases also run against 0.1)
from pyrovae.cli import main
from pyrovae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
TINY = ["--set", "epochs=1", "--set", "progress=false", "--set", "hidden=[32]",
        "--set", "latent_dim=4"]
WORK_ENV = "PYROVAE_MAX_WORK"  # raises (confirms) the cap on work, WORK_ENV
ALLOCATOR = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
             "allocate memory: you tried to allocate 2560000000 bytes. Error code 12 (Cannot "
             "allocate memory)")

pytestmark = [pytest.mark.usefixtures("one_thread"),  # conftest.py
              pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                 reason="reads /proc (Linux)")]


def one_line_error(err: str) -> str:
    """stderr is exactly one line 'pyrovae: error: ...' without a traceback."""
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def nothing_written(out: Path) -> bool:
    """No file in ``out`` (a command may make the folder to prove it writable first)."""
    return not out.exists() or not any(out.iterdir())


def vm_size() -> int:
    """This process's address space (VmSize), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


def run_limited(args: list[str], headroom: int, cwd: Path, timeout: float = 120):
    """``python -m pyrovae ARGS`` (or ``python -c``) with RLIMIT_AS = this process's address
    space (it has torch loaded, as the child will) + ``headroom`` bytes."""
    limit = vm_size() + headroom

    def lower():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    # the child imports the pyrovae this process imported
    source = str(Path(memory.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
    env.pop(WORK_ENV, None)
    cmd = [sys.executable, *(args if args[0] == "-c" else ["-m", "pyrovae", *args])]
    try:
        return subprocess.run(cmd, preexec_fn=lower, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(args)} still ran after {timeout} s: not refused")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny digits run (1 epoch, 32 hidden units, 4 latent dimensions)."""
    out = tmp_path_factory.mktemp("memory") / "run"
    assert main(["train", DIGITS, *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(autouse=True)
def default_cap(monkeypatch):
    monkeypatch.delenv(WORK_ENV, raising=False)


# ---- the budget ---------------------------------------------------------------------------------

BUDGET_PROBE = """
import resource
from pyrovae import limits as memory  # (the 0.1 path: these cases also run against 0.1)
from pyrovae.errors import ConfigError

def vm():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

soft = resource.getrlimit(resource.RLIMIT_AS)[0]
left = soft - vm()
budget = memory.available_bytes()
assert budget <= left + 2**26, (budget, left)  # (VmSize moves a little between the reads)
try:
    memory.check_bytes(left + 2**30, "the thing", "lower it")
except ConfigError as err:
    print(err)
else:
    raise SystemExit(f"not refused: budget {budget}, RLIMIT_AS {soft}, left {left}")
"""


def test_budget_takes_rlimit_as_into_account(tmp_path):
    """Under ``ulimit -v`` the budget is what the limit leaves, not the machine's memory."""
    if memory._meminfo_available() is not None and memory._meminfo_available() < 2**32:
        pytest.skip("this machine has less than 4 GiB available: RLIMIT_AS would not bind")
    r = run_limited(["-c", BUDGET_PROBE], 2**31, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout
    line = r.stdout.strip()
    assert "\n" not in line and line.startswith("the thing needs about ")
    assert "RLIMIT_AS (ulimit -v)" in line and line.endswith("; lower it"), line


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_budget_takes_the_cgroup_limit_into_account(version, tmp_path, monkeypatch):
    """memory.max (v2) / memory.limit_in_bytes (v1) of this process's cgroup and those above
    it, less their usage without the inactive file cache."""
    mount = tmp_path / "cgroup"
    own = mount / "workers" / "job"
    own.mkdir(parents=True)
    limit_name, usage_name, cache = {
        "v2": ("memory.max", "memory.current", "inactive_file"),
        "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}[version]
    (mount / "workers" / limit_name).write_text(f"{3 * 2**30}\n")  # the parent binds
    (mount / "workers" / usage_name).write_text(f"{2**30 + 2**29}\n")
    (mount / "workers" / "memory.stat").write_text(f"anon 1\n{cache} {2**29}\n")
    (own / limit_name).write_text("max\n" if version == "v2" else "9223372036854771712\n")
    (own / usage_name).write_text("1000\n")
    (tmp_path / "cgroup.txt").write_text("0::/workers/job\n" if version == "v2" else
                                         "4:memory:/workers/job\n1:cpu:/\n")
    kind, options = ("cgroup2", "rw") if version == "v2" else ("cgroup", "rw,memory")
    (tmp_path / "mounts.txt").write_text(f"{kind} {mount} {kind} {options} 0 0\n")
    monkeypatch.setattr(memory, "PROC_CGROUP", str(tmp_path / "cgroup.txt"))
    monkeypatch.setattr(memory, "PROC_MOUNTS", str(tmp_path / "mounts.txt"))
    monkeypatch.setattr(memory, "_rlimit_available", lambda: None)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 64 * 2**30)
    assert memory.available_bytes() == 2 * 2**30  # 3 GiB - (1.5 GiB - 0.5 GiB of cache)
    with pytest.raises(ConfigError, match=rf"^the thing needs about 3\.0 GiB of memory, more "
                                          rf"than the 2\.0 GiB available \(the cgroup's "
                                          rf"{limit_name} of 3\.0 GiB less 1\.0 GiB in use\); "
                                          rf"lower it$"):
        memory.check_bytes(3 * 2**30, "the thing", "lower it")


# ---- sizes from flags and configs, refused before they are allocated or started ----------------

def test_sample_n_10_7_is_refused_in_one_line(run_dir, tmp_path):
    """10**7 draws (about 10 GB of activations) under a limit that leaves a few GiB: used to
    pass the MemAvailable check and end in a traceback of the allocator."""
    out = tmp_path / "out"
    r = run_limited(["sample", str(run_dir), "--n", str(10**7), "--out", str(out)],
                    3 * 2**30, tmp_path)
    line = one_line_error(r.stderr)
    assert r.returncode == 2, r.stderr
    assert "sampling n = 10000000 draws" in line and "lower --n" in line
    assert "RLIMIT_AS" in line
    assert nothing_written(out)


def test_num_particles_beyond_the_budget_is_refused_before_a_run_folder(tmp_path):
    """num_particles = 60000 (13 GB by the estimate) under a limit that leaves a few GiB: used
    to start training, fail in the allocator with a traceback and leave a run folder holding
    only config.toml."""
    out = tmp_path / "run"
    r = run_limited(["train", DIGITS, "--set", "epochs=1", "--set", "progress=false",
                     "--set", "num_particles=60000", "--out", str(out)], 3 * 2**30, tmp_path)
    line = one_line_error(r.stderr)
    assert r.returncode == 2
    assert "model.num_particles = 60000" in line and "RLIMIT_AS" in line, line
    assert not out.exists()


@pytest.fixture
def no_ais(monkeypatch):
    """AIS that starts fails the test at once (instead of running for days, or allocating a
    schedule of 10**9 steps)."""
    def started(*args, **kwargs):
        raise AssertionError("AIS started instead of being refused")

    from pyrovae.evaluation import ais
    monkeypatch.setattr(ais, "schedule", started)
    monkeypatch.setattr(ais, "anneal", started)


@pytest.mark.parametrize("flags, sizes", [
    (["--ais-steps", str(10**9)], "--ais-chains 8 x --ais-steps 1000000000 x --ais-leapfrog 5"),
    (["--ais-steps", "300", "--ais-chains", str(10**8)],
     "--ais-chains 100000000 x --ais-steps 300 x --ais-leapfrog 5"),
], ids=["steps 10**9", "chains 10**8"])
def test_ais_beyond_the_work_cap_is_refused_in_one_line(flags, sizes, run_dir, tmp_path,
                                                       capsys, no_ais):
    out = tmp_path / "out"
    status = main(["evaluate", str(run_dir), "--points", "2", "--nll-samples", "25", "--quiet",
                   *flags, "--out", str(out)])
    line = one_line_error(capsys.readouterr().err)
    assert status == 2
    assert sizes in line and "gradient evaluations" in line, line
    assert "lower --ais-chains, --ais-steps or --ais-leapfrog" in line
    assert f"{WORK_ENV}=" in line
    assert not out.exists()


def test_ais_work_over_all_points_is_refused_before_annealing(run_dir, no_ais, monkeypatch):
    """The per-point work passes (10**5 chains x 300 steps x 5), that of 1000 points does not:
    refused by ais_log_likelihood before the first step, naming the points."""
    import pyrovae
    from pyrovae.evaluation.ais import AISOptions, ais_log_likelihood

    options = AISOptions(steps=300, chains=10**5)
    vae = pyrovae.load(run_dir).vae
    with pytest.raises(ConfigError, match=r"^AIS of 1000 points x --ais-chains 100000 x "
                                          r"--ais-steps 300 x --ais-leapfrog 5 is about "
                                          r"1\.5e\+11 gradient evaluations") as info:
        ais_log_likelihood(vae, torch.zeros(1000, 64), options)
    assert "\n" not in str(info.value) and "fewer --points" in str(info.value)
    # the cap is raised (a confirmation) by the environment, and refuses junk in one line
    monkeypatch.setenv(WORK_ENV, "2e11")
    options.check_size(1000)
    monkeypatch.setenv(WORK_ENV, "lots")
    with pytest.raises(ConfigError, match=rf"^{WORK_ENV} = 'lots' must be a number"):
        options.check_size(1000)


def test_importance_samples_beyond_the_work_cap_are_refused_before_drawing(run_dir,
                                                                          monkeypatch):
    import pyrovae
    from pyrovae.evaluation import likelihood

    def drew(*args, **kwargs):
        raise AssertionError("drew instead of being refused")

    monkeypatch.setattr(likelihood, "log_weights", drew)
    monkeypatch.setattr(likelihood, "chunk_size", drew)
    vae = pyrovae.load(run_dir).vae
    with pytest.raises(ConfigError, match=r"^importance sampling 100 points x 1000000000 "
                                          r"samples is about 1e\+11 draws of one point"):
        likelihood.log_likelihood(vae, torch.zeros(100, 64), num_samples=10**9, batch_size=1)


# ---- an allocation that fails at run time ------------------------------------------------------

def _cpu_allocator(*args, **kwargs):
    raise RuntimeError(ALLOCATOR)


def _pyro_wrapped(*args, **kwargs):  # as Pyro re-raises it, with the trace's shapes
    try:
        _cpu_allocator()
    except RuntimeError as err:
        raise RuntimeError(f"{err}\nTrace Shapes:\n Param Sites:\nSample Sites:") from err


def _cuda(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has "
                                 "a total capacity of 79.1 GiB of which 1.2 GiB is free.")


def _numpy(*args, **kwargs):
    np.empty(10**15, dtype=np.uint8)  # numpy's _ArrayMemoryError (a MemoryError)


@pytest.mark.parametrize("cmd, target, fail, size, knobs", [
    ("sample", "pyrovae.applications.generation.draw", _cpu_allocator, "2.4 GiB", "lower --n"),
    ("evaluate", "pyrovae.evaluation.evaluate.reduce_log_weights", _cuda, "20.00 GiB",
     "lower --batch-size, --memory-mb or --nll-samples"),
    ("anomaly", "pyrovae.applications.anomaly.anomaly_scores", _numpy, "TiB",
     "lower --samples"),
], ids=["sample cpu", "evaluate cuda", "anomaly numpy"])
def test_allocation_failure_in_a_command_is_one_line_exit_2(cmd, target, fail, size, knobs,
                                                            run_dir, tmp_path, capsys,
                                                            monkeypatch):
    module, name = target.rsplit(".", 1)  # (the package shadows some modules by a function)
    monkeypatch.setattr(importlib.import_module(module), name, fail)
    out = tmp_path / "out"
    extra = {"evaluate": ["--quiet"], "anomaly": ["--no-progress"]}.get(cmd, [])
    status = main([cmd, str(run_dir), *extra, "--out", str(out)])
    line = one_line_error(capsys.readouterr().err)
    assert status == 2
    assert line.startswith("pyrovae: error: out of memory: could not allocate ")
    assert size in line, line
    assert knobs in line and "--debug shows where" in line, line
    assert nothing_written(out)


def test_allocation_failure_at_the_first_training_step_leaves_no_run_folder(tmp_path, capsys,
                                                                           monkeypatch):
    """A run that fails in the allocator at step 1 used to leave a folder holding only
    config.toml (not resumable, and the next train needed --force) after a traceback."""
    from pyrovae.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "train_step", _pyro_wrapped)
    out = tmp_path / "new" / "run"
    assert main(["train", DIGITS, *TINY, "--out", str(out)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "could not allocate 2.4 GiB" in line
    assert "lower model.num_particles or train.batch_size" in line
    assert "nothing was saved" in line, line
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert main(["train", DIGITS, *TINY, "--out", str(out)]) == 0  # no --force needed


def test_what_counts_as_an_allocation_failure():
    from pyrovae.errors import out_of_memory

    assert out_of_memory(RuntimeError(ALLOCATOR))
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to "
                                      "allocate 123 bytes"))
    assert out_of_memory(MemoryError())
    assert out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory."))
    try:
        _pyro_wrapped()
    except RuntimeError as err:
        assert out_of_memory(err)
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(OSError(errno.ENOENT, "No such file"))
    assert not out_of_memory(ValueError("memory_mb must be >= 1"))
