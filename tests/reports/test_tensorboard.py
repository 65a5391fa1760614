"""``train.tensorboard = true`` (pyrovae/reports/tensorboard.py): the event files of a run hold
the numbers of its history.csv, the per-step learning rate, KL weight and gradient norm, the
per-layer KL of a hierarchy and the sample and reconstruction grids; a missing package is
refused in one line before the run folder exists; only rank 0 writes; resuming hides what a
killed process logged past its checkpoint."""

from __future__ import annotations

import csv
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from pyrovae.cli import main
from pyrovae.config import KLConfig, TrainConfig
from pyrovae.objectives.schedules import beta_at
from pyrovae.runs import CHECKPOINT_NAME
from pyrovae.training.lr_schedule import lr_at

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
DIGITS_HVAE = str(ROOT / "configs" / "digits-hvae.toml")
SMALL = ["--set", "progress=false", "--set", "data.train_size=320", "--set",
         "data.test_size=100", "--set", "log_every=2"]
TB = ["--set", "tensorboard=true"]
# a warm-up and a cosine schedule, so beta_t and lr_t change from step to step
SCHEDULES = ["--set", "kl.schedule=linear", "--set", "kl.warmup=6", "--set",
             "lr_schedule=cosine", "--set", "lr_min=1e-4"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def events(run: Path):
    """{tag: [(step, value)]} of the scalars and {tag: [(step, width, height)]} of the images
    in RUN/tensorboard, as TensorBoard itself reads them (purged steps left out)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    images = {t: [(e.step, e.width, e.height) for e in acc.Images(t)]
              for t in acc.Tags()["images"]}
    return scalars, images


def history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def assert_epochs_match_history(scalars: dict, rows: list[dict]) -> None:
    columns = [c for c in rows[0] if c not in ("epoch", "step")]
    assert {f"epoch/{c}" for c in columns} <= set(scalars), sorted(scalars)
    for c in columns:
        steps = [s for s, _ in scalars[f"epoch/{c}"]]
        assert steps == [int(r["step"]) for r in rows], c
        for (_, v), r in zip(scalars[f"epoch/{c}"], rows):
            assert v == pytest.approx(r[c], rel=1e-6, abs=1e-6), c  # (stored as float32)


def test_events_hold_the_history_the_schedules_and_the_grids(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(["train", DIGITS, *SMALL, *SCHEDULES, *TB, "--set", "epochs=2",
                 "--out", str(out)]) == 0
    scalars, images = events(out)
    rows = history(out)
    assert len(rows) == 2
    assert_epochs_match_history(scalars, rows)

    steps_per_epoch, total = 320 // 64, 2 * (320 // 64)
    logged = list(range(2, total + 1, 2))
    kl = KLConfig(schedule="linear", warmup=6)
    for tag in ("step/elbo", "step/lr", "step/beta", "step/grad_norm"):
        assert [s for s, _ in scalars[tag]] == logged, tag
    for s, v in scalars["step/lr"]:
        assert v == pytest.approx(lr_at("cosine", 3e-3, 1e-4, s - 1, total), rel=1e-6)
    assert [v for _, v in scalars["step/beta"]] == pytest.approx(
        [beta_at(kl, s - 1) for s in logged])
    assert all(math.isfinite(v) and v > 0 for _, v in scalars["step/grad_norm"])
    assert all(-200 < v < 0 for _, v in scalars["step/elbo"])
    # one grid of each per epoch, as samples.png (8 x 8 digits) and reconstructions.png
    epoch_steps = [steps_per_epoch, total]
    assert [s for s, *_ in images["samples"]] == epoch_steps
    assert [s for s, *_ in images["reconstructions"]] == epoch_steps
    side = (8 * (8 + 1) + 1) * 4  # 8 x 8 images of 8 x 8 pixels, 1-pixel padding, enlarged 4x
    assert images["samples"][0][1:] == (side, side)


def test_tensorboard_changes_no_number_of_the_run(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    for name, extra in (("plain", []), ("board", TB)):
        assert main(["train", DIGITS, *SMALL, *SCHEDULES, *extra, "--set", "epochs=2",
                     "--out", str(tmp_path / name)]) == 0
    plain, board = history(tmp_path / "plain"), history(tmp_path / "board")
    for a, b in zip(plain, board):
        a.pop("seconds"), b.pop("seconds")
        assert a == b
    a = torch.load(tmp_path / "plain" / CHECKPOINT_NAME, weights_only=False)["model"]
    b = torch.load(tmp_path / "board" / CHECKPOINT_NAME, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "plain" / "tensorboard").exists()


def test_a_hierarchy_logs_the_kl_of_each_layer(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "hvae"
    assert main(["train", DIGITS_HVAE, *SMALL, *TB, "--set", "epochs=1", "--out", str(out)]) == 0
    scalars, images = events(out)
    assert_epochs_match_history(scalars, history(out))
    for site in ("z1", "z2"):
        (step, kl), = scalars[f"epoch/kl_{site}"]
        assert step == 5 and math.isfinite(kl) and kl >= 0
    assert {"samples", "reconstructions"} <= set(images)


def test_a_model_that_cannot_draw_samples_gets_a_warning_and_no_grid(tmp_path, capsys):
    """The quadrant CVAE samples only given visible quadrants: no samples grid, one warning."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "cvae"
    with pytest.warns(UserWarning, match="no samples grid") as caught:
        assert main(["train", str(ROOT / "configs" / "cvae-digits.toml"), *SMALL, *TB,
                     "--set", "epochs=2", "--out", str(out)]) == 0
    assert sum("no samples grid" in str(w.message) for w in caught) == 1
    scalars, images = events(out)
    assert "samples" not in images
    assert_epochs_match_history(scalars, history(out))


def test_resume_hides_the_steps_logged_past_the_checkpoint(tmp_path, capsys):
    """A process killed after logging epoch 2 but before its checkpoint: the resumed run logs
    epoch 2 again, and TensorBoard shows each step once, the numbers of history.csv."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(["train", DIGITS, *SMALL, *TB, "--set", "epochs=1", "--out", str(out)]) == 0
    shutil.copy(out / CHECKPOINT_NAME, tmp_path / "epoch1.pt")
    assert main(["train", "--resume", str(out), "--set", "epochs=2"]) == 0
    shutil.copy(tmp_path / "epoch1.pt", out / CHECKPOINT_NAME)  # as if killed before it
    assert main(["train", "--resume", str(out), "--set", "epochs=2"]) == 0
    assert len(list((out / "tensorboard").iterdir())) == 3  # one event file per process
    scalars, _ = events(out)
    rows = history(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert_epochs_match_history(scalars, rows)
    assert [s for s, _ in scalars["step/elbo"]] == [2, 4, 6, 8, 10]


def test_a_missing_package_is_refused_before_the_run_folder(tmp_path, monkeypatch, capsys):
    """(Without the package, torch.utils.tensorboard raises ImportError.)"""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "run"
    assert main(["train", DIGITS, *SMALL, *TB, "--set", "epochs=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pyrovae: error: train.tensorboard = true needs the tensorboard "
                             "package; install it with: pip install 'pyrovae[tensorboard]'")
    assert not out.exists()


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_zero_writes(rank, tmp_path, monkeypatch):
    """Under an initialized torch.distributed process group, a process of rank > 0 skips every
    hook (it is handed no trainer here: it must not touch one) and writes nothing."""
    pytest.importorskip("tensorboard")
    from pyrovae.reports.tensorboard import TensorBoard

    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: rank)
    board = TensorBoard(True, tmp_path)
    assert board.active == (rank == 0)
    if rank:
        board.step(None, None)
        board.epoch(None, {"epoch": 1, "step": 5, "train_elbo": -1.0})
        board.flush(), board.close()
        assert not (tmp_path / "tensorboard").exists()


def test_the_key_is_off_by_default_and_after_the_older_keys():
    """config.toml lists the keys in field order, so a new key goes after the older ones."""
    assert TrainConfig().tensorboard is False
    keys = list(TrainConfig.__dataclass_fields__)
    assert keys.index("tensorboard") > keys.index("clip_norm")
