"""Train, evaluate and tabulate every run of a grid (``pyrovae compare``).

    OUT/<combination>_seed<S>/   one ordinary run folder per combination and seed
    OUT/compare.csv              one row per finished run, rewritten (atomically) after each
    OUT/compare.md               mean ± sd over seeds per combination
    OUT/compare.png              the same numbers as bars (reports/compare_plots.py)
    OUT/gradients.csv            every objective's gradient variance at the same parameters
                                 (first seed of each combination; same_params.py)
    OUT/compare.json             the command, settings, and skipped or failed combinations

Every combination is validated before anything trains (:func:`grid.expand`). Runs go one after
another on the same data (loaded once per distinct ``[data]`` section) with seeds counting up
from ``train.seed``. For each run: train (``pyrovae.train``), evaluate on the test set
(``evaluation.evaluate_run``: ELBO, importance-sampled NLL, active units, ...), and measure the
variance of its objective's gradient at the final parameters on one fixed training minibatch
(``evaluation.gradients``). A row is written as soon as its run is done, so a later failure
or an interruption loses at most the run in progress; ``resume=True`` keeps the finished rows,
continues a half-trained run from its checkpoint and evaluates a trained one that has no row;
a trained run is evaluated only on the data it was trained on (its recorded fingerprint,
``pyrovae.data.fingerprint``): data that changed since are refused in one line, as resuming
one is. With ``train.tracking = "mlflow"`` (``--set train.tracking=mlflow``) every run is an
MLflow run of the experiment ``train.experiment``, and its row is added to it as
``compare/<column>`` metrics (docs/tracking.md).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pyrovae.config import RunConfig, load_config
from pyrovae.runtime.errors import CheckpointError, ConfigError, PyroVAEError
from pyrovae.runtime.files import atomic_write, read_csv, writable_dir, write_csv, write_json
from pyrovae.runs import load
from pyrovae.training import train
from pyrovae.runs import CHECKPOINT_NAME
from pyrovae.training.guards import TrainingInterrupted
from pyrovae.experiments.grid import Combination, RunSpec, expand
from pyrovae.experiments.same_params import same_parameter_gradients
from pyrovae.experiments.summary import markdown_report

#: keys of ``evaluate_run``'s result copied into each row
EVAL_KEYS = ("test_elbo", "test_elbo_se", "test_nll", "test_nll_se", "active_units", "rate",
             "distortion", "mutual_info", "khat_share_above_0_7", "eval_seconds")
#: copied too when the evaluation has them: the KL term's three parts (one-latent Gaussian
#: VAEs) and, with ``Settings.disentanglement``, the disentanglement scores
OPTIONAL_KEYS = ("index_code_mi", "total_correlation", "dimwise_kl", "mig", "factorvae",
                 "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap",
                 "betavae")
#: what to do when a finished run's data changed since it was trained
FIX = ("restore the data it was trained on, or start the comparison over on these data "
       "(--force, or another --out)")


@dataclass
class Settings:
    """How each run is measured (recorded in every row; a resumed grid must keep them)."""

    nll_samples: int = 1000      # importance samples K per test point (>= 25)
    eval_points: int = 0         # first N test points for the evaluation (0 = all)
    grad_draws: int = 100        # gradient estimates per run for the variance
    grad_batch: int = 0          # fixed minibatch size (0 = the config's batch_size)
    eval_seed: int = 0           # seed of the evaluation and gradient draws
    disentanglement: int = 0     # examples for the disentanglement scores (0 = none)
    dci_model: str = "gbt"       # DCI's classifiers: gbt (disentanglement_lib) or forest

    def __post_init__(self):
        for name, low in (("nll_samples", 25), ("eval_points", 0), ("grad_draws", 2),
                          ("grad_batch", 0), ("eval_seed", 0), ("disentanglement", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{name.replace('_', '-')} = {value!r}: must be an integer "
                                  f">= {low}")
        from pyrovae.evaluation.disentanglement.dci import MODELS

        if self.dci_model not in MODELS:
            raise ConfigError(f"dci-model = {self.dci_model!r}: choose one of "
                              f"{', '.join(MODELS)}")
        if 0 < self.disentanglement < 6:
            raise ConfigError(f"disentanglement = {self.disentanglement}: use at least 6 "
                              f"examples (10,000 is usual), or 0 for none")


@dataclass
class CompareResult:
    """What a comparison produced: rows in grid order, and the combinations left out."""

    out: Path
    rows: list[dict]
    keys: list[str]
    invalid: list[Combination] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    same_params: list[dict] = field(default_factory=list)  # gradients.csv


def plan(base: RunConfig, varies: list[str], seeds: int = 1,
         skip_invalid: bool = False) -> tuple[list[RunSpec], list[Combination]]:
    """The runs of the grid; invalid combinations are an error unless ``skip_invalid``."""
    runs, invalid = expand(base, varies, seeds)
    if invalid and not skip_invalid:
        listed = "; ".join(f"'{c.label}': {c.error}" for c in invalid)
        raise ConfigError(f"{len(invalid)} combination(s) of the grid are invalid: {listed}. "
                          f"Drop those values from --vary, or pass --skip-invalid to train "
                          f"the others and list these in compare.md")
    if not runs:
        raise ConfigError("every combination of the grid is invalid; nothing to train")
    return runs, invalid


def _row_settings(row: dict) -> dict:
    """The settings a row was measured with (a column added since reads as its default)."""
    return {k: row.get(k, f.default) for k, f in Settings.__dataclass_fields__.items()}


def check_out(out: Path, runs: list[RunSpec], settings: Settings, resume: bool,
              force: bool) -> list[dict]:
    """Refuse to mix with earlier work unless ``resume`` or ``force``; returns the rows to keep."""
    if resume and force:
        raise ConfigError("--resume keeps finished runs and --force discards them; pick one")
    csv_path = out / "compare.csv"
    used = [s.name for s in runs if (out / s.name / "config.toml").exists()]
    if not resume:
        if (csv_path.exists() or used) and not force:
            what = "compare.csv" if csv_path.exists() else f"run folder {used[0]}"
            raise CheckpointError(f"'{out}' already holds a comparison ({what}); pass --resume "
                                  f"to continue it, --force to start over, or another --out")
        return []
    rows = read_csv(csv_path) if csv_path.exists() else []
    planned = {s.name: s for s in runs}
    extra = [r["run"] for r in rows if r["run"] not in planned]
    if extra:
        raise ConfigError(f"'{csv_path}' has runs this grid does not plan ({', '.join(extra)});"
                          f" rerun with the same --vary/--seeds (more values or seeds are fine)"
                          f" or use another --out")
    wanted = asdict(settings)
    for row in rows:
        if _row_settings(row) != wanted:
            raise ConfigError(f"run {row['run']} in '{csv_path}' was measured with "
                              f"{_row_settings(row)}, not {wanted}; resume with the same "
                              f"--nll-samples/--eval-points/--grad-* options, or --force")
    for name in used:
        saved = load_config(out / name / "config.toml")
        if saved != planned[name].config:
            raise ConfigError(f"run folder '{out / name}' was trained with another config than "
                              f"this grid plans for it (e.g. --set changed); use the same "
                              f"--set options, another --out, or --force")
    return rows


class _DataCache:
    """One loaded data set per distinct ``[data]`` section, so runs share identical data;
    with its fingerprint (``sha``), computed once."""

    def __init__(self):
        self._loaded, self._sha = {}, {}

    def __call__(self, config: RunConfig):
        from pyrovae.data import load_dataset

        key = repr(config.data)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(config.data)
        return self._loaded[key]

    def sha(self, config: RunConfig) -> str:
        from pyrovae.data.fingerprint import data_fingerprint

        key = repr(config.data)
        if key not in self._sha:
            self._sha[key] = data_fingerprint(self(config))
        return self._sha[key]


def check_kept(spec: RunSpec, run_dir: Path, data_for: _DataCache) -> None:
    """A row kept from an earlier call (``resume``) was measured on the data its run was
    trained on: refuse, in one line, to tabulate it beside runs on data that changed since
    (the fingerprint in the run's metrics.json against the data's now)."""
    from pyrovae.data.fingerprint import check_fingerprint

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return  # no run folder left: nothing to check the row against
    recorded = metrics.get("data_sha256") if isinstance(metrics, dict) else None
    if recorded:
        cfg = spec.config.data
        check_fingerprint(recorded, data_for(spec.config), data_for.sha(spec.config),
                          str(run_dir), f"data.name = '{cfg.name}'", FIX)


def train_or_load(spec: RunSpec, data, run_dir: Path, force: bool, sha: str | None = None):
    """The trained run in ``run_dir``: loaded if finished (and refused in one line when
    ``data``, of fingerprint ``sha``, are not those it was trained on), resumed from its
    checkpoint if stopped, trained from scratch otherwise."""
    if (run_dir / "metrics.json").is_file() and (run_dir / CHECKPOINT_NAME).is_file() \
            and not force:
        from pyrovae.evaluation.evaluate import check_run_data

        run = load(run_dir, device=spec.config.train.device)
        check_run_data(run, data, FIX, sha)
        return run
    if (run_dir / CHECKPOINT_NAME).is_file() and not force:
        return train(spec.config, data, out=run_dir, resume=True)
    return train(spec.config, data, out=run_dir, force=True)


def measure(run, data, spec: RunSpec, settings: Settings, progress: bool,
            sha: str | None = None) -> dict:
    """One row of compare.csv for a trained run (``sha``: the fingerprint of ``data``)."""
    from pyrovae.evaluation import evaluate_run
    from pyrovae.reports import write_evaluation
    from pyrovae.evaluation.gradients import elbo_gradient_variance, estimator, fixed_minibatch
    from pyrovae.runtime.interface import data_view

    row = {"run": spec.name, "combination": spec.combination.label,
           **spec.combination.values, "seed": spec.seed}
    result = evaluate_run(run, data, nll_samples=settings.nll_samples, split="test",
                          max_points=settings.eval_points or None, seed=settings.eval_seed,
                          progress=progress, sha=sha,
                          disentanglement=settings.disentanglement or None,
                          dci_model=settings.dci_model)
    data = data_view(run.vae, data)  # the rows as the model reads them (below)
    row.update({k: result[k] for k in EVAL_KEYS})
    row.update({k: result[k] for k in OPTIONAL_KEYS if result.get(k) is not None})
    write_evaluation(result, run.path)  # eval.json etc., as `pyrovae evaluate` writes them
    m = run.metrics
    row.update(train_elbo=m["train_elbo"], epochs=m["epochs"], steps=m["steps"],
               train_seconds=m["seconds"], seconds_per_step=m["seconds"] / max(m["steps"], 1))
    size = settings.grad_batch or spec.config.train.batch_size
    xb = fixed_minibatch(data, size, seed=settings.eval_seed).to(spec.config.train.device)
    grad = elbo_gradient_variance(run.vae, xb, estimator(spec.config.model, module=run.vae),
                                  draws=settings.grad_draws, seed=settings.eval_seed,
                                  progress=progress)
    row.update(grad_var_mean=grad["var_mean"], grad_var_total=grad["var_total"],
               grad_mean_sqnorm=grad["mean_sqnorm"], grad_snr=grad["snr"])
    for group in ("encoder", "decoder"):  # (None for a model without such submodules)
        row[f"grad_var_total_{group}"] = grad["groups"].get(group, {}).get("var_total")
        row[f"grad_snr_{group}"] = grad["groups"].get(group, {}).get("snr")
    row.update(asdict(settings))
    return row


def track_row(spec: RunSpec, out: Path, row: dict) -> None:
    """With ``train.tracking = "mlflow"``: the cell's row as ``compare/<column>`` metrics of
    its MLflow run, in the experiment ``train.experiment`` (docs/tracking.md)."""
    if spec.config.train.tracking == "mlflow":
        from pyrovae.integrations.mlflow_tracking import log_compare_row

        log_compare_row(spec.config, out / spec.name, row, out)


def write_outputs(result: CompareResult, settings: Settings, command: str) -> None:
    """compare.csv, compare.md, compare.json and compare.png from the rows so far."""
    from pyrovae.reports.compare_plots import save_compare_plot

    out = result.out
    write_csv(out / "compare.csv", result.rows)
    if result.same_params:
        write_csv(out / "gradients.csv", result.same_params)
    report = markdown_report(result.rows, result.keys, command=command, invalid=result.invalid,
                             failed=result.failed, settings=asdict(settings),
                             same_params=result.same_params)
    atomic_write(out / "compare.md", report)
    write_json(out / "compare.json", {
        "command": command, "settings": asdict(settings), "keys": result.keys,
        "runs": [r["run"] for r in result.rows],
        "invalid": [{"combination": c.label, "error": c.error} for c in result.invalid],
        "failed": [{"run": n, "error": e} for n, e in result.failed]})
    if result.rows:
        save_compare_plot(result.rows, result.keys, out / "compare.png")


def _log(message: str) -> None:
    print(f"pyrovae compare: {message}", file=sys.stderr, flush=True)


def compare(base: RunConfig, varies: list[str], out: str | Path, seeds: int = 1,
            settings: Settings | None = None, *, resume: bool = False, force: bool = False,
            skip_invalid: bool = False, keep_going: bool = False, command: str = "",
            log=_log) -> CompareResult:
    """Run the grid of ``varies`` (``--vary`` strings) over ``base`` (``--set`` applied) with
    ``seeds`` seeds each, writing into ``out``; see the module docstring."""
    settings = settings or Settings()
    out = Path(out)
    runs, invalid = plan(base, varies, seeds, skip_invalid)
    tracked = [s.config.train for s in runs if s.config.train.tracking != "none"]
    if tracked:  # a missing package is refused before any training
        from pyrovae.integrations.tracking import check_tracking

        for train_config in tracked:
            check_tracking(train_config)
    for combo in invalid:
        log(f"skipping invalid combination '{combo.label}': {combo.error}")
    data_for = _DataCache()
    if settings.disentanglement:  # data without factors: refused before anything trains
        from pyrovae.evaluation.evaluate import check_factors

        for spec in runs:
            check_factors(data_for(spec.config), "--disentanglement: the scores",
                          " (drop --disentanglement or compare on such data)")
    done = {row["run"]: row for row in check_out(out, runs, settings, resume, force)}
    writable_dir(out, "comparison folder", "choose another --out")
    keys = [o.key for o in runs[0].combination.options]
    result = CompareResult(out, [], keys, invalid)
    progress = base.train.progress
    for i, spec in enumerate(runs, 1):
        if spec.name in done:
            check_kept(spec, out / spec.name, data_for)
            result.rows.append(done[spec.name])
            continue
        log(f"[{i}/{len(runs)}] {spec.combination.label} seed {spec.seed} -> {out / spec.name}")
        try:
            data = data_for(spec.config)
            run = train_or_load(spec, data, out / spec.name, force, data_for.sha(spec.config))
            row = measure(run, data, spec, settings, progress, data_for.sha(spec.config))
            track_row(spec, out, row)
            result.rows.append(row)
        except TrainingInterrupted as err:
            raise TrainingInterrupted(
                f"compare interrupted in run {spec.name} (its checkpoint is saved); "
                f"{len(result.rows)} finished rows are in {out / 'compare.csv'}; rerun the "
                f"same command with --resume to continue", err.signum) from None
        except PyroVAEError as err:
            if not keep_going:
                write_outputs(result, settings, command)
                raise PyroVAEError(
                    f"run {spec.name} failed: {err} -- the {len(result.rows)} finished rows are "
                    f"in {out / 'compare.csv'}; fix the cause and rerun with --resume, or pass "
                    f"--keep-going to skip failing runs") from err
            log(f"run {spec.name} failed, continuing (--keep-going): {err}")
            result.failed.append((spec.name, " ".join(str(err).splitlines())))
            continue
        write_outputs(result, settings, command)
    result.same_params = same_parameter_gradients(out, runs, result.rows, settings, data_for,
                                                  resume, log)
    write_outputs(result, settings, command)
    return result
