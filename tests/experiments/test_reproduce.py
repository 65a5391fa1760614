"""``pyrovae reproduce``: a recipe trains, evaluates and writes its row and the table; a second
call reads what is done; more epochs resume the run; bad names and flags are refused in one
line. Recipes registered here on scikit-learn's digits, so the suite stays fast."""

from __future__ import annotations

import json

import pytest

from pyrovae.cli import main
from pyrovae.runtime.errors import ConfigError
from pyrovae.reports.numbers import format_estimate
from pyrovae.reproduce import REPRODUCTIONS, Recipe, recipe_config, reproduce
from pyrovae.runs import load

DIGITS_VAE = {"model": {"latent_dim": 4, "hidden": [32], "elbo": "meanfield"},
              "data": {"name": "digits", "binarize": "dynamic", "train_size": 300,
                       "test_size": 60},
              "train": {"epochs": 2, "batch_size": 50, "lr": 3e-3, "seed": 0}}
DIGITS_M2 = {"model": {"kind": "ssvae", "latent_dim": 4, "hidden": [32], "classifier": [32],
                       "elbo": "enum", "labels": 50, "validation": 100, "alpha": 10.0,
                       "label_batch_size": 50},
             "data": {"name": "digits", "binarize": "dynamic"},
             "train": {"epochs": 2, "batch_size": 50, "lr": 3e-3, "seed": 0}}


@pytest.fixture(autouse=True)
def recipes():
    REPRODUCTIONS.register("test-vae", Recipe(
        paper="Nobody 2026", table="a test row", metric="test_nll", paper_value=20.0,
        goal=1000.0, config=DIGITS_VAE, nll_samples=25, points=40))
    REPRODUCTIONS.register("test-m2", Recipe(
        paper="Nobody 2026", table="a test row", metric="test_accuracy", paper_value=0.5,
        goal=1.01, config=DIGITS_M2))
    yield
    REPRODUCTIONS.unregister("test-vae")
    REPRODUCTIONS.unregister("test-m2")


def test_a_recipe_trains_evaluates_and_writes_its_row(tmp_path):
    out = tmp_path / "rep"
    row = reproduce("test-vae", out=str(out), progress=False)
    run = load(out / "test-vae")
    result = json.loads((out / "test-vae" / "eval.json").read_text())
    assert row["ours"] == result["test_nll"] and row["ours_se"] == result["test_nll_se"]
    assert result["num_points"] == 40 and result["nll_samples"] == 25
    assert row["ours"] > 0 and row["met"] is True and row["epochs"] == 2
    assert row["train_seconds"] == pytest.approx(sum(h["seconds"] for h in run.history))
    assert row["command"] == f"pyrovae reproduce test-vae --out {out}"
    assert json.loads((out / "test-vae" / "row.json").read_text()) == row
    table = (out / "table.md").read_text()
    assert "| test-vae | Nobody 2026 | a test row | 20.00 |" in table
    assert f"| {format_estimate(row['ours'], row['ours_se'], pm='±')} |" in table
    assert json.loads((out / "table.json").read_text()) == [row]
    assert (out / "table.csv").read_text().startswith("name,paper,table,metric")
    assert (out / "curves.png").stat().st_size > 1000


def test_a_second_call_reads_what_is_done_and_more_epochs_resume(tmp_path):
    out = str(tmp_path / "rep")
    first = reproduce("test-vae", out=out, progress=False)
    files = {n: (tmp_path / "rep" / "test-vae" / n).stat().st_mtime_ns
             for n in ("checkpoint.pt", "eval.json")}
    again = reproduce("test-vae", out=out, progress=False)
    assert again == first  # neither retrained nor re-evaluated
    assert files == {n: (tmp_path / "rep" / "test-vae" / n).stat().st_mtime_ns for n in files}
    longer = reproduce("test-vae", out=out, epochs=3, progress=False)
    run = load(tmp_path / "rep" / "test-vae")
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    assert longer["epochs"] == 3 and longer["command"].endswith("--epochs 3")
    assert longer["ours"] != first["ours"]  # evaluated again on the longer run


def test_resumed_recipe_equals_one_uninterrupted_run(tmp_path):
    """2 epochs then 2 more is the same run as 4 at once (the checkpoint's bit-exact
    resume), so a reproduction stopped and restarted gives the same number."""
    a = reproduce("test-vae", out=str(tmp_path / "a"), epochs=2, progress=False)
    a = reproduce("test-vae", out=str(tmp_path / "a"), epochs=4, progress=False)
    b = reproduce("test-vae", out=str(tmp_path / "b"), epochs=4, progress=False)
    assert a["ours"] == b["ours"]


def test_an_accuracy_recipe_reads_the_run_metric(tmp_path):
    row = reproduce("test-m2", out=str(tmp_path), progress=False, points=50)
    run = load(tmp_path / "test-m2")
    assert row["ours"] == run.metrics["test_accuracy"] and row["ours_se"] is None
    assert row["met"] is False and row["nll_samples"] is None
    # scored on every test image: the IS settings are neither recorded nor in the command
    assert row["points"] is None and "--points" not in row["command"]


def test_overrides_reach_the_config():
    cfg = recipe_config("test-vae", epochs=5, overrides=["latent_dim=6", "train.lr=0.01"])
    assert cfg.train.epochs == 5 and cfg.model.latent_dim == 6 and cfg.train.lr == 0.01


def test_the_built_in_recipes_are_valid_configs():
    for name in REPRODUCTIONS:
        cfg = recipe_config(name)
        assert cfg.train.epochs >= 1, name


def test_cli_lists_runs_and_refuses_in_one_line(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "burda-vae-1" in listed and "86.76" in listed and "test-vae" in listed
    assert main(["reproduce", "test-vae", "--out", str(tmp_path), "--quiet"]) == 0
    assert "ours" in capsys.readouterr().out
    assert main(["reproduce", "no-such-row"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no reproduction named 'no-such-row'" in err and "\n" not in err
    assert main(["reproduce"]) == 2
    assert "needs a NAME" in capsys.readouterr().err
    assert main(["reproduce", "test-vae", "--nll-samples", "3"]) == 2
    assert "--nll-samples = 3 is out of range" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no reproduction named"):
        reproduce("nope", out=str(tmp_path))
