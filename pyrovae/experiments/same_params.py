"""Gradient variance of every objective of a grid, at the same parameters.

compare.csv's gradient columns measure each run's own objective at its own final parameters,
which mixes two effects: the estimator, and where training ended. This table holds the second
fixed: for the first seed of each combination, the trained parameters stay as they are and
every objective that occurs in the grid (each distinct ``(elbo, num_particles, objective)``) draws the
gradient ``grad_draws`` times on the same fixed minibatch with the same seed
(:func:`pyrovae.evaluation.gradients.elbo_gradient_variance`). An objective the model does
not admit (``meanfield`` with a VampPrior) is left out. Written to OUT/gradients.csv.
"""

from __future__ import annotations

from dataclasses import replace

from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.gradients import elbo_gradient_variance, estimator, fixed_minibatch
from pyrovae.runtime.files import read_csv
from pyrovae.runtime.interface import data_view
from pyrovae.objectives import objective_name
from pyrovae.runs import load

#: settings a stored row must share to be reused on resume
_KEPT = ("grad_draws", "grad_batch", "eval_seed")


def objectives(runs) -> list[tuple[str, int, object]]:
    """The distinct (elbo, num_particles, [model.objective]) of the planned runs, in grid
    order."""
    seen = {}
    for spec in runs:
        m = spec.config.model
        objective = getattr(m, "objective", None)
        seen.setdefault(repr((m.elbo, m.num_particles, objective)),
                        (m.elbo, m.num_particles, objective))
    return list(seen.values())


def same_parameter_gradients(out, runs, rows: list[dict], settings, data_for, resume: bool,
                             log) -> list[dict]:
    """Rows of gradients.csv for the first-seed run of each combination that has a row."""
    path = out / "gradients.csv"
    stored = {}
    if resume and path.is_file():
        wanted = {k: getattr(settings, k) for k in _KEPT}
        stored = {(r["run"], r["objective"]): r for r in read_csv(path)
                  if {k: r.get(k) for k in _KEPT} == wanted}
    finished = {r["run"] for r in rows}
    firsts = {}
    for spec in runs:
        if spec.name in finished:
            firsts.setdefault(spec.combination.label, spec)
    table = []
    for spec in firsts.values():
        run = None
        for elbo, k, objective in objectives(runs):
            try:
                extra = {} if objective is None else {"objective": objective}
                model = replace(spec.config.model, elbo=elbo, num_particles=k, **extra)
            except ConfigError:
                continue  # not an objective of this model
            label = objective_name(model)
            if (spec.name, label) in stored:
                table.append(stored[(spec.name, label)])
                continue
            if run is None:
                log(f"gradient variance of every objective at the parameters of {spec.name}")
                run = load(out / spec.name, device=spec.config.train.device)
                data = data_view(run.vae, data_for(spec.config))
                size = settings.grad_batch or spec.config.train.batch_size
                xb = fixed_minibatch(data, size, settings.eval_seed).to(spec.config.train.device)
            g = elbo_gradient_variance(run.vae, xb, estimator(model, module=run.vae),
                                       draws=settings.grad_draws, seed=settings.eval_seed)
            row = {"run": spec.name, "combination": spec.combination.label, "objective": label,
                   "own": label == objective_name(spec.config.model),
                   "var_total": g["var_total"], "var_mean": g["var_mean"],
                   "mean_sqnorm": g["mean_sqnorm"], "snr": g["snr"]}
            for group in ("encoder", "decoder"):  # (None without such submodules)
                row[f"var_total_{group}"] = g["groups"].get(group, {}).get("var_total")
                row[f"snr_{group}"] = g["groups"].get(group, {}).get("snr")
            row.update({k2: getattr(settings, k2) for k2 in _KEPT})
            table.append(row)
    return table


def markdown_same_params(table: list[dict]) -> str:
    """One line per (trained run, objective): variance and SNRs at those parameters."""
    head = ["parameters of", "objective", "grad var (trace)", "grad SNR", "var encoder",
            "SNR encoder", "var decoder", "SNR decoder"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        own = " (own)" if str(r["own"]) in ("True", "1") else ""
        cells = [r["combination"], f"{r['objective']}{own}"] + [
            "n/a" if r[k] in (None, "") else f"{float(r[k]):.3g}"
            for k in ("var_total", "snr", "var_total_encoder", "snr_encoder",
                      "var_total_decoder", "snr_decoder")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
