"""compare.png: one panel per metric, one bar per combination (mean over seeds, ± sd), each
seed's value as a dot; the x axis numbers the combinations, named in the legend below. ELBO,
NLL and distortion are squares ± sd on an axis fitted to the values; gradient variance and
SNR panels use a log scale. Rows with disentanglement scores get their own nine panels."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.patches import Patch

from pyrovae.reports.plots import colormap, save_figure, subplots

#: (column of compare.csv, panel title, log scale)
PANELS = (
    ("test_elbo", "test ELBO (nats, higher is better)", False),
    ("test_nll", "test NLL (nats, lower is better)", False),
    ("active_units", "active units", False),
    ("seconds_per_step", "seconds per training step", False),
    ("grad_var_total", "gradient variance (trace of cov.)", True),
    ("grad_snr", "gradient SNR ||E g||² / tr Cov", True),
)

#: the panels of a comparison whose rows carry disentanglement scores (compare
#: --disentanglement): the fit, the KL term's total correlation and the five scores
DISENTANGLEMENT_PANELS = (
    ("test_elbo", "test ELBO (nats, higher is better)", False),
    ("distortion", "distortion -E log p(x|z) (nats)", False),
    ("total_correlation", "total correlation of q(z) (nats)", False),
    ("mig", "MIG", False),
    ("factorvae", "FactorVAE score", False),
    ("dci_disentanglement", "DCI disentanglement", False),
    ("dci_informativeness", "DCI informativeness", False),
    ("sap", "SAP", False),
    ("betavae", "BetaVAE score", False),
)

ZOOMED = ("test_elbo", "test_nll", "distortion")  # drawn as points on an axis fitted to the values


def _value(row: dict, column: str) -> float:
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        return math.nan


def save_compare_plot(rows: list[dict], keys: list[str], path: str | Path) -> None:
    """The panels of :data:`PANELS` for the rows of compare.csv, grouped by ``combination``."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["combination"], []).append(row)
    labels = [" ".join(f"{k}={g[0][k]}" for k in keys) or name for name, g in groups.items()]
    colors = [colormap("tab10")(i % 10) for i in range(len(groups))]
    scored = any(math.isfinite(_value(r, "mig")) for r in rows)
    panels = DISENTANGLEMENT_PANELS if scored else PANELS
    nrows = len(panels) // 3
    width = max(10.0, 0.6 * len(groups) * 3)
    fig, axes = subplots(nrows, 3, figsize=(width, 3.75 * nrows + 0.22 * len(groups)))
    for ax, (column, title, log) in zip(axes.flat, panels):
        for i, group in enumerate(groups.values()):
            values = [v for v in (_value(r, column) for r in group) if math.isfinite(v)]
            if not values or (log and min(values) <= 0):
                continue
            mean = sum(values) / len(values)
            sd = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                  if len(values) > 1 else 0.0)
            if column in ZOOMED:  # a bar from 0 would hide differences of a few nats
                ax.errorbar(i, mean, yerr=sd, fmt="s", color=colors[i], ms=8, capsize=5)
            else:
                ax.bar(i, mean, color=colors[i], alpha=0.55, yerr=sd, capsize=4)
            ax.plot([i] * len(values), values, "k.", ms=5)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(labels)), [str(i + 1) for i in range(len(labels))])
        if log:
            ax.set_yscale("log")
        elif column in ZOOMED:
            finite = [v for r in rows if math.isfinite(v := _value(r, column))]
            if finite:
                lo, hi = min(finite), max(finite)
                pad = max(0.5, 0.15 * (hi - lo))
                ax.set_ylim(lo - pad, hi + pad)
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=c, alpha=0.7) for c in colors]
    fig.legend(handles, [f"{i + 1}: {label}" for i, label in enumerate(labels)],
               loc="lower center", ncol=2 if len(labels) > 4 else 1, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.03 + 0.03 * math.ceil(len(labels) / 2), 1, 1))
    save_figure(fig, path, dpi=110, tight=False)
