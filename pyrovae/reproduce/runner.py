"""``pyrovae reproduce NAME``: train a recipe's config, evaluate it and write the row
ours-against-the-paper, resumably.

    OUT/NAME/            the run folder (config.toml, checkpoint.pt, history.csv, eval.json, ...)
    OUT/NAME/row.json    the row: paper, paper_value, ours (+- SE), goal, met, epochs, wall
                         time, seed, the exact command, and the data it is on (data,
                         data_sha256, comparable, other_data)
    OUT/table.md|json|csv, OUT/curves.png   every row written to OUT so far (table.py)

A second call with the same arguments reads what is done: a finished run is not retrained, an
interrupted one is resumed from its checkpoint (bit for bit the same run), an evaluation
with the same settings on the same checkpoint and data is read from eval.json, not redone;
a finished run whose data changed since it was trained is refused in one line.

A row is compared with the paper only on the recipe's own data: ``--set`` of any data key
(``data.name = "digits"``, ``data.train_size``, ``data.binarize``, ...) still trains and
evaluates, but the row says ``comparable: false``, ``other_data`` names the keys, and ``met``
is None ("other data: not comparable"), never a goal met against a number from other data.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyrovae.config import DataConfig, RunConfig
from pyrovae.config.files import apply_overrides
from pyrovae.data import load_dataset
from pyrovae.data.fingerprint import data_fingerprint
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation import evaluate_run
from pyrovae.evaluation.evaluate import check_run_data
from pyrovae.runtime.files import atomic_write
from pyrovae.reports import write_evaluation
from pyrovae.runs import load
from pyrovae.training import train
from pyrovae.reproduce.recipes import METRICS, REPRODUCTIONS, Recipe
from pyrovae.reproduce.table import write_table


def recipe(name: str) -> Recipe:
    """The registered recipe ``name``; one line naming the choices when there is none."""
    if name not in REPRODUCTIONS:
        raise ConfigError(f"no reproduction named {name!r}; choose one of "
                          f"{', '.join(REPRODUCTIONS)} (pyrovae reproduce --list)")
    return REPRODUCTIONS.get(name)


def recipe_config(name: str, epochs: int | None = None,
                  overrides: list[str] | tuple = ()) -> RunConfig:
    """The recipe's run config with ``epochs`` and ``--set``-style ``overrides`` applied."""
    config = RunConfig.from_dict(recipe(name).run_config())
    edits = ([f"train.epochs={epochs}"] if epochs is not None else []) + list(overrides)
    return apply_overrides(config, edits) if edits else config


def command_line(name: str, out: str, epochs, overrides, nll_samples, points,
                 seeds=None) -> str:
    """The ``pyrovae reproduce`` command that (re)produces this row (``seeds``: a ranking's
    ``--seeds``, when not its default)."""
    parts = ["pyrovae", "reproduce", name]
    if out != "runs/reproduce":
        parts += ["--out", out]
    for flag, value in (("--epochs", epochs), ("--seeds", seeds)):
        if value is not None:
            parts += [flag, str(value)]
    parts += [f"--set {o}" for o in overrides]
    if nll_samples is not None:
        parts += ["--nll-samples", str(nll_samples)]
    if points is not None:
        parts += ["--points", str(points)]
    return " ".join(parts)


#: what to do when a finished reproduction's data changed since it was trained
FIX = ("restore the data it was trained on, or remove the run folder to train it again on "
       "these data")


def other_data(recipe_data: DataConfig, data: DataConfig) -> str | None:
    """Which data keys differ from the recipe's, as ``data.name = 'digits', not the recipe's
    'mnist'`` (joined by "; "), or None when the row is on the recipe's own data."""
    changed = [f"data.{key} = {getattr(data, key)!r}, not the recipe's "
               f"{getattr(recipe_data, key)!r}"
               for key in DataConfig.__dataclass_fields__
               if getattr(data, key) != getattr(recipe_data, key)]
    return "; ".join(changed) or None


def _computes(config: RunConfig) -> dict:
    """The config without the keys that change how a run shows, not what it computes."""
    d = config.to_dict()
    d["train"].pop("progress", None)
    return d


def _trained(config: RunConfig, data, run_dir: Path, progress: bool, sha: str | None = None):
    """The finished run in ``run_dir``: read (refused in one line when ``data``, of
    fingerprint ``sha``, are not those it was trained on), resumed from its checkpoint (the
    same config, or more epochs; ``train`` checks the data), or trained afresh (a folder
    without a checkpoint is overwritten)."""
    config.train.progress = progress
    if (run_dir / "checkpoint.pt").is_file():
        done = load(run_dir)
        if len(done.history) >= config.train.epochs and _computes(done.config) == _computes(
                config):
            check_run_data(done, data, FIX, sha)  # the data it was trained on, or one line
            return done
        return train(config, data, out=run_dir, resume=True)
    return train(config, data, out=run_dir, force=run_dir.exists())


def _evaluated(run, data, nll_samples: int, points, progress: bool,
               sha: str | None = None) -> dict:
    """``test_nll`` of the run (IS with ``nll_samples`` draws on ``points`` test images),
    read from eval.json when it holds the same settings for the same number of steps (and,
    when it names them, the same data: fingerprint ``sha``)."""
    saved = run.path / "eval.json"
    steps = run.history[-1]["step"] if run.history else 0
    if saved.is_file():
        result = json.loads(saved.read_text())
        if (result.get("nll_samples") == nll_samples and result.get("max_points") == points
                and result.get("trained_steps") == steps
                and result.get("data_sha256", sha) == sha):
            return result
    result = evaluate_run(run, data, nll_samples=nll_samples, split="test", max_points=points,
                          progress=progress, sha=sha)
    result["max_points"], result["trained_steps"] = points, steps
    write_evaluation(result, run.path)
    return result


def reproduce(name: str, out: str = "runs/reproduce", epochs: int | None = None,
              overrides: list[str] | tuple = (), nll_samples: int | None = None,
              points: int | None = None, progress: bool = True) -> dict:
    """Train, evaluate and tabulate the recipe ``name``; returns its row (see module doc)."""
    rec = recipe(name)
    if rec.metric == "ranking":
        raise ConfigError(f"{name!r} is a ranking; run it with pyrovae reproduce {name} "
                          f"(reproduce_ranking in Python)")
    config = recipe_config(name, epochs, overrides)
    progress = progress and config.train.progress  # --set progress=false: as --quiet
    nll_samples = nll_samples or rec.nll_samples
    points = points if points is not None else rec.points
    if rec.metric != "test_nll":  # an accuracy row is scored on every test image, no IS
        nll_samples, points = rec.nll_samples, rec.points
    run_dir = Path(out) / name
    differs = other_data(RunConfig.from_dict(rec.run_config()).data, config.data)
    data = load_dataset(config.data)
    sha = data_fingerprint(data)
    run = _trained(config, data, run_dir, progress, sha)
    if rec.metric == "test_nll":
        result = _evaluated(run, data, nll_samples, points, progress, sha)
        ours, se, eval_seconds = result["test_nll"], result["test_nll_se"], result["eval_seconds"]
    else:
        ours, se, eval_seconds = run.metrics[rec.metric], None, 0.0
    better = METRICS[rec.metric]
    met = None if rec.goal is None or differs else (ours <= rec.goal if better == "lower"
                                                    else ours >= rec.goal)
    row = {"name": name, "paper": rec.paper, "table": rec.table, "metric": rec.metric,
           "paper_value": rec.paper_value, "ours": ours, "ours_se": se, "goal": rec.goal,
           "met": met, "budget": rec.budget, "epochs": config.train.epochs,
           "train_seconds": sum(float(h.get("seconds") or 0.0) for h in run.history),
           "eval_seconds": eval_seconds, "seed": config.train.seed,
           "nll_samples": nll_samples if rec.metric == "test_nll" else None,
           "points": points if rec.metric == "test_nll" else None, "notes": rec.notes,
           "command": command_line(name, out, epochs, overrides,
                                   nll_samples if nll_samples != rec.nll_samples else None,
                                   points if points != rec.points else None),
           "data": config.data.name, "data_sha256": sha, "comparable": differs is None,
           "other_data": differs}
    atomic_write(run_dir / "row.json", json.dumps(row, indent=2) + "\n")
    write_table(Path(out))
    return row
