"""Issue 28, the smaller cases: each test failed on the code before the fix.

* ``train --force`` over a run with TensorBoard events removed none of them: the old run's event
  files stayed beside the new run's (and all of them with TensorBoard off in the new run).
* ``pyrovae export RUN --arviz FILE.nc`` wrote FILE.nc with mode 0600 (``tempfile.mkstemp``'s),
  every other output 0666 less the umask (0644 under umask 022).
* Resuming a TensorBoard run without the tensorboard package was told to "set
  train.tensorboard = false", which resume then refused.
* ``model.num_classes = 10**9`` of a conditional VAE was blamed on "model.latent_dim, hidden or
  channels" (an allocation failure); with one-hot inputs too large for memory nothing named
  num_classes.
* A label -1 was told to "set num_classes to more than the largest label"; an ssvae's test
  labels outside 0..C-1 were not checked at all (they only lowered test_accuracy).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pyrovae import load_dataset, train
from pyrovae.cli import main
from pyrovae.config import DataConfig, RunConfig, SSVAEConfig, TrainConfig
from pyrovae.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
CVAE = str(ROOT / "configs" / "cvae-digits.toml")
SMALL = ["--set", "progress=false", "--set", "data.train_size=320", "--set",
         "data.test_size=100", "--set", "log_every=2", "--set", "epochs=1"]
TB = ["--set", "tensorboard=true"]
EVENTS = "events.out.tfevents.*"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


@pytest.fixture(scope="module")
def board_run(tmp_path_factory, one_thread):
    """A one-epoch digits run with TensorBoard on (copy it before changing it)."""
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("board") / "run"
    assert main(["train", DIGITS, *SMALL, *TB, "--out", str(out)]) == 0
    assert len(list((out / "tensorboard").glob(EVENTS))) == 1
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(run, dest)
    return dest


# ---- train --force and the TensorBoard event files --------------------------------------------


def test_force_replaces_the_old_runs_event_files(board_run, tmp_path, capsys):
    out = copy_of(board_run, tmp_path)
    old = {p.name for p in (out / "tensorboard").glob(EVENTS)}
    assert main(["train", DIGITS, *SMALL, *TB, "--out", str(out), "--force"]) == 0
    files = list((out / "tensorboard").glob(EVENTS))
    assert len(files) == 1 and files[0].name not in old, (old, files)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("step/elbo")] == [2, 4]  # the new run's, once


def test_force_without_tensorboard_leaves_no_old_events(board_run, tmp_path, capsys):
    out = copy_of(board_run, tmp_path)
    assert main(["train", DIGITS, *SMALL, "--out", str(out), "--force"]) == 0
    assert not list(out.rglob(EVENTS))
    assert not (out / "tensorboard").exists()  # (it held the old events only)


def test_resume_keeps_the_event_files(board_run, tmp_path, capsys):
    out = copy_of(board_run, tmp_path)
    assert main(["train", "--resume", str(out), "--set", "epochs=2"]) == 0
    assert len(list((out / "tensorboard").glob(EVENTS))) == 2


def test_a_refused_forced_run_removes_no_event_file(board_run, tmp_path, capsys):
    """The old events go at the new run's first step, not while its config is checked."""
    out = copy_of(board_run, tmp_path)
    assert main(["train", DIGITS, *SMALL, *TB, "--set", "batch_size=100000", "--out", str(out),
                 "--force"]) == 2
    assert len(list((out / "tensorboard").glob(EVENTS))) == 1


# ---- the TensorBoard package missing on resume --------------------------------------------------


def test_resume_without_the_package_names_a_fix_that_works(board_run, tmp_path, monkeypatch,
                                                           capsys):
    from pyrovae.training.checks import RESUMABLE_CHANGES

    out = copy_of(board_run, tmp_path)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--set", "epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "pip install 'pyrovae[tensorboard]'" in err[0]
    if "tensorboard" in RESUMABLE_CHANGES:  # then turning it off must resume
        assert main(["train", "--resume", str(out), "--set", "epochs=2", "--set",
                     "tensorboard=false"]) == 0
    else:  # the message must not offer tensorboard = false as the way to resume
        assert "install the package to resume" in err[0], err[0]
        assert "for a new run, set train.tensorboard = false" in err[0], err[0]


# ---- the mode of the .nc export -----------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_the_netcdf_export_has_the_mode_of_the_other_outputs(board_run, tmp_path, umask,
                                                             capsys):
    pytest.importorskip("arviz")
    pytest.importorskip("h5netcdf")
    path = tmp_path / f"post{umask:o}.nc"
    old = os.umask(umask)
    try:
        assert main(["export", str(board_run), "--arviz", str(path), "--draws", "25",
                     "--points", "0-1"]) == 0
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list(tmp_path.glob(".*.tmp"))


# ---- num_classes far too large ------------------------------------------------------------------


def test_a_billion_classes_of_a_cvae_are_blamed_on_num_classes(tmp_path, capsys):
    out = tmp_path / "cvae"
    assert main(["train", CVAE, *SMALL, "--set", "condition=label", "--set",
                 "num_classes=1000000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.num_classes = 1000000000" in err[0], err
    assert "latent_dim, hidden or channels" not in err[0]
    assert not out.exists()


def test_a_cvae_too_large_for_memory_names_num_classes(tmp_path, capsys):
    """Under the bound, classes whose first layers cannot fit: refused before building."""
    assert main(["train", CVAE, *SMALL, "--set", "condition=label", "--set",
                 "num_classes=100000", "--set", "hidden=[10000000]", "--out",
                 str(tmp_path / "cvae")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.num_classes = 100000" in err and "make model.num_classes" in err, err


def test_one_hot_classes_too_large_for_memory_name_num_classes(monkeypatch):
    from pyrovae import limits  # (the 0.1 path: these cases also run against 0.1)
    from pyrovae.conditional import with_labels  # (the 0.1 path)

    digits = load_dataset("digits")
    budget = 100 * 2**20  # a machine of 100 MiB (memory.memory_budget where there is one)
    monkeypatch.setattr(limits, "available_bytes", lambda device=None: budget)
    if hasattr(limits, "memory_budget"):
        monkeypatch.setattr(limits, "memory_budget", lambda device=None: (budget, ""))
    with pytest.raises(Exception, match="model.num_classes = 100000") as caught:
        with_labels(digits, 100_000)
    assert "lower model.num_classes" in str(caught.value)
    assert with_labels(digits, 10).num_classes == 10  # (10 classes fit in 100 MiB)


# ---- a negative label ---------------------------------------------------------------------------


def digits_with(train_label=None, test_label=None):
    data = load_dataset("digits", binarize="dynamic")
    train_y, test_y = data.train_y.clone(), data.test_y.clone()
    if train_label is not None:
        train_y[7] = train_label
    if test_label is not None:
        test_y[3] = test_label
    return replace(data, train_y=train_y, test_y=test_y)


def refused_negative(err: Exception) -> None:
    message = str(err)
    assert "must be in 0..9" in message and "label -1 found" in message, message
    assert "num_classes to more than" not in message and "set num_classes" not in message


def test_a_negative_label_is_refused_by_the_label_split():
    from pyrovae.semisupervised import split_labels  # (the 0.1 path)

    y = torch.arange(300) % 10
    y[5] = -1
    with pytest.raises(DataError) as caught:
        split_labels(y, labels=50, validation=20, num_classes=10)
    refused_negative(caught.value)
    y[5] = 10  # too large: still told to raise num_classes
    with pytest.raises(DataError, match=r"label 10 found\); set num_classes to the number"):
        split_labels(y, labels=50, validation=20, num_classes=10)


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_negative_label_is_refused_by_a_label_conditioned_cvae(split):
    from pyrovae.conditional import with_labels  # (the 0.1 path)

    data = digits_with(train_label=-1) if split == "train" else digits_with(test_label=-1)
    with pytest.raises(DataError) as caught:
        with_labels(data, 10)
    refused_negative(caught.value)


def test_cli_refuses_a_negative_label_of_an_ssvae(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.random((400, 8, 8)) * 255).astype(np.uint8)
    y = np.arange(400) % 10
    y[7] = -1
    path = tmp_path / "neg.npz"
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    assert main(["train", str(ROOT / "configs" / "ssvae-digits.toml"), "--set",
                 "progress=false", "--set", "epochs=1", "--set", f"data.name={path}", "--set",
                 "validation=20", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "label -1 found" in err and "set num_classes" not in err, err


def test_an_ssvae_refuses_test_labels_outside_its_classes():
    model = SSVAEConfig(latent_dim=4, hidden=(32,), classifier=(64,), labels=50, validation=200,
                        alpha=10.0, label_batch_size=20)
    config = RunConfig(model=model, data=DataConfig(name="digits", binarize="dynamic"),
                       train=TrainConfig(epochs=1, batch_size=100, progress=False))
    with pytest.raises(DataError) as caught:
        train(config, digits_with(test_label=-1))
    assert "the test labels" in str(caught.value)
    refused_negative(caught.value)


def test_reproduce_set_progress_false_draws_no_training_bar(monkeypatch, tmp_path):
    """`pyrovae reproduce NAME --set progress=false` trained with the bar on (the runner set
    train.progress from --quiet alone); it is off now, as with --quiet."""
    from pyrovae.reproduce import runner

    seen = {}

    class Stop(Exception):
        pass

    def fake_train(config, data, **kwargs):
        seen["progress"] = config.train.progress
        raise Stop
    monkeypatch.setattr(runner, "train", fake_train)
    monkeypatch.setattr(runner, "load_dataset", lambda *a, **k: None)
    monkeypatch.setattr(runner, "data_fingerprint", lambda *a, **k: "0" * 64, raising=False)
    with pytest.raises(Stop):
        runner.reproduce("burda-vae-1", out=str(tmp_path), epochs=1,
                         overrides=["progress=false"], progress=True)
    assert seen["progress"] is False


def test_sigterm_during_a_command_says_so_and_exits_143(monkeypatch, tmp_path, capsys):
    """SIGTERM outside training (evaluate, reproduce's evaluation) killed the process without a
    word (exit 143 silently); it now stops as Ctrl-C does, with one line, and the previous
    SIGTERM handler is put back after the command."""
    import importlib
    import signal
    import time

    cli_main = importlib.import_module("pyrovae.cli.main")   # (the module, not the function)

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)   # (the handler raises before this ends)
        return 0
    parser = cli_main.build_parser
    monkeypatch.setattr(cli_main, "build_parser", lambda: _with_func(parser(), terminated))
    before = signal.getsignal(signal.SIGTERM)
    assert main(["evaluate", str(tmp_path)]) == 143
    assert capsys.readouterr().err.strip() == "pyrovae: interrupted (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) == before


def _with_func(parser, func):
    """The parser with every command's function replaced by ``func``."""
    parse = parser.parse_args

    def parse_args(argv=None):
        args = parse(argv)
        args.func = func
        return args
    parser.parse_args = parse_args
    return parser
