"""Pictures of ``pyrovae evaluate``: the k-hat histogram and the KL of each latent dimension."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrovae.reports.plots import save_figure, subplots


def save_khat_histogram(khat: np.ndarray, path: str | Path) -> None:
    """Histogram of the points' Pareto k-hat with the 0.5 and 0.7 reliability thresholds."""
    finite = khat[np.isfinite(khat)]
    fig, ax = subplots(figsize=(6, 4))
    ax.hist(finite, bins=40, color="tab:blue", alpha=0.8)
    for x, label in ((0.5, "0.5"), (0.7, "0.7: unreliable above")):
        ax.axvline(x, color="tab:red" if x == 0.7 else "tab:orange", ls="--", label=label)
    share = float((finite >= 0.7).sum()) / max(len(khat), 1)
    ax.set_title(f"PSIS k-hat of the importance weights, {len(khat)} points "
                 f"({100 * share:.1f}% > 0.7)", fontsize=10)
    ax.set_xlabel("k-hat")
    ax.set_ylabel("data points")
    ax.legend()
    save_figure(fig, path)


def save_kl_per_dim(kl: np.ndarray | None, activity: np.ndarray, path: str | Path,
                    threshold: float = 0.01) -> None:
    """Bars of each dimension's average KL (or, for priors without a per-dimension KL, its
    activity Var_x E[z_d]), largest first, active units coloured."""
    values = kl if kl is not None else activity
    order = np.argsort(-values)
    active = activity[order] > threshold
    fig, ax = subplots(figsize=(max(6, 0.14 * len(values)), 4))
    ax.bar(np.arange(len(values)), values[order],
           color=np.where(active, "tab:blue", "tab:gray"))
    ax.set_xticks(np.arange(len(values)), [str(d) for d in order],
                  fontsize=6 if len(values) > 20 else 9, rotation=90 if len(values) > 20 else 0)
    if values[order][0] > 0 and values[order][-1] > 0:
        ax.set_yscale("log")  # inactive units sit orders of magnitude below active ones
    ax.set_xlabel("latent dimension (sorted)")
    ax.set_ylabel("KL (nats)" if kl is not None else "Var_x E_q[z_d]")
    ax.set_title(f"{int(active.sum())} of {len(values)} units active "
                 f"(Var_x E_q[z_d] > {threshold}; grey: inactive)", fontsize=10)
    save_figure(fig, path)
