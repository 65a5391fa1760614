"""Pictures of the checks on the importance-sampled NLL (evaluation/trust.py): AIS against IS
per point (ais.png) and the approximation and amortization gaps per point (gaps.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrovae.reports.plots import save_figure, subplots


def save_ais_vs_is(ais: np.ndarray, is_: np.ndarray, path: str | Path,
                   result: dict | None = None) -> None:
    """Histogram of AIS log p(x) - IS log p(x) over the points (> 0: AIS found more mass)."""
    d = ais - is_
    fig, ax = subplots(figsize=(6, 4))
    ax.hist(d[np.isfinite(d)], bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="k", lw=1)
    ax.axvline(float(np.nanmean(d)), color="tab:red", ls="--",
               label=f"mean {np.nanmean(d):+.3f} nats")
    settings = (result or {}).get("ais") or {}
    what = (f"AIS (T={settings.get('steps')}, C={settings.get('chains')}, "
            f"init={settings.get('init')})" if settings else "AIS")
    ax.set_title(f"{what} minus IS (K={(result or {}).get('nll_samples', '?')}), "
                 f"{len(d)} points", fontsize=10)
    ax.set_xlabel("log p(x): AIS - IS (nats)")
    ax.set_ylabel("data points")
    ax.legend()
    save_figure(fig, path)


def save_gaps(approximation: np.ndarray, amortization: np.ndarray, path: str | Path,
              title: str = "") -> None:
    """Stacked bars per point, sorted by the total inference gap log p(x) - amortized ELBO:
    the approximation gap (bottom) and the amortization gap (top)."""
    order = np.argsort(approximation + amortization)
    idx = np.arange(len(order))
    fig, ax = subplots(figsize=(max(6, min(14, 0.06 * len(order))), 4))
    ax.bar(idx, approximation[order], width=1.0, color="tab:blue",
           label=f"approximation gap (mean {approximation.mean():.3f})")
    ax.bar(idx, amortization[order], width=1.0, bottom=approximation[order],
           color="tab:orange", label=f"amortization gap (mean {amortization.mean():.3f})")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("data points (sorted by the total gap)")
    ax.set_ylabel("nats")
    ax.set_title(title or "log p(x) - amortized ELBO = approximation + amortization gap",
                 fontsize=10)
    ax.legend()
    save_figure(fig, path)
