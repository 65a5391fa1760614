"""``pyrovae reproduce NAME`` for a ranking (rankings.py): train every contender with seeds
0..n-1, evaluate each, and write one row per claimed pair, resumably.

    OUT/NAME/CONTENDER-sSEED/   a run folder per contender and seed (resumed as runner.py's)
    OUT/NAME/ranking.json       the rows: per pair the seeds, each contender's test NLL per
                                seed, mean +- SE, the paired difference with its 95 % t
                                interval, the verdict, training seconds and their ratio, the
                                exact command and the data
    OUT/rankings.md|json|csv    every ranking row written to OUT so far

A second call with the same arguments reads what is done (finished runs and evaluations are
not redone, an interrupted run resumes from its checkpoint), as the single-number runner does.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyrovae.config import RunConfig
from pyrovae.config.files import apply_overrides
from pyrovae.data import load_dataset
from pyrovae.data.fingerprint import data_fingerprint
from pyrovae.reports.numbers import format_estimate
from pyrovae.reproduce.rankings import (TIME_TOLERANCE, Ranking, mean_se, paired_interval,
                                        verdict)
from pyrovae.reproduce.runner import (_evaluated, _trained, command_line, other_data,
                                      recipe)
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.files import atomic_write, write_csv, write_json

COLUMNS = ("name", "ranking", "paper", "claim", "better", "other", "seeds", "epochs",
           "better_nll", "other_nll", "better_mean", "better_se", "other_mean", "other_se",
           "diff_mean", "diff_se", "diff_lo", "diff_hi", "verdict", "better_seconds",
           "other_seconds", "time_ratio", "equal_time", "paper_better", "paper_other",
           "nll_samples", "points", "command", "data", "comparable", "other_data",
           "data_sha256")


def ranking(name: str) -> Ranking:
    """The registered ranking ``name``; one line when it is none or not a ranking."""
    rec = recipe(name)
    if not isinstance(rec, Ranking):
        raise ConfigError(f"{name!r} is a single-number recipe, not a ranking; run it "
                          f"without --seeds (pyrovae reproduce {name})")
    return rec


def contender_config(rank: Ranking, contender: str, seed: int, epochs: int | None = None,
                     overrides: list[str] | tuple = ()) -> RunConfig:
    """Contender's run config with seed ``seed``, ``epochs`` and the ``--set`` overrides."""
    config = RunConfig.from_dict(rank.contender_config(contender))
    edits = ([f"train.epochs={epochs}"] if epochs is not None else []) + list(overrides)
    config = apply_overrides(config, edits) if edits else config
    config.train.seed = seed
    return config


def pair_row(rank: Ranking, better: str, other: str, results: dict) -> dict:
    """The statistics of one pair from ``results[contender]``: lists of per-seed dicts with
    ``test_nll`` and ``train_seconds`` in seed order (module docstring)."""
    x = [r["test_nll"] for r in results[better]]
    y = [r["test_nll"] for r in results[other]]
    (bm, bse), (om, ose) = mean_se(x), mean_se(y)
    stats = paired_interval(x, y)
    tb = sum(r["train_seconds"] for r in results[better])
    to = sum(r["train_seconds"] for r in results[other])
    ratio = tb / to if to > 0 else None
    equal = None if ratio is None or tb <= 0 else max(ratio, 1 / ratio) <= TIME_TOLERANCE
    return {"better": better, "other": other, "better_nll": x, "other_nll": y,
            "better_mean": bm, "better_se": bse, "other_mean": om, "other_se": ose, **stats,
            "verdict": verdict(stats["diff_lo"], stats["diff_hi"], "lower"),
            "better_seconds": tb, "other_seconds": to, "time_ratio": ratio,
            "equal_time": equal, "paper_better": rank.paper_values.get(better),
            "paper_other": rank.paper_values.get(other)}


def reproduce_ranking(name: str, out: str = "runs/reproduce", epochs: int | None = None,
                      overrides: list[str] | tuple = (), nll_samples: int | None = None,
                      points: int | None = None, seeds: int | None = None,
                      progress: bool = True) -> list[dict]:
    """Train, evaluate and tabulate the ranking ``name``; returns its rows (module doc)."""
    rank = ranking(name)
    n = rank.seeds if seeds is None else seeds
    if n < 2:
        raise ConfigError(f"a ranking needs --seeds >= 2 for a standard error, got {n}")
    if any(o.split("=", 1)[0].strip() in ("seed", "train.seed") for o in overrides):
        raise ConfigError("a ranking trains seeds 0..N-1 itself; use --seeds N, not "
                          "--set train.seed")
    nll = nll_samples or rank.nll_samples
    pts = points if points is not None else rank.points
    configs = {(c, s): contender_config(rank, c, s, epochs, overrides)
               for c in rank.used() for s in range(n)}  # every config checked before training
    first = next(iter(configs.values()))
    if any(c.data != first.data for c in configs.values()):  # one data set, loaded once
        raise ConfigError(f"the contenders of {name!r} edit [data]; a ranking compares "
                          f"estimators on one data set, so edit only [model] and [train]")
    differs = other_data(RunConfig.from_dict(rank.run_config()).data, first.data)
    data = load_dataset(first.data)
    sha = data_fingerprint(data)
    results: dict[str, list[dict]] = {c: [] for c in rank.used()}
    for (contender, seed), config in configs.items():
        config.train.progress = progress and config.train.progress
        run = _trained(config, data, Path(out) / name / f"{contender}-s{seed}",
                       config.train.progress, sha)
        result = _evaluated(run, data, nll, pts, config.train.progress, sha)
        results[contender].append({"seed": seed, "test_nll": result["test_nll"],
                                   "train_seconds": sum(float(h.get("seconds") or 0.0)
                                                        for h in run.history)})
    command = command_line(name, out, epochs, overrides,
                           nll if nll != rank.nll_samples else None,
                           pts if pts != rank.points else None,
                           n if n != rank.seeds else None)
    rows = [{"name": f"{name}: {b} vs {o}", "ranking": name, "paper": rank.paper,
             "claim": rank.claim, "seeds": list(range(n)), "epochs": first.train.epochs,
             **pair_row(rank, b, o, results), "nll_samples": nll, "points": pts,
             "command": command, "data": first.data.name, "comparable": differs is None,
             "other_data": differs, "data_sha256": sha} for b, o in rank.pairs]
    write_json(Path(out) / name / "ranking.json", rows)
    write_rankings(Path(out))
    return rows


def read_rankings(out: Path) -> list[dict]:
    """Every ranking row written under ``out`` (OUT/NAME/ranking.json), by ranking."""
    rows = []
    for path in sorted(out.glob("*/ranking.json")):
        try:
            rows += json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being rewritten by a run in progress: the next table has it
    return rows


def _time(row: dict) -> str:
    ratio = row.get("time_ratio")
    if ratio is None:
        return "—"
    minutes = (row["better_seconds"] + row["other_seconds"]) / 60
    flag = "" if row.get("equal_time") else f" (unequal: beyond {TIME_TOLERANCE:g}x)"
    return f"{ratio:.2f}{flag}, {minutes:.1f} min"


def markdown(rows: list[dict]) -> str:
    """The ranking rows as a Markdown table, then each row's command."""
    heads = ("ranking", "paper", "claimed better", "other", "seeds", "epochs",
             "claimed better NLL", "other NLL", "difference (95 % interval)", "verdict",
             "time ratio, training")
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        cells = [r["ranking"], r["paper"], r["better"], r["other"], str(len(r["seeds"])),
                 str(r["epochs"]),
                 format_estimate(r["better_mean"], r["better_se"], pm="±", fmt=".2f"),
                 format_estimate(r["other_mean"], r["other_se"], pm="±", fmt=".2f"),
                 f"{r['diff_mean']:+.2f} [{r['diff_lo']:+.2f}, {r['diff_hi']:+.2f}]",
                 r["verdict"] + ("" if r.get("comparable", True)
                                 else " (other data: not comparable)"), _time(r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Commands:", ""]
    lines += [f"- `{r['ranking']}`: `{r['command']}`"
              for i, r in enumerate(rows) if i == 0 or rows[i - 1]["ranking"] != r["ranking"]]
    return "\n".join(lines) + "\n"


def write_rankings(out: Path) -> list[Path]:
    """Write OUT/rankings.md, rankings.json, rankings.csv from the rows under OUT."""
    rows = read_rankings(out)
    atomic_write(out / "rankings.md", markdown(rows))
    write_json(out / "rankings.json", rows)
    write_csv(out / "rankings.csv", [{k: (";".join(map(str, r[k])) if isinstance(r.get(k), list)
                                          else r.get(k)) for k in COLUMNS} for r in rows])
    return [out / "rankings.md", out / "rankings.json", out / "rankings.csv"]
