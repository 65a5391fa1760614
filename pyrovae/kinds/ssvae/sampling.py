"""The classic M2 picture: one row per class, the style z shared down each column.

    sample_by_class(ssvae, n_columns, seed) -> [C * n_columns, D]

Column j decodes one draw z_j ~ N(0, I) with every class y = 0..C-1 (row y), so a column
shows the digits 0-9 in one style and a row one digit in many styles. With ``x`` given, the
styles are inferred instead: z_j = the mean of q(z | x_j, y_j), y_j = argmax q(y|x_j) (the
analogies of Kingma et al.'s figure).

The kind declares :func:`save_by_class` as its ``pictures["by_class"]`` (the registration in
``__init__``), which ``pyrovae sample --by-class`` reaches through the registry
(``pyrovae.applications.generation.by_class``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pyrovae.runtime.traces import eval_mode
from pyrovae.reports.plots import save_image_grid
from pyrovae.runtime.rng import seeded


@torch.no_grad()
def sample_by_class(ssvae, n_columns: int = 10, seed: int = 0,
                    x: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder means E[x | y, z_j] for every class y (rows) and style z_j (columns):
    [C * n_columns, D], row-major (row y holds entries y*n_columns ... y*n_columns + n - 1)."""
    device = ssvae.prior_logits.device
    with eval_mode(ssvae):
        if x is None:
            with seeded(seed):
                z = torch.randn(n_columns, ssvae.config.latent_dim, device=device)
        else:
            z = ssvae.encode(x[:n_columns].to(device))[0]
        ys = torch.arange(ssvae.num_classes, device=device)[:, None]        # [C, 1]
        images = ssvae.decode(z.expand(ssvae.num_classes, *z.shape), ys)   # [C, n, D]
    return images.reshape(-1, images.shape[-1])


def save_by_class(ssvae, path: str | Path, n_columns: int = 10, seed: int = 0,
                  x: torch.Tensor | None = None) -> None:
    """PNG of :func:`sample_by_class`: C rows of ``n_columns`` images (``x``: one test image
    per column, shown in an extra first row, whose inferred style the column shares)."""
    grid = sample_by_class(ssvae, n_columns, seed, x)
    if x is not None:
        grid = torch.cat([x[:n_columns].to(grid.device).reshape(-1, grid.shape[-1]), grid])
    save_image_grid(grid, ssvae.input_shape, path, nrow=n_columns)
