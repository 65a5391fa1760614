"""Stopping and resuming: a run killed (SIGKILL) or interrupted (SIGTERM/SIGINT) at an arbitrary
step and resumed ends with exactly the parameters of a run that never stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyrovae import VAEConfig, load, load_dataset, train
from pyrovae.runtime.errors import CheckpointError
from pyrovae.runs import load_checkpoint
from pyrovae.training.guards import NonFiniteError

ROOT = Path(__file__).resolve().parents[2]
SETS = ["--set", "progress=false", "--set", "epochs=8", "--set", "checkpoint_every=10",
        "--set", "batch_size=32"]


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "pyrovae", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def params(run_dir):
    return load_checkpoint(run_dir)["model"]


def assert_same_params(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def stop_midway(run_dir, sig, min_step=30):
    """Start a run, wait until it has checkpointed past ``min_step``, then send ``sig``."""
    proc = cli("train", "configs/digits.toml", "--out", str(run_dir), *SETS)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpt = run_dir / "checkpoint.pt"
        if ckpt.exists():
            try:
                if load_checkpoint(ckpt)["step"] >= min_step:
                    break
            except CheckpointError:
                pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be stopped; make it longer"
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = tmp_path_factory.mktemp("ref") / "run"
    proc = cli("train", "configs/digits.toml", "--out", str(ref), *SETS)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return ref


def test_sigkill_then_resume_is_bitwise_identical(reference, tmp_path):
    run_dir = tmp_path / "killed"
    code, _ = stop_midway(run_dir, signal.SIGKILL, min_step=100)
    assert code == -signal.SIGKILL
    stopped_at = load_checkpoint(run_dir)["step"]
    assert 0 < stopped_at < load_checkpoint(reference)["step"]
    proc = cli("train", "--resume", str(run_dir), "--set", "progress=false")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_params(reference, run_dir)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert strip(load(run_dir).history) == strip(load(reference).history)


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(reference, tmp_path):
    run_dir = tmp_path / "term"
    code, err = stop_midway(run_dir, signal.SIGTERM, min_step=20)
    assert code == 128 + signal.SIGTERM
    assert "resume with: pyrovae train --resume" in err and "Traceback" not in err
    proc = cli("train", "--resume", str(run_dir), "--set", "progress=false")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_params(reference, run_dir)


def test_resume_refuses_a_changed_config(tmp_path):
    data = load_dataset("digits", binarize="dynamic")
    train(VAEConfig(latent_dim=3, hidden=(16,)), data, out=tmp_path, epochs=1, progress=False)
    with pytest.raises(CheckpointError, match="model.latent_dim"):
        train(VAEConfig(latent_dim=4, hidden=(16,)), data, out=tmp_path, resume=True,
              epochs=2, progress=False)
    run = train(VAEConfig(latent_dim=3, hidden=(16,)), data, out=tmp_path, resume=True,
                epochs=2, progress=False)
    assert [r["epoch"] for r in run.history] == [1, 2]


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    data = load_dataset("digits", binarize="dynamic")
    real_step = torch.optim.Adam.step

    def poisoned(self, *a, **k):
        out = real_step(self, *a, **k)
        poisoned.calls += 1
        if poisoned.calls == 12:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    poisoned.calls = 0
    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    with pytest.raises(NonFiniteError) as info:
        train(VAEConfig(latent_dim=3, hidden=(16,)), data, out=tmp_path, epochs=2,
              checkpoint_every=5, log_every=5, progress=False)
    message = str(info.value)
    assert "step 13" in message and "encoder" in message and "lr" in message
    saved = load_checkpoint(tmp_path)
    assert saved["step"] == 11  # the epoch end (11 steps of 128): the last step before poison
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import pyrovae.runtime.files as files

    data = load_dataset("digits", binarize="dynamic")
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd):
        calls["n"] += 1
        if calls["n"] > 4:  # config.toml, two checkpoints, history.csv... then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    cfg = VAEConfig(latent_dim=3, hidden=(16,))
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is "
                                              "intact"):
        train(cfg, data, out=tmp_path, epochs=3, checkpoint_every=4, progress=False)
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    saved = load_checkpoint(tmp_path)  # still a whole, loadable checkpoint
    assert saved["step"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    run = train(cfg, data, out=tmp_path, epochs=3, resume=True, progress=False)
    assert run.metrics["steps"] == 3 * (data.num_train // 128)


def test_unwritable_run_folder_is_a_clear_error(tmp_path, monkeypatch):
    import tempfile as tf

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tf, "TemporaryFile", denied)
    data = load_dataset("digits", binarize="dynamic")
    with pytest.raises(CheckpointError, match="cannot write to run folder.*Permission denied"):
        train(VAEConfig(latent_dim=3, hidden=(16,)), data, out=tmp_path / "ro", epochs=1,
              progress=False)


@pytest.mark.parametrize("clip", [0.5, 0.0])
def test_gradient_clipping_bounds_the_gradient_norm(clip):
    from pyrovae import DataConfig, RunConfig, TrainConfig
    from pyrovae.training.trainer import Trainer

    data = load_dataset("digits", binarize="dynamic")
    cfg = RunConfig(model=VAEConfig(latent_dim=3, hidden=(16,)), data=DataConfig(name="digits"),
                    train=TrainConfig(clip_norm=clip, progress=False))
    trainer = Trainer(cfg, data, None)
    trainer.prepare()
    trainer.train_step(trainer.data.train_data(1, 0)[:128])
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.vae.parameters()]))
    if clip:
        assert float(norm) <= clip * (1 + 1e-5)
    else:
        assert float(norm) > 10  # the loss is scaled by N = 1500: raw gradients are large
