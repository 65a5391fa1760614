"""Estimator rankings in ``pyrovae reproduce``: the paired t interval and the verdict on
numbers with known answers, the built-in rankings' contenders are valid configs, a tiny
ranking on scikit-learn's digits trains, evaluates and writes its rows (and a second call
reads them), and bad input is refused in one line."""

from __future__ import annotations

import csv
import json
import math

import pytest

from pyrovae.cli import main
from pyrovae.config import RunConfig
from pyrovae.reproduce import REPRODUCTIONS, Ranking, reproduce, reproduce_ranking
from pyrovae.reproduce.rankings import (NOT_REPRODUCED, REPRODUCED, UNRESOLVED, mean_se,
                                        objective, paired_interval, t975, verdict)
from pyrovae.reproduce.ranking_runner import contender_config, pair_row
from pyrovae.runtime.errors import ConfigError

DIGITS = {"model": {"latent_dim": 4, "hidden": [32], "elbo": "trace", "num_particles": 3},
          "data": {"name": "digits", "binarize": "dynamic", "train_size": 200,
                   "test_size": 40},
          "train": {"epochs": 1, "batch_size": 50, "lr": 3e-3, "seed": 0}}
BUILT_IN = ("dreg-vs-iwae-5", "dreg-vs-iwae-50", "tighter-vs-iwae-64", "stl-vs-reparam-elbo")


@pytest.fixture(autouse=True)
def test_ranking():
    REPRODUCTIONS.register("test-ranking", Ranking(
        paper="Nobody 2026", claim="dreg beats reparam", config=DIGITS,
        contenders={"dreg": objective("iwae", "dreg", 3),
                    "plain": objective("iwae", "reparam", 3)},
        pairs=(("dreg", "plain"),), epochs=1, seeds=2, nll_samples=25, points=30,
        paper_values={"dreg": 1.0}))
    yield
    REPRODUCTIONS.unregister("test-ranking")


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 4, 10, 30, 31, 50, 200):
        assert t975(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=2e-4), dof


def test_paired_interval_by_hand():
    # differences -1, -2, -3: mean -2, sd 1, SE 1/sqrt(3), half-width t(2) / sqrt(3)
    got = paired_interval([9.0, 8.0, 7.0], [10.0, 10.0, 10.0])
    half = 4.3027 / math.sqrt(3)
    assert got["diff_mean"] == pytest.approx(-2.0)
    assert got["diff_se"] == pytest.approx(1 / math.sqrt(3))
    assert (got["diff_lo"], got["diff_hi"]) == (pytest.approx(-2 - half),
                                                pytest.approx(-2 + half))
    assert mean_se([1.0, 3.0]) == (2.0, pytest.approx(1.0))


@pytest.mark.parametrize("better, other, expected", [
    ([84.9, 85.0, 84.8], [85.2, 85.4, 85.1], REPRODUCED),       # clear win, every seed
    ([85.6, 85.8, 85.5], [85.2, 85.4, 85.1], NOT_REPRODUCED),   # clear loss, every seed
    ([84.9, 85.6, 85.0], [85.2, 85.1, 85.3], UNRESOLVED),       # the seeds disagree
])
def test_verdict_on_known_answers(better, other, expected):
    got = paired_interval(better, other)
    assert verdict(got["diff_lo"], got["diff_hi"]) == expected


def test_pairing_by_seed_resolves_what_unpaired_means_would_not():
    """A seed effect shared by both contenders cancels in the paired difference."""
    base = [80.0, 85.0, 90.0]
    better = [b - 0.3 for b in base]
    got = paired_interval(better, [b + 0.01 * i for i, b in enumerate(base)])
    assert verdict(got["diff_lo"], got["diff_hi"]) == REPRODUCED
    assert mean_se(better)[1] > 2  # the contenders' own SEs overlap widely


def test_verdict_for_higher_is_better_and_bad_input():
    assert verdict(0.1, 0.5, "higher") == REPRODUCED
    assert verdict(-0.5, -0.1, "higher") == NOT_REPRODUCED
    assert verdict(-0.1, 0.1) == UNRESOLVED
    with pytest.raises(ValueError, match=">= 2 values"):
        paired_interval([1.0], [2.0])
    with pytest.raises(ValueError, match="paired by seed"):
        paired_interval([1.0, 2.0], [2.0])


def test_pair_row_states_the_time_ratio():
    rank = REPRODUCTIONS.get("test-ranking")
    res = {"dreg": [{"test_nll": 1.0, "train_seconds": 30.0},
                    {"test_nll": 2.0, "train_seconds": 30.0}],
           "plain": [{"test_nll": 1.5, "train_seconds": 20.0},
                     {"test_nll": 2.5, "train_seconds": 20.0}]}
    row = pair_row(rank, "dreg", "plain", res)
    assert row["time_ratio"] == pytest.approx(1.5) and row["equal_time"] is False
    assert row["diff_se"] == 0 and row["verdict"] == REPRODUCED  # -0.5 on both seeds
    assert row["paper_better"] == 1.0 and row["paper_other"] is None


def test_built_in_rankings_are_valid_and_draw_equal_particles():
    for name in BUILT_IN:
        rank = REPRODUCTIONS.get(name)
        assert rank.metric == "ranking" and rank.seeds >= 3 and rank.pairs, name
        for better, other in rank.pairs:
            draws = []
            for c in (better, other):
                model = contender_config(rank, c, seed=1).model
                objective_ = model.objective
                groups = getattr(objective_, "groups", 1) if objective_.bound in (
                    "miwae", "piwae") else 1
                draws.append(model.num_particles * groups)
            assert draws[0] == draws[1], (name, better, other, draws)
    cfg = RunConfig.from_dict(REPRODUCTIONS.get("tighter-vs-iwae-64").contender_config(
        "ciwae-0.05"))
    assert cfg.model.objective.bound == "ciwae" and cfg.model.objective.ciwae_beta == 0.05


def test_a_ranking_trains_evaluates_and_writes_its_rows(tmp_path):
    out = tmp_path / "rep"
    rows = reproduce_ranking("test-ranking", out=str(out), progress=False)
    (row,) = rows
    assert row["seeds"] == [0, 1] and row["epochs"] == 1 and row["points"] == 30
    assert len(row["better_nll"]) == len(row["other_nll"]) == 2
    for i, contender in enumerate(("dreg", "plain")):
        for seed in (0, 1):
            ev = json.loads((out / "test-ranking" / f"{contender}-s{seed}" / "eval.json")
                            .read_text())
            nll = row["better_nll" if i == 0 else "other_nll"][seed]
            assert ev["test_nll"] == nll and ev["nll_samples"] == 25
    assert row["diff_lo"] <= row["diff_mean"] <= row["diff_hi"]
    assert row["verdict"] == verdict(row["diff_lo"], row["diff_hi"])
    assert row["better_seconds"] > 0 and row["time_ratio"] > 0
    assert row["comparable"] is True and row["data"] == "digits"
    assert row["command"] == f"pyrovae reproduce test-ranking --out {out}"
    assert json.loads((out / "test-ranking" / "ranking.json").read_text()) == rows
    assert json.loads((out / "rankings.json").read_text()) == rows
    table = (out / "rankings.md").read_text()
    assert "| test-ranking | Nobody 2026 | dreg | plain | 2 | 1 |" in table
    assert row["verdict"] in table
    (line,) = csv.DictReader((out / "rankings.csv").open())
    assert line["seeds"] == "0;1" and line["verdict"] == row["verdict"]
    mtime = (out / "test-ranking" / "dreg-s0" / "checkpoint.pt").stat().st_mtime_ns
    assert reproduce_ranking("test-ranking", out=str(out), progress=False) == rows
    assert (out / "test-ranking" / "dreg-s0" / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_cli_lists_runs_and_refuses_in_one_line(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in BUILT_IN:
        assert name in listed
    assert "Rainforth et al. 2018, ranking:" in listed
    assert main(["reproduce", "test-ranking", "--out", str(tmp_path), "--quiet", "--seeds",
                 "2", "--points", "20"]) == 0
    said = capsys.readouterr().out
    assert "dreg - plain:" in said and "95 % interval" in said
    (row,) = json.loads((tmp_path / "test-ranking" / "ranking.json").read_text())
    assert row["points"] == 20 and row["command"].endswith("--points 20")
    assert main(["reproduce", "test-ranking", "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--seeds = 1 is out of range" in err and "\n" not in err
    assert main(["reproduce", "no-such-ranking", "--seeds", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no reproduction named 'no-such-ranking'" in err and "\n" not in err
    assert main(["reproduce", "burda-vae-1", "--seeds", "3"]) == 2
    assert "--seeds applies to a ranking" in capsys.readouterr().err
    assert main(["reproduce", "test-ranking", "--set", "train.seed=4"]) == 2
    assert "use --seeds N" in capsys.readouterr().err


def test_python_api_refuses_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="needs --seeds >= 2"):
        reproduce_ranking("test-ranking", out=str(tmp_path), seeds=1)
    with pytest.raises(ConfigError, match="single-number recipe"):
        reproduce_ranking("burda-vae-1", out=str(tmp_path))
    with pytest.raises(ConfigError, match="is a ranking"):
        reproduce("test-ranking", out=str(tmp_path))
    REPRODUCTIONS.register("test-data-edit", Ranking(
        paper="p", claim="c", config=DIGITS, contenders={"a": {}, "b": {"data": {
            "train_size": 100}}}, pairs=(("a", "b"),), epochs=1, seeds=2))
    try:
        with pytest.raises(ConfigError, match="edit only \\[model\\] and \\[train\\]"):
            reproduce_ranking("test-data-edit", out=str(tmp_path))
    finally:
        REPRODUCTIONS.unregister("test-data-edit")
    with pytest.raises(ValueError, match="not a contender"):
        Ranking(paper="p", claim="c", config=DIGITS, contenders={"a": {}},
                pairs=(("a", "b"),), epochs=1)
