"""Pictures for the applications of a trained VAE: labelled image grids, latent scatter plots
and score histograms (matplotlib, written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid

from pyrovae.reports.plots import _as_images, colormap, save_figure, subplots


def save_labelled_grid(x: torch.Tensor, shape, ncol: int, row_labels: list[str],
                       path: str | Path, title: str = "", col_labels: list[str] | None = None
                       ) -> None:
    """Rows of x [R * ncol, D] (row-major) as an image grid, each row named on the left."""
    images = _as_images(x, shape).clamp(0, 1)
    grid = make_grid(images, nrow=ncol, padding=1, pad_value=0.5)  # [C, H', W']
    picture = grid.permute(1, 2, 0).numpy()
    if picture.shape[-1] == 1 or images.shape[1] == 1:
        picture = picture[..., 0]
    rows = len(row_labels)
    height, width = picture.shape[:2]
    scale = 10.0 / max(width, 1)
    fig, ax = subplots(figsize=(max(4.0, width * scale + 1.8),
                                    max(1.5, height * scale + (0.6 if title else 0.2))))
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cell_h, cell_w = height / rows, width / ncol
    ax.set_yticks([cell_h * (i + 0.5) for i in range(rows)], row_labels, fontsize=8)
    if col_labels:
        ax.set_xticks([cell_w * (j + 0.5) for j in range(ncol)], col_labels, fontsize=7)
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def save_latent_scatter(xy: np.ndarray, labels: np.ndarray | None, path: str | Path,
                        title: str, axis_names: tuple[str, str]) -> None:
    """Points xy [N, 2], coloured by integer label (one legend entry per label) if given."""
    fig, ax = subplots(figsize=(6.5, 5.5))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5)
    else:
        cmap = colormap("tab10" if len(np.unique(labels)) <= 10 else "tab20")
        for i, label in enumerate(np.unique(labels)):
            pts = xy[labels == label]
            ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.6, color=cmap(i % cmap.N),
                       label=str(label))
        ax.legend(markerscale=4, fontsize=8, loc="best", title="label")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def save_score_histogram(scores: np.ndarray, anomalous: np.ndarray | None, path: str | Path,
                         title: str, xlabel: str) -> None:
    """Histogram of scores [N]; normal and anomalous examples overlaid when known."""
    fig, ax = subplots(figsize=(6.5, 4))
    bins = np.histogram_bin_edges(scores, bins=60)
    if anomalous is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="all")
    else:
        for group, name, colour in ((~anomalous, "normal", "tab:blue"),
                                    (anomalous, "anomalous", "tab:red")):
            if group.any():
                ax.hist(scores[group], bins=bins, density=True, alpha=0.6, color=colour,
                        label=f"{name} (n={int(group.sum())})")
        ax.set_ylabel("density")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path)
