"""Summaries of a comparison: per-combination mean and spread over seeds, as a markdown table.

For a metric with values v_1..v_n over the n seeds of one combination, the table shows
``mean ± sd`` with the sample standard deviation sd = sqrt(sum (v_i - mean)^2 / (n - 1))
(just the mean when n = 1).
"""

from __future__ import annotations

import math
import statistics

#: (column of compare.csv, heading, format) of the markdown table, in order
METRICS = (
    ("test_elbo", "test ELBO", ".2f"),
    ("test_nll", "test NLL", ".2f"),
    ("active_units", "active units", ".1f"),
    ("rate", "KL (rate)", ".2f"),
    ("seconds_per_step", "s / step", ".4f"),
    ("grad_var_total", "grad var (trace)", ".3g"),
    ("grad_var_mean", "grad var / param", ".3g"),
    ("grad_snr", "grad SNR", ".3g"),
    ("grad_snr_encoder", "SNR encoder", ".3g"),
    ("grad_snr_decoder", "SNR decoder", ".3g"),
)

#: added when the rows carry disentanglement scores (``compare --disentanglement``): the
#: reconstruction term, the KL term's three parts, and the five scores
DISENTANGLEMENT = (
    ("distortion", "distortion", ".2f"),
    ("index_code_mi", "index-code MI", ".2f"),
    ("total_correlation", "TC", ".2f"),
    ("dimwise_kl", "dim-wise KL", ".2f"),
    ("mig", "MIG", ".3f"),
    ("factorvae", "FactorVAE", ".3f"),
    ("dci_disentanglement", "DCI D", ".3f"),
    ("dci_completeness", "DCI C", ".3f"),
    ("dci_informativeness", "DCI I", ".3f"),
    ("sap", "SAP", ".3f"),
    ("betavae", "BetaVAE", ".3f"),
)


def metrics_for(rows: list[dict]) -> tuple:
    """The table's metrics: :data:`METRICS`, plus :data:`DISENTANGLEMENT` when a row has MIG."""
    scored = any(not math.isnan(_number(r.get("mig"))) for r in rows)
    return METRICS + DISENTANGLEMENT if scored else METRICS


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def group_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by their ``combination`` label, in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["combination"], []).append(row)
    return groups


def mean_sd(values: list[float]) -> tuple[float, float]:
    """(mean, sample sd); sd is nan for one value."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), sd


def aggregate(rows: list[dict], keys: list[str]) -> list[dict]:
    """One dict per combination: its ``keys`` values, ``n`` seeds, and (mean, sd) per metric."""
    out = []
    for label, group in group_rows(rows).items():
        entry = {"combination": label, "n": len(group), **{k: group[0][k] for k in keys}}
        for column, _, _ in metrics_for(rows):
            entry[column] = mean_sd([_number(r.get(column)) for r in group])
        out.append(entry)
    return out


def _cell(stat: tuple[float, float], fmt: str) -> str:
    mean, sd = stat
    if math.isnan(mean):
        return "—"
    return f"{mean:{fmt}}" if math.isnan(sd) else f"{mean:{fmt}} ± {sd:{fmt}}"


def markdown_table(rows: list[dict], keys: list[str]) -> str:
    """The per-combination table: vary keys, seeds, then each metric as mean ± sd."""
    metrics = metrics_for(rows)
    head = [*keys, "seeds", *(h for _, h, _ in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in aggregate(rows, keys):
        cells = [str(entry[k]) for k in keys] + [str(entry["n"])]
        cells += [_cell(entry[c], fmt) for c, _, fmt in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(rows: list[dict], keys: list[str], *, command: str, invalid: list,
                    failed: list[tuple[str, str]], settings: dict,
                    same_params: list[dict] | None = None) -> str:
    """compare.md: the command, the table, the settings, and skipped or failed combinations."""
    parts = ["# pyrovae compare", "", f"`{command}`", "", markdown_table(rows, keys), ""]
    parts.append("Mean ± sd over seeds. ELBO and NLL in nats per test point (NLL by importance "
                 "sampling); s / step is training time; gradient variance and SNR of the run's "
                 "own objective at its final parameters on one fixed minibatch "
                 "(see docs/compare.md).")
    if same_params:
        from pyrovae.experiments.same_params import markdown_same_params

        parts += ["", "## Gradient variance of each objective at the same parameters", "",
                  "Parameters of the first seed of each combination, held fixed; every "
                  "objective of the grid draws its gradient on the same fixed minibatch "
                  "(gradients.csv).", "", markdown_same_params(same_params)]
    parts += ["", "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items())]
    if invalid:
        parts += ["", "Skipped (invalid) combinations:", ""]
        parts += [f"- `{c.label}`: {c.error}" for c in invalid]
    if failed:
        parts += ["", "Failed runs (rerun with --resume to retry):", ""]
        parts += [f"- `{name}`: {error}" for name, error in failed]
    return "\n".join(parts) + "\n"
