"""PNG pictures of a VAE and its training run.

Figures are made with :func:`subplots` here, not pyplot: a ``matplotlib.figure.Figure`` that no
backend or global figure list holds, written to PNG by Agg in :func:`save_figure`. So importing
pyrovae leaves matplotlib's backend as it was (a notebook keeps its inline figures), and a
picture written by a run is never shown or leaked."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torchvision.utils import make_grid, save_image

from pyrovae.runtime.files import atomic_write


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, squeeze: bool = True, **kw):
    """(figure, axes) as ``pyplot.subplots`` gives them, on a standalone Figure (see the module
    docstring); write it with :func:`save_figure`."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kw)


def colormap(name: str):
    """The registered matplotlib colormap ``name`` (e.g. "tab10")."""
    return colormaps[name]


def _as_images(x: torch.Tensor, shape) -> torch.Tensor:
    """[N, D] -> [N, C, H, W] for image data; vectors become a 1-pixel-high strip."""
    shape = tuple(shape)
    if len(shape) != 3:
        shape = (1, 1, math.prod(shape))
    return x.detach().float().cpu().reshape(-1, *shape)


def image_grid(x: torch.Tensor, shape, nrow: int = 8, scale: float = 4.0) -> torch.Tensor:
    """Rows of x [N, D] as one grid image [C, H, W], values clipped to [0, 1]; small images
    are enlarged ``scale`` times (nearest neighbour) so 8x8 digits stay readable."""
    images = _as_images(x, shape).clamp(0, 1)
    grid = make_grid(images, nrow=nrow, padding=1, pad_value=0.5)
    if images.shape[-1] < 28 and scale > 1:
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    return grid


def _save_grid(grid: torch.Tensor, path: str | Path) -> None:
    buf = io.BytesIO()
    save_image(grid, buf, format="png")
    atomic_write(path, buf.getvalue())


def save_image_grid(x: torch.Tensor, shape, path: str | Path, nrow: int = 8,
                    scale: float = 4.0) -> None:
    """Save rows of x [N, D] as a grid of images (:func:`image_grid`)."""
    _save_grid(image_grid(x, shape, nrow, scale), path)


def sample_grid(vae, n: int = 64, seed: int = 0) -> torch.Tensor:
    """An 8-wide grid [C, H, W] of E[x|z] for n draws z ~ p(z)."""
    return image_grid(vae.sample(n, seed=seed), vae.input_shape, nrow=8)


def reconstruction_grid(vae, x: torch.Tensor, n: int = 32) -> tuple[torch.Tensor, float]:
    """Originals (odd columns) beside their reconstructions (even columns), 8 pairs per row,
    as a grid [C, H, W]; and the mean squared error per pixel between the first n rows of x
    and their reconstructions."""
    x = x[:n]
    recon = vae.reconstruct(x)
    pairs = torch.stack([x, recon], dim=1).reshape(2 * len(x), -1)
    return image_grid(pairs, vae.input_shape, nrow=16), float(((recon - x) ** 2).mean())


def save_samples(vae, path: str | Path, n: int = 64, seed: int = 0) -> None:
    """:func:`sample_grid` as a PNG."""
    _save_grid(sample_grid(vae, n, seed), path)


def save_reconstructions(vae, x: torch.Tensor, path: str | Path, n: int = 32) -> float:
    """:func:`reconstruction_grid` as a PNG; returns the mean squared error per pixel between
    the n originals and their reconstructions."""
    grid, mse = reconstruction_grid(vae, x, n)
    _save_grid(grid, path)
    return mse


def save_elbo_curves(history: list[dict], path: str | Path) -> None:
    """Train and test ELBO (nats per data point) against epoch."""
    epochs = [row["epoch"] for row in history]
    fig, ax = subplots(figsize=(6, 4))
    ax.plot(epochs, [row["train_elbo"] for row in history], "o-", label="train")
    ax.plot(epochs, [row["test_elbo"] for row in history], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per data point)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def save_figure(fig, path: str | Path, dpi: int = 120, tight: bool = True) -> None:
    """Write a matplotlib figure as a PNG atomically (never a half-written file);
    ``tight``: lay it out with ``tight_layout`` first."""
    if tight:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    atomic_write(path, buf.getvalue())
