"""Results that look valid and are wrong (issue 28): a number is only as good as the data it
was computed on, so every command that reads a trained run's data checks them against the
fingerprint the run recorded in training (``pyrovae.data.fingerprint``), and every result on
other data says so.

A tiny run is trained on a .npz copy of scikit-learn's digits; the file is then replaced by
other numbers of the same shape, or by data of another shape: ``evaluate``, ``anomaly``,
``reconstruct`` (and ``compare`` on a finished run) refuse in one line naming both
fingerprints; other data asked for on purpose (``--data FILE``) are named in the result
(``data_sha256``, ``same_data_as_training``: false); a run without a fingerprint is evaluated
as before with a one-line note; ``reproduce`` with ``--set data.name=...`` is never "met";
``anomaly --labels-anomalous`` with a label no example has is refused."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.cli import main
from pyrovae.config import load_config
from pyrovae.data import load_dataset
from pyrovae.data.fingerprint import data_fingerprint
from pyrovae.errors import DataError
from pyrovae.reproduce import REPRODUCTIONS, Recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

EVAL = ["--nll-samples", "25", "--points", "20", "--quiet"]


def digits_arrays(kind: str = "same") -> dict:
    """The digits as a .npz's arrays (1,500 train, 297 test, 8x8 in [0, 1]); "other": other
    numbers of the same shape; "shape": 4x4 images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    rng = np.random.default_rng(1)
    if kind == "other":
        x = rng.random(x.shape).astype(np.float32)
    elif kind == "shape":
        x = rng.random((len(x), 4, 4)).astype(np.float32)
    return {"x_train": x[:1500], "x_test": x[1500:], "y_train": y[:1500], "y_test": y[1500:]}


def config_text(data: Path) -> str:
    return f"""[model]
latent_dim = 4
hidden = [32]
likelihood = "bernoulli"
elbo = "meanfield"

[data]
name = "{data}"
binarize = "dynamic"

[train]
epochs = 1
batch_size = 100
progress = false
"""


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    """(run folder, its data file) for a run trained on a .npz of the digits."""
    root = tmp_path_factory.mktemp("named_data")
    data = root / "data.npz"
    np.savez(data, **digits_arrays())
    config = root / "run.toml"
    config.write_text(config_text(data))
    assert main(["train", str(config), "--out", str(root / "run")]) == 0
    return root / "run", data


@contextlib.contextmanager
def replaced(path: Path, kind: str):
    """The data file replaced by other data ("other": same shape, "shape": 4x4) inside the
    block, and put back after it."""
    original = path.read_bytes()
    np.savez(path, **digits_arrays(kind))
    try:
        yield
    finally:
        path.write_bytes(original)


def one_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def run_sha(run: Path) -> str:
    return json.loads((run / "metrics.json").read_text())["data_sha256"]


COMMANDS = {
    "evaluate": EVAL,
    "anomaly": ["--labels-anomalous", "9", "--no-progress", "--samples", "2"],
    "reconstruct": ["--n", "4"],
}


@pytest.mark.parametrize("kind", ["other", "shape"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_run_whose_data_changed_is_refused_in_one_line(npz_run, tmp_path, capsys, command,
                                                         kind):
    run, data = npz_run
    with replaced(data, kind):
        now = data_fingerprint(load_dataset(load_config(run / "config.toml").data))
        status = main([command, str(run), "--out", str(tmp_path), *COMMANDS[command]])
    err = one_line(capsys.readouterr().err)
    assert status == 2
    assert run_sha(run)[:16] in err and now[:16] in err  # both fingerprints, named
    assert "restore the data" in err and str(data) in err
    if kind == "shape":
        assert "[1, 4, 4]" in err and "[1, 8, 8]" in err
    assert not (tmp_path / "eval.json").exists() and not (tmp_path / "anomaly.json").exists()


def test_own_data_are_named_in_the_result(npz_run, tmp_path, capsys):
    run, _ = npz_run
    assert main(["evaluate", str(run), "--out", str(tmp_path / "e"), *EVAL]) == 0
    result = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert result["data_sha256"] == run_sha(run) and result["same_data_as_training"] is True
    assert "note" not in capsys.readouterr().err
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert shown["data_sha256"] == run_sha(run) and shown["same_data_as_training"] is True
    assert "note" not in captured.err


def test_other_data_on_purpose_say_they_differ(npz_run, tmp_path, capsys):
    run, _ = npz_run
    other = tmp_path / "other.npz"
    np.savez(other, **digits_arrays("other"))
    for command in ("reconstruct", "anomaly"):
        out = tmp_path / command
        extra = ["--no-progress", "--samples", "2"] if command == "anomaly" else []
        assert main([command, str(run), "--out", str(out), "--data", str(other), *extra]) == 0
        captured = capsys.readouterr()
        shown = json.loads(captured.out)  # stdout stays one JSON document
        assert shown["same_data_as_training"] is False
        assert shown["data_sha256"] != run_sha(run) and len(shown["data_sha256"]) == 64
        saved = json.loads((out / f"{command}.json").read_text())
        assert saved["same_data_as_training"] is False
        note = captured.err.strip().splitlines()[-1]
        assert "other data" in note and shown["data_sha256"][:16] in note
    shape = tmp_path / "shape.npz"
    np.savez(shape, **digits_arrays("shape"))
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "s"), "--data", str(shape)]) == 2
    assert "16 values per example" in one_line(capsys.readouterr().err)


def test_a_run_without_a_fingerprint_is_evaluated_with_a_note(npz_run, tmp_path, capsys):
    run, _ = npz_run
    old = tmp_path / "old"
    shutil.copytree(run, old)
    payload = torch.load(old / "checkpoint.pt", weights_only=True)
    del payload["data_sha256"]
    torch.save(payload, old / "checkpoint.pt")
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["data_sha256"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert main(["evaluate", str(old), "--out", str(tmp_path / "e"), *EVAL]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "records no data fingerprint" in err[0]
    result = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert result["same_data_as_training"] is None and result["data_sha256"] == run_sha(run)


def test_anomaly_refuses_a_label_that_no_example_has(npz_run, tmp_path, capsys):
    run, _ = npz_run
    status = main(["anomaly", str(run), "--out", str(tmp_path), "--labels-anomalous", "42",
                   "--no-progress"])
    err = one_line(capsys.readouterr().err)
    assert status == 2 and "42" in err and "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in err
    assert not (tmp_path / "anomaly.json").exists()


def test_compare_refuses_a_finished_run_whose_data_changed(npz_run, tmp_path):
    from pyrovae.experiments import Settings, compare

    _, data = npz_run
    config = load_config(npz_run[0] / "config.toml")
    settings = Settings(nll_samples=25, eval_points=20, grad_draws=2)
    out = tmp_path / "cmp"
    compare(config, ["latent_dim=3"], out, settings=settings, log=lambda m: None)
    with replaced(data, "other"):
        with pytest.raises(DataError, match="they changed since training"):  # a kept row
            compare(config, ["latent_dim=3"], out, settings=settings, resume=True,
                    log=lambda m: None)
        (out / "compare.csv").unlink()  # no row: the finished run would be evaluated again
        with pytest.raises(Exception, match="they changed since training"):
            compare(config, ["latent_dim=3"], out, settings=settings, resume=True,
                    log=lambda m: None)


@pytest.fixture
def npz_recipe(npz_run):
    _, data = npz_run
    config = {"model": {"latent_dim": 4, "hidden": [32], "elbo": "meanfield"},
              "data": {"name": str(data), "binarize": "dynamic"},
              "train": {"epochs": 1, "batch_size": 100, "seed": 0}}
    REPRODUCTIONS.register("npz-vae", Recipe(
        paper="Nobody 2026", table="a test row", metric="test_nll", paper_value=20.0,
        goal=1000.0, config=config, nll_samples=25, points=20))
    yield
    REPRODUCTIONS.unregister("npz-vae")


def test_reproduce_on_other_data_is_never_met(npz_recipe, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "npz-vae", "--out", str(out), "--quiet",
                 "--set", "data.name=digits"]) == 0
    shown = capsys.readouterr().out
    assert "other data: not comparable" in shown and " met" not in shown
    row = json.loads((out / "npz-vae" / "row.json").read_text())
    assert row["met"] is None and row["comparable"] is False
    assert "data.name = 'digits'" in row["other_data"] and row["data"] == "digits"
    table = (out / "table.md").read_text()
    assert "other data: not comparable" in table and "| yes |" not in table
