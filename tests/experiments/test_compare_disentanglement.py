"""``pyrovae compare --disentanglement N``: each row of a grid over KL decompositions carries
the five disentanglement scores and the KL term's three parts, the table and the picture show
them; data without known factors are refused before anything trains."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from pyrovae.cli import main
from pyrovae.experiments import Settings
from pyrovae.experiments.summary import DISENTANGLEMENT, METRICS, markdown_table, metrics_for
from pyrovae.runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
STUDY = str(ROOT / "configs" / "dsprites-study.toml")
DIGITS = str(ROOT / "configs" / "digits.toml")
SCORES = ("mig", "factorvae", "dci_disentanglement", "dci_completeness",
          "dci_informativeness", "sap", "betavae")
TERMS = ("index_code_mi", "total_correlation", "dimwise_kl")
TINY = ["--set", "data.name=dsprites-small", "--set", "data.image_size=[16]",
        "--set", "data.train_size=512", "--set", "data.test_size=128", "--set", "epochs=1",
        "--set", "hidden=[32]", "--set", "latent_dim=4", "--set", "batch_size=64",
        "--set", "progress=false", "--nll-samples", "25", "--grad-draws", "3"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_grid_over_decompositions_is_scored_and_tabulated(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["compare", STUDY, *TINY, "--vary", "kl.decomposition=none+kl.beta=4,tc",
                 "--disentanglement", "90", "--dci-model", "forest", "--out", str(out)]) == 0
    rows = _rows(out / "compare.csv")
    assert [r["kl.decomposition"] for r in rows] == ["none+kl.beta=4", "tc"]
    for row in rows:
        for key in SCORES:
            assert 0.0 <= float(row[key]) <= 1.0 + 1e-9, (key, row[key])
        for key in TERMS:
            assert math.isfinite(float(row[key])), key
        assert row["disentanglement"] == "90" and row["dci_model"] == "forest"
        assert math.isfinite(float(row["distortion"]))
    table = (out / "compare.md").read_text()
    for heading in ("MIG", "FactorVAE", "DCI D", "SAP", "BetaVAE", "TC", "distortion"):
        assert f"| {heading} |" in table or f" {heading} |" in table, heading
    assert "--disentanglement 90 --dci-model forest" in table  # the command to rerun it
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")


def test_data_without_factors_are_refused_before_training(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["compare", DIGITS, "--vary", "elbo=trace", "--set", "epochs=1",
                 "--disentanglement", "100", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has none" in err[0] and "--disentanglement" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"disentanglement": 5}, "use at least 6 examples"),
    ({"dci_model": "svm"}, "choose one of gbt, forest"),
])
def test_bad_settings_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**kwargs)


def test_the_table_adds_the_scores_only_when_rows_have_them():
    plain = [{"combination": "a", "k": "a", "test_elbo": -1.0}]
    scored = [{**plain[0], "mig": 0.25, "factorvae": 0.5}]
    assert metrics_for(plain) == METRICS
    assert metrics_for(scored) == METRICS + DISENTANGLEMENT
    assert "MIG" not in markdown_table(plain, ["k"])
    assert "| 0.250 | 0.500 |" in markdown_table(scored, ["k"])
