"""Issue 28: crafted checkpoints are refused in one line naming the field.

``torch.load(weights_only=True)`` keeps code out of a checkpoint, but not wrong data: a field
of the wrong type, sign or integrality (``input_shape = "abc"``, ``[-64]``, ``[1.5, 8, 8]``,
a negative epoch, a history that is not a list of tables, ...) went on to a traceback deep in
torch or in the training loop, or was accepted. ``load_checkpoint`` now checks every field it
knows before anything uses it: ``pyrovae.load``, ``pyrovae evaluate``, ``pyrovae sample`` and
``pyrovae train --resume`` each refuse such a file in one line naming the field (exit status
2), and ``--resume`` refuses a checkpoint without a field that continuing needs.

On the code before the fix: tracebacks (16 to 46 lines) for "abc", [-64], a string step,
history, seconds, loss_sum, rng or optimizer; [1.5, 8, 8], [True, 8, 8], epoch -1 and
format_version -1 were accepted.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.errors import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
TINY = ["--set", "epochs=1", "--set", "progress=false", "--set", "hidden=[16]",
        "--set", "latent_dim=2", "--set", "train_size=256", "--set", "test_size=64"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny digits run (1 epoch), whose genuine checkpoint loads."""
    out = tmp_path_factory.mktemp("crafted") / "run"
    assert main(["train", DIGITS, *TINY, "--out", str(out)]) == 0
    assert pyrovae.load(out).config.train.epochs == 1
    return out


def crafted(run_dir: Path, out: Path, key: str, value) -> Path:
    """A copy of ``run_dir`` whose checkpoint holds ``value`` at ``key`` (deleted for
    ``DELETE``); config.toml is left as it is (the checkpoint's config is not changed)."""
    shutil.copytree(run_dir, out)
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    if value is DELETE:
        del payload[key]
    else:
        payload[key] = value
    torch.save(payload, out / "checkpoint.pt")
    return out


DELETE = object()

CRAFTED = {
    "input_shape-str": ("input_shape", "abc"),
    "input_shape-negative": ("input_shape", [-64]),
    "input_shape-fraction": ("input_shape", [1.5, 8, 8]),
    "input_shape-bool": ("input_shape", [True, 8, 8]),
    "input_shape-empty": ("input_shape", []),
    "epoch-negative": ("epoch", -1),
    "epoch-zero": ("epoch", 0),
    "batch-fraction": ("batch", 1.5),
    "step-str": ("step", "x"),
    "history-str": ("history", "abc"),
    "history-numbers": ("history", [1, 2]),
    "model-str": ("model", "abc"),
    "seconds-nan": ("seconds", math.nan),
    "seconds-str": ("seconds", "s"),
    "loss_sum-str": ("loss_sum", "s"),
    "rng-int": ("rng", 5),
    "optimizer-str": ("optimizer", "o"),
    "format_version-negative": ("format_version", -1),
}


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_field_is_one_line_naming_it(case, run_dir, tmp_path, capsys):
    key, value = CRAFTED[case]
    path = crafted(run_dir, tmp_path / "crafted", key, value)
    with pytest.raises(CheckpointError) as info:
        pyrovae.load(path)
    message = str(info.value)
    assert "\n" not in message and f"'{key}'" in message, message
    for args in (["evaluate", path, "--quiet", "--nll-samples", "25"],
                 ["sample", path, "--out", tmp_path / "samples"],
                 ["train", "--resume", path, "--set", "epochs=2"]):
        capsys.readouterr()
        assert main([str(a) for a in args]) == 2, args
        line = one_line(capsys.readouterr().err)
        assert f"'{key}'" in line and "crafted" in line, (args, line)


@pytest.mark.parametrize("key", ["rng", "optimizer", "loss_sum", "history"])
def test_resume_refuses_a_checkpoint_without_a_field_it_needs(key, run_dir, tmp_path, capsys):
    path = crafted(run_dir, tmp_path / "lacking", key, DELETE)
    capsys.readouterr()
    assert main(["train", "--resume", str(path), "--set", "epochs=2"]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"lacks '{key}'" in line, line
