"""A table and a figure of the inference gaps of several ``pyrovae evaluate --gaps`` results.

    python -m examples.gaps_study runs/ais-study/gaps-2ep:"2 epochs" \
        runs/ais-study/gaps-main:"10 epochs" --figure docs/figures/gaps_mnist.png

Each argument is an evaluation folder (holding eval.json), optionally with ``:label``. Prints
a Markdown table (log p(x), amortized and local ELBO, both gaps with their standard errors
across points, the estimator of log p(x), the local family) and draws stacked bars: the
approximation gap below, the amortization gap above, one bar per folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pyrovae.reports.numbers import format_estimate
from pyrovae.reports.plots import plt, save_figure


def read(spec: str) -> dict:
    folder, _, label = spec.partition(":")
    r = json.loads((Path(folder) / "eval.json").read_text())
    return {"label": label or Path(folder).name, **r}


def table(rows: list[dict]) -> str:
    lines = ["| run | log p(x) | amortized ELBO | local ELBO | approximation gap | "
             "amortization gap | log p(x) by | local family |", "|---" * 8 + "|"]
    for r in rows:
        g = r["gaps"]
        est = (f"AIS ({r['ais']['init']}, T={r['ais']['steps']})"
               if g["log_px_estimator"] == "ais" else f"IS (K={r['nll_samples']})")
        lines.append(f"| {r['label']} | {r['gap_log_px']:.2f} | {r['gap_amortized_elbo']:.2f} | "
                     f"{r['gap_local_elbo']:.2f} | "
                     f"{format_estimate(r['approximation_gap'], r['approximation_gap_se'])} | "
                     f"{format_estimate(r['amortization_gap'], r['amortization_gap_se'])} | "
                     f"{est} | {g['family']} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    idx = np.arange(len(rows))
    approx = np.array([r["approximation_gap"] for r in rows])
    amort = np.array([r["amortization_gap"] for r in rows])
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4.2))
    ax.bar(idx, approx, yerr=[r["approximation_gap_se"] for r in rows], color="tab:blue",
           capsize=3, label="approximation gap: log p(x) - local ELBO")
    ax.bar(idx, amort, bottom=approx, yerr=[r["amortization_gap_se"] for r in rows],
           color="tab:orange", capsize=3, label="amortization gap: local - amortized ELBO")
    ax.set_xticks(idx, [r["label"] for r in rows], fontsize=8)
    ax.set_ylabel("nats (mean over points, +- se)")
    ax.set_title(f"inference gaps on {rows[0]['gaps']['points']} test points", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="FOLDER[:label] of an evaluation with --gaps")
    p.add_argument("--figure", help="PNG to write")
    args = p.parse_args(argv)
    rows = [read(s) for s in args.folders]
    print(table(rows))
    if args.figure:
        plot(rows, Path(args.figure))


if __name__ == "__main__":
    main()
