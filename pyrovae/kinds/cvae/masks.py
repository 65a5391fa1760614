"""Which pixels a quadrant-conditioned CVAE sees (x_in) and predicts (x_out).

Pyro's ``examples/cvae`` (mnist.py, ``MaskImages``) splits an H x W image at row H // 2 and
column W // 2 and keeps as input:

    visible = 1   the bottom-left quadrant                  x_out: the other three
    visible = 2   the left half (top-left and bottom-left)  x_out: the right half
    visible = 3   all but the bottom-right quadrant         x_out: the bottom-right quadrant

For images of C channels the same quadrants are taken in every channel. Pixels are numbered
as in the flattened [C * H * W] vector the model sees.
"""

from __future__ import annotations

import torch

from pyrovae.runtime.errors import ConfigError

QUADRANTS = {1: ("bottom-left",), 2: ("top-left", "bottom-left"),
             3: ("top-left", "bottom-left", "top-right")}


def visible_mask(image_shape, visible: int) -> torch.Tensor:
    """Bool [C * H * W]: True where a pixel is visible (in x_in) with ``visible`` quadrants."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3:
        raise ConfigError(f"model.condition = \"quadrants\" needs images shaped (channels, "
                          f"height, width), not vectors of shape {shape}; use condition = "
                          f"\"label\" or image data")
    if visible not in QUADRANTS:
        raise ConfigError(f"model.visible = {visible!r} is out of range: it must be 1, 2 or 3")
    c, h, w = shape
    if h < 2 or w < 2:
        raise ConfigError(f"model.condition = \"quadrants\" needs images of at least 2 x 2 "
                          f"pixels, not {h} x {w}")
    # on the CPU even under torch.device("meta") (the memory checks' build): the CVAE indexes
    # with mask.nonzero(), which needs values
    cpu = dict(dtype=torch.bool, device="cpu")
    top, left = torch.zeros(h, w, **cpu), torch.zeros(h, w, **cpu)
    top[:h // 2], left[:, :w // 2] = True, True
    parts = {"top-left": top & left, "top-right": top & ~left,
             "bottom-left": ~top & left, "bottom-right": ~top & ~left}
    mask = torch.zeros(h, w, **cpu)
    for name in QUADRANTS[visible]:
        mask |= parts[name]
    return mask.expand(c, h, w).reshape(-1)
