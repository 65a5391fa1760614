"""Data-parallel training and evaluation (pyrovae.runtime.distributed, docs/distributed.md): two gloo
processes on this machine against one process.

One job of two processes (tests/training/distributed_worker.py, started with torchrun's variables) trains
every objective, resumes a one-process checkpoint, evaluates, is stopped by a SIGTERM to one
rank and finally loses a rank to SIGKILL; the tests compare what it wrote with the same work
done here in one process. One real ``torchrun`` runs ``pyrovae evaluate``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae import VAE, load_dataset
from pyrovae.runtime import distributed
from pyrovae.cli import main
from pyrovae.runtime.distributed import Context, RankDraws
from pyrovae.runtime.distributed.context import BACKEND_ENV, choose_backend
from pyrovae.runtime.errors import DistributedError
from pyrovae.evaluation import log_likelihood
from pyrovae.training import load_checkpoint, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distributed_worker as W  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(W.__file__)
JOB_TIMEOUT = 400  # seconds; the job takes ~1 minute on a busy 2-core machine
# float tolerance: two ranks sum their gradients in another order than one process does
ATOL = 2e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, args: list[str], timeout: float = JOB_TIMEOUT) -> list:
    """Run ``python args`` as ``world`` processes with torchrun's variables; (code, stderr)
    of each rank."""
    port, procs = free_port(), []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   PYROVAE_DIST_TIMEOUT="60")
        procs.append(subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a data-parallel job hung")
        out.append((p.returncode, err))
    return out


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def one(one_thread):
    """The same work in one process: each objective trained, and the NLL of the meanfield run."""
    ds = W.data()
    runs = {name: train(W.config(name), ds, **W.TRAIN) for name in W.OBJECTIVES}
    return ds, runs


@pytest.fixture(scope="module")
def job(tmp_path_factory, one):
    ds, _ = one
    out = tmp_path_factory.mktemp("dist")
    (out / "exists").mkdir()
    (out / "exists" / "config.toml").write_text("")
    train(W.config("meanfield"), ds, out=out / "resumed", **{**W.TRAIN, "epochs": 1})
    codes = launch(2, [str(WORKER), str(out)])
    if codes[0][0] != 0:  # the job itself broke: show why, once, in every test
        pytest.fail(f"the two-process job failed ({codes[0][0]}):\n{codes[0][1][-3000:]}")
    return out, codes


# ---- the equivalence of R processes with one --------------------------------------------------

@pytest.mark.parametrize("objective", W.OBJECTIVES)
def test_two_ranks_train_the_parameters_of_one_process(job, one, objective):
    """2 gloo ranks at global batch 32 for 16 Adam steps end with one process's parameters, to
    float tolerance (not bit for bit: the gradient is summed in another order). The draws of
    each row are one process's (RankDraws), so the test can fail: with each rank drawing its own
    noise the parameters differ by ~0.04 (measured), 2000 times the tolerance."""
    out, _ = job
    shared = torch.load(out / "shared.pt")
    assert max_diff(shared[objective], W.params(one[1][objective].vae)) < ATOL


@pytest.mark.parametrize("kind", [*W.KINDS, "module"])
def test_every_model_kind_trains_data_parallel(job, kind):
    """ssvae (y sampled, or enumerated), hvae (one particle, or z2 | z1 under 3 particles), cvae
    and a user's module: the same parameters as one process where the draws are one process's
    (the module's rank 1 was built from another seed: rank 0's parameters were broadcast);
    where a site varies along the particles or an enumerated value (the documented fallback),
    the run completes with parameters of the same size and near one process's."""
    out, _ = job
    if kind == "module":
        torch.manual_seed(0)
        mine = W.params(train(W.TinyVAE(**W.MODULE), W.data(), **W.TRAIN).vae)
        exact = True
    else:
        cfg = W.kind_config(kind)
        mine = W.params(train(cfg, load_dataset(cfg.data)).vae)
        exact = W.KINDS[kind][2]
    theirs = torch.load(out / "shared.pt")[kind]
    if exact:
        assert max_diff(theirs, mine) < ATOL
    else:
        assert 0 < max_diff(theirs, mine) < 0.5
        assert all(torch.isfinite(v).all() for v in theirs.values())


def test_training_moved_the_parameters_far_beyond_the_tolerance(one):
    torch.manual_seed(0)
    ds, runs = one
    other = train(W.config("meanfield"), ds, **{**W.TRAIN, "seed": 2})  # another seed's run
    assert max_diff(W.params(other.vae), W.params(runs["meanfield"].vae)) > 100 * ATOL


def test_the_job_ran_on_two_processes_and_one_refusal_stopped_both(job):
    out, codes = job
    assert [c for c, _ in codes] == [0, -signal.SIGKILL], codes
    for rank in (0, 1):
        mine = json.loads((out / f"rank{rank}.json").read_text())
        assert mine["world_size"] == 2
        assert "already holds a run" in mine["refused"]  # rank 0's check, raised on both


def test_resume_with_another_number_of_processes(job, one, tmp_path):
    """A one-process checkpoint (epoch 1) resumed by two processes, and a two-process one
    (stopped by SIGTERM) resumed by one, both end where one uninterrupted process does."""
    out, _ = job
    shutil.copytree(out / "stopped", tmp_path / "stopped")
    reference = W.params(one[1]["meanfield"].vae)
    resumed = load_checkpoint(out / "resumed")
    assert resumed["step"] == 16
    assert max_diff(resumed["model"], reference) < ATOL
    run = train(W.config("meanfield"), one[0], out=tmp_path / "stopped", resume=True,
                **W.TRAIN)
    assert max_diff(W.params(run.vae), reference) < ATOL


def test_sigterm_on_one_rank_stops_both_at_the_same_step_with_a_checkpoint(job):
    out, _ = job
    messages = [json.loads((out / f"rank{r}.json").read_text())["interrupted"] for r in (0, 1)]
    for m in messages:  # rank 1 was signalled before its 5th step; rank 0 learnt it there
        assert m["signum"] == signal.SIGTERM
        assert f"training interrupted at step {W.STOP_AT} " in m["message"]
    assert f"resume with: pyrovae train --resume {out / 'stopped'}" in messages[0]["message"]
    assert load_checkpoint(out / "stopped")["step"] == W.STOP_AT


def test_a_killed_rank_makes_the_other_stop_with_a_message(job):
    """Rank 1 is killed (SIGKILL) in its 3rd step; rank 0, waiting in the gradient all-reduce,
    stops with a one-line DistributedError well before the 60 s collective timeout."""
    out, codes = job
    assert codes[1][0] == -signal.SIGKILL and not (out / "rank1-killed.json").exists()
    lost = json.loads((out / "rank0-killed.json").read_text())
    assert lost["error"] and lost["error"].startswith(
        "rank 0 of 2: another process died or stopped answering during a training step")
    assert "\n" not in lost["error"] and lost["every_rank"]
    assert lost["seconds"] < 60


def test_sharded_evaluation_gives_one_process_s_per_point_results(job, one):
    """log_likelihood (batches of 7 over 40 points: rank 0 takes batches 0, 2, 4, rank 1 the
    others) and the generic per_point helper equal one process's, bit for bit."""
    out, _ = job
    ds = one[0]
    shared = torch.load(out / "shared.pt")
    x = ds.test_data()[:W.POINTS]
    vae = VAE(W.config("meanfield"), ds.shape)  # the model the two ranks trained and evaluated
    vae.load_state_dict(shared["meanfield"])
    torch.testing.assert_close(shared["nll"], log_likelihood(vae, x, **W.NLL), rtol=0, atol=0)
    torch.testing.assert_close(shared["nll_alone"], shared["nll"], rtol=0, atol=0)  # local()
    alone = distributed.per_point(W.elbo_points(vae), x, 6)
    torch.testing.assert_close(shared["elbo_points"], alone, rtol=0, atol=0)
    assert shared["nll"].shape == (W.POINTS,)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="no torchrun next to this python")
def test_torchrun_evaluate_writes_one_process_s_numbers(job, tmp_path, capsys):
    """``torchrun --nproc_per_node=2 -m pyrovae evaluate`` (the real launcher): rank 0 writes
    eval_points.csv, identical to one process's."""
    out, _ = job
    args = ["evaluate", str(out / "resumed"), "--nll-samples", "30", "--points", "30",
            "--batch-size", "8", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    torchrun = Path(sys.executable).parent / "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port",
                           str(free_port()), "-m", "pyrovae", *args, "--out",
                           str(tmp_path / "two")], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=JOB_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("written:") == 1  # rank 0 alone reports

    def rows(folder):
        with open(folder / "eval_points.csv") as f:
            return list(csv.DictReader(f))
    assert rows(tmp_path / "two") == rows(tmp_path / "one")


# ---- the pieces, in one process -------------------------------------------------------------

def _guide(x, hierarchical=False):
    """q(z1|x) (and q(z2|z1)) over the rows of x, in the data plate."""
    with pyro.plate("data", 100, subsample=torch.arange(x.shape[0]), dim=-1):
        z1 = pyro.sample("z1", dist.Normal(x, 1.0).to_event(1))
        if hierarchical:
            pyro.sample("z2", dist.Normal(z1.sum(-1, keepdim=True), 1.0).to_event(1))


def _draw(x, handler=None, particles=0, hierarchical=False):
    guide = _guide if handler is None else handler(_guide)
    if particles:
        guide = pyro.plate("particles", particles, dim=-2)(guide)
    tr = poutine.trace(guide).get_trace(x, hierarchical)
    return {n: tr.nodes[n]["value"] for n in ("z1", "z2") if n in tr.nodes}


@pytest.mark.parametrize("particles", [0, 3])
def test_rank_draws_are_one_process_s_rows(particles):
    """Rank r's draws for its rows are one process's draws for those rows, with and without a
    particle plate outside the guide, and every rank's generator ends where one process's does."""
    x = torch.randn(6, 2)
    torch.manual_seed(0)
    whole = _draw(x, particles=particles)["z1"]
    after = torch.get_rng_state()
    for world in (2, 3):
        b = 6 // world
        for rank in range(world):
            torch.manual_seed(0)
            part = _draw(x[rank * b:(rank + 1) * b], RankDraws(rank, world), particles)["z1"]
            torch.testing.assert_close(part, whole[..., rank * b:(rank + 1) * b, :])
            assert torch.equal(torch.get_rng_state(), after)


def test_a_site_that_varies_by_particle_gets_independent_draws_in_step_with_one_process():
    """z2 | z1 varies along the particles: not one process's numbers (the documented
    fallback), but each rank its own noise, and the generators stay in step."""
    x = torch.randn(4, 2)
    torch.manual_seed(0)
    whole = _draw(x, particles=3, hierarchical=True)
    after = torch.get_rng_state()
    parts = []
    for rank in range(2):
        torch.manual_seed(0)
        parts.append(_draw(x[2 * rank:2 * rank + 2], RankDraws(rank, 2), 3, True))
        assert torch.equal(torch.get_rng_state(), after)
    torch.testing.assert_close(torch.cat([p["z1"] for p in parts], -2), whole["z1"])
    assert not torch.allclose(torch.cat([p["z2"] for p in parts], -2), whole["z2"])
    assert not torch.allclose(parts[0]["z2"] - parts[0]["z1"].sum(-1, keepdim=True),
                              parts[1]["z2"] - parts[1]["z1"].sum(-1, keepdim=True))


def test_refusals_name_the_fix(monkeypatch, capsys):
    with pytest.raises(DistributedError, match=r"train.batch_size = 64 cannot be split equally "
                                               r"over 3 processes.*multiple of 3 \(e.g. 66\)"):
        Context(0, 3).check_divisible(64, "train.batch_size")
    Context(0, 2).check_divisible(64, "train.batch_size")
    if not torch.cuda.is_available():
        with pytest.raises(DistributedError, match="nccl backend needs CUDA GPUs"):
            choose_backend("cuda")
        monkeypatch.setenv(BACKEND_ENV, "nccl")
        with pytest.raises(DistributedError, match="nccl backend needs CUDA GPUs"):
            choose_backend("cpu")
    monkeypatch.setenv(BACKEND_ENV, "mpi")
    with pytest.raises(DistributedError, match="not one of: gloo, nccl"):
        choose_backend("cpu")
    monkeypatch.delenv(BACKEND_ENV)
    assert choose_backend("cpu") == "gloo"
    monkeypatch.setenv("WORLD_SIZE", "2")  # a command that has no data-parallel form
    assert main(["sample", "no-such-run"]) == 2
    assert "pyrovae sample runs as one process" in capsys.readouterr().err
