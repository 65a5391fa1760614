"""Pictures of a trained CVAE.

``prediction_rows`` (quadrants), the layout of Pyro's ``examples/cvae`` figure: one column per
test image, rows

    input        the visible quadrants, the hidden ones shown at 0.5 (grey)
    truth        the whole image
    baseline     the deterministic network's pixel probabilities in the hidden quadrants
                 (only when a baseline is given)
    CVAE 1..S    E[x_out | x_in, z_s] for S draws z_s ~ p(z | x_in), in the hidden quadrants

``by_class_rows`` (label): one row per class c, one column per draw z ~ p(z | c).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pyrovae.runtime.traces import eval_mode
from pyrovae.reports.plots import save_image_grid
from pyrovae.runtime.rng import seeded

HIDDEN_GREY = 0.5
SEPARATOR = (0.25, 0.45, 0.85)  # the lines between images (blue: not a pixel value)


@torch.no_grad()
def prediction_rows(cvae, x: torch.Tensor, samples: int = 5, seed: int = 0,
                    baseline=None) -> list[torch.Tensor]:
    """The rows above for the examples x [n, D] (as the model sees them): a list of [n, D_img]."""
    x_in, x_out = cvae.split(x)
    rows = [cvae.image(x_in, torch.full_like(x_out, HIDDEN_GREY)), cvae.image(x_in, x_out)]
    if baseline is not None:
        with eval_mode(baseline):
            rows.append(cvae.image(x_in, baseline.predict(x_in)))
    with seeded(seed), eval_mode(cvae):
        p = cvae.prior(x_in).base_dist
        z = p.loc + p.scale * torch.randn(samples, *p.loc.shape, device=x.device)
        rows += list(cvae.image(x_in, cvae.decode(z, x_in)))
    return rows


def save_predictions(cvae, x: torch.Tensor, path: str | Path, samples: int = 5, seed: int = 0,
                     baseline=None) -> None:
    """PNG of :func:`prediction_rows`, one column per example of x [n, D], each row labelled
    (input, truth, baseline, CVAE 1..S)."""
    from pyrovae.reports.plots import save_figure, subplots

    rows = prediction_rows(cvae, x, samples, seed, baseline)
    names = ["input", "truth"] + (["baseline"] if baseline is not None else []) + [
        f"CVAE {s + 1}" for s in range(samples)]
    c, h, w = cvae.input_shape
    n = x.shape[0]
    canvas = torch.tensor(SEPARATOR).expand(len(rows) * (h + 1) - 1, n * (w + 1) - 1,
                                            3).clone()
    for i, row in enumerate(rows):
        for j, image in enumerate(row.reshape(n, c, h, w).clamp(0, 1).cpu()):
            rgb = image.expand(3, h, w) if c == 1 else image[:3]
            canvas[i * (h + 1):i * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = rgb.permute(
                1, 2, 0)
    fig, ax = subplots(figsize=(0.1 + 0.55 * n, 0.55 * len(rows)))
    ax.imshow(canvas.numpy(), interpolation="nearest")
    ax.set_yticks([i * (h + 1) + h / 2 for i in range(len(rows))], names)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    save_figure(fig, path)


@torch.no_grad()
def by_class_rows(cvae, columns: int = 10, seed: int = 0) -> torch.Tensor:
    """[C * columns, D_img]: row c holds ``columns`` draws given class c."""
    with eval_mode(cvae):
        return torch.cat([cvae.sample(columns, seed=seed + c, condition=c)
                          for c in range(cvae.config.num_classes)])


def save_by_class(cvae, path: str | Path, columns: int = 10, seed: int = 0) -> None:
    save_image_grid(by_class_rows(cvae, columns, seed), cvae.input_shape, path, nrow=columns)


def save_run_pictures(cvae, x_test: torch.Tensor, folder: Path, seed: int = 0) -> list[str]:
    """The pictures of a finished run: predictions.png (quadrants; the first 10 test images)
    or by_class.png (label). Returns the names written."""
    if cvae.config.condition == "label":
        save_by_class(cvae, folder / "by_class.png", seed=seed)
        return ["by_class.png"]
    save_predictions(cvae, x_test[:10], folder / "predictions.png", seed=seed)
    return ["predictions.png"]
