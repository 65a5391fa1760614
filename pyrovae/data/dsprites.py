"""dSprites, generated here: binary images of a square, an ellipse or a heart, from 5 known
factors (``data.name = "dsprites"`` and the small ``"dsprites-small"``), nothing downloaded.

The original (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset, Apache-2.0)
is one file of all 737,280 = 3 x 6 x 40 x 32 x 32 images, 64 x 64 binary, of the grid::

    k  factor       values                       full grid     dsprites-small
    0  shape        square, ellipse, heart       3             3
    1  scale        linspace(0.5, 1, S)          S = 6         S = 3
    2  orientation  radians                      linspace(0, 2 pi, 40)   8: k 2 pi / 8
    3  posX         linspace(0, 1, P)            P = 32        P = 8
    4  posY         linspace(0, 1, P)            P = 32        P = 8

The images are rasterised again here (:func:`render`, vectorised in NumPy, thousands per
second): a pixel (row i, column j) is on when its centre (x, y) = (j + 0.5, i + 0.5), taken
into the shape's own frame, passes the shape's inside-test. In pixels, with C the canvas side
(64), u = C * 10/64 the unit of size (10 px) and s the scale::

    centre      cx = C (1/4 + posX / 2),   cy = C (1/4 + posY / 2)      (16 .. 48 px at C = 64;
                posY = 0 is the top row)
    frame       (a, b) = R(-theta) (x - cx, cy - y) / (s u)   (the shape turned anticlockwise
                by theta about its centre, as displayed)
    square      max(|a|, |b|) <= 1                    side 2 s u: 20 px at scale 1
    ellipse     (a / 1.2)^2 + (b / 0.6)^2 <= 1         semi-axes 12 x 6 px at scale 1
    heart       (p^2 + q^2 - 1)^3 - p^2 q^3 <= 0 with (p, q) = 1.139/1.1 (a, b) + (0, 0.118):
                the classic implicit heart, point down, its bounding box centred, 1.1 u
                half-wide

Every shape at scale 1 lies within 1.54 u = 15.4 px of its centre, so it stays inside the
image at every position. Anti-aliasing is off: the images are bool. The geometry is this
module's, not the original's (whose shapes came from a vector drawing): the factors, their
values and the grid are the same, the pixels are not bit-identical, and a square turned by
pi/2 (an ellipse by pi) gives exactly the same image, as in the original, where orientation
is therefore not identifiable for those shapes.

Memory: the whole grid would be 3 GB of bytes (12 GB as the float32 a run trains on), so it is
never made. ``dsprites`` renders a seeded random sample of distinct grid points, by default
``TRAIN_SIZE`` = 50,000 for training and ``TEST_SIZE`` = 10,000 for testing (``data.train_size``
and ``data.test_size`` set them; ``data.seed`` the draw: one permutation of the grid, test set
first, so a larger training set keeps the test set and contains the smaller one); the memory is
checked before anything is rendered. ``dsprites-small`` is its whole 4,608-image grid, split
90/10 by ``data.seed``. ``data.image_size = [S]`` renders at S x S instead of 64 x 64 (the
geometry scales with the canvas). Labels are the shape index; ``dataset.factors``
(:class:`~pyrovae.data.factors.Factors`) holds the factor indices of every example and a
generator (``observe``) of any grid point, for the disentanglement metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from pyrovae.runtime import memory
from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import DATASETS
from pyrovae.data.factors import Factors
from pyrovae.data.sources import RawData

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
SHAPES = ("square", "ellipse", "heart")
CANVAS = 64
UNIT = 10 / 64        # unit of size, a fraction of the canvas: the square's half-side at scale 1
MARGIN = 1 / 4        # posX = 0 puts the centre at MARGIN * canvas, posX = 1 at (1 - MARGIN)
ELLIPSE = (1.2, 0.6)  # semi-axes in units
HEART_WIDTH = 1.139   # the implicit heart's half-width, and its bounding box's centre height
HEART_SHIFT = 0.118
HEART_HALF = 1.1      # its half-width in units
TRAIN_SIZE, TEST_SIZE = 50_000, 10_000
SMALL_TEST_FRACTION = 0.1
CHUNK = 1024          # images rendered at once (a few [CHUNK, C, C] float32 arrays)


@dataclass(frozen=True)
class Grid:
    """A grid of factor values: ``values[k]`` the values of factor k (FACTOR_NAMES order)."""

    values: tuple[np.ndarray, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    @property
    def size(self) -> int:
        return int(np.prod(self.sizes))

    def unravel(self, flat: np.ndarray) -> np.ndarray:
        """Flat grid positions [n] (shape slowest, posY fastest, the original file's order)
        -> factor indices [n, 5] int64."""
        return np.stack(np.unravel_index(np.asarray(flat), self.sizes), axis=1).astype(np.int64)

    def values_of(self, indices: np.ndarray) -> np.ndarray:
        """Factor indices [n, 5] -> factor values [n, 5] float64."""
        indices = np.asarray(indices)
        return np.stack([self.values[k][indices[:, k]] for k in range(5)], axis=1)


FULL = Grid((np.arange(3.0), np.linspace(0.5, 1, 6), np.linspace(0, 2 * np.pi, 40),
             np.linspace(0, 1, 32), np.linspace(0, 1, 32)))
SMALL = Grid((np.arange(3.0), np.linspace(0.5, 1, 3), np.arange(8) * (2 * np.pi / 8),
              np.linspace(0, 1, 8), np.linspace(0, 1, 8)))


def factor_grid(grid: Grid = FULL) -> tuple[np.ndarray, np.ndarray]:
    """Every grid point, in the original file's order: (indices [N, 5] int64, values [N, 5]
    float64); N = 737,280 for the full grid."""
    indices = grid.unravel(np.arange(grid.size))
    return indices, grid.values_of(indices)


def _inside(shape: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The inside-test of shape ``shape`` at points (a, b) of its frame (in units)."""
    if shape == 0:
        return np.maximum(np.abs(a), np.abs(b)) <= 1
    if shape == 1:
        return (a / ELLIPSE[0]) ** 2 + (b / ELLIPSE[1]) ** 2 <= 1
    p = a * (HEART_WIDTH / HEART_HALF)
    q = b * (HEART_WIDTH / HEART_HALF) + HEART_SHIFT
    p2 = p * p
    return (p2 + q * q - 1) ** 3 - p2 * q ** 3 <= 0


def render(values: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
    """Factor values [n, 5] (shape index, scale, orientation in radians, posX, posY in [0, 1])
    -> binary images bool [n, canvas, canvas] (see the module docstring for the geometry)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 5:
        raise DataError(f"dsprites.render takes factor values [n, 5], got shape {values.shape}")
    out = np.zeros((len(values), canvas, canvas), dtype=bool)
    centre = np.arange(canvas, dtype=np.float64) + 0.5
    for start in range(0, len(values), CHUNK):
        v = values[start:start + CHUNK]
        size = v[:, 1] * (UNIT * canvas)
        cx = canvas * (MARGIN + v[:, 3] * (1 - 2 * MARGIN))
        cy = canvas * (MARGIN + v[:, 4] * (1 - 2 * MARGIN))
        cos, sin = np.cos(v[:, 2]) / size, np.sin(v[:, 2]) / size
        dx = (centre[None, None, :] - cx[:, None, None])     # [m, 1, C]: x - cx
        up = (cy[:, None, None] - centre[None, :, None])     # [m, C, 1]: cy - y
        for shape in range(3):
            rows = np.flatnonzero(v[:, 0] == shape)
            if len(rows):
                c, s = cos[rows, None, None], sin[rows, None, None]
                a = (c * dx[rows] + s * up[rows]).astype(np.float32)
                b = (c * up[rows] - s * dx[rows]).astype(np.float32)
                out[start + rows] = _inside(shape, a, b)
    return out


def render_indices(indices: np.ndarray, grid: Grid = FULL, canvas: int = CANVAS) -> np.ndarray:
    """Factor indices [n, 5] of ``grid`` -> bool images [n, canvas, canvas]."""
    return render(grid.values_of(indices), canvas)


def observe(indices: np.ndarray, grid: Grid = FULL, canvas: int = CANVAS) -> np.ndarray:
    """Factor indices [n, 5] -> the examples as a data set holds them: float32 [n, canvas^2]."""
    images = render_indices(indices, grid, canvas)
    return images.reshape(len(images), canvas * canvas).astype(np.float32)


def _canvas(cfg) -> int:
    size = tuple(cfg.image_size)
    if size and (len(size) == 2 and size[0] != size[1]):
        raise DataError(f"data.image_size = {list(size)}: dSprites images are square; give "
                        f"[S] or [S, S]")
    if cfg.image_channels not in (0, 1):
        raise DataError(f"data.image_channels = {cfg.image_channels}: dSprites images are "
                        f"binary greyscale; set image_channels = 0 or 1")
    return int(size[0]) if size else CANVAS


def _raw(grid: Grid, train: np.ndarray, test: np.ndarray, canvas: int) -> RawData:
    """Render the grid points ``train`` and ``test`` (flat positions) into a RawData with
    shape labels and factors."""
    ti, si = grid.unravel(train), grid.unravel(test)
    factors = Factors(FACTOR_NAMES, grid.values, ti, si,
                      observe=partial(observe, grid=grid, canvas=canvas))
    return RawData(render_indices(ti, grid, canvas), render_indices(si, grid, canvas),
                   ti[:, 0].copy(), si[:, 0].copy(), factors=factors)


def read_dsprites(seed: int = 0, train_size: int = 0, test_size: int = 0,
                  canvas: int = CANVAS) -> RawData:
    """A seeded random sample of distinct points of the full grid, rendered: ``train_size``
    (0: TRAIN_SIZE) training and ``test_size`` (0: TEST_SIZE) test images."""
    n_train, n_test = train_size or TRAIN_SIZE, test_size or TEST_SIZE
    if n_train + n_test > FULL.size:
        raise DataError(f"dsprites has {FULL.size:,} images; data.train_size + data.test_size "
                        f"= {n_train + n_test:,}: lower them")
    memory.check_bytes(memory.array_bytes((n_train + n_test, canvas * canvas), 1)
                       * (1 + 2 * memory.FLOAT),
                       f"dsprites with {n_train:,} + {n_test:,} images of {canvas}x{canvas}",
                       "set data.train_size and data.test_size lower", error=DataError)
    order = np.random.default_rng(seed).permutation(FULL.size)
    return _raw(FULL, order[n_test:n_test + n_train], order[:n_test], canvas)


def read_dsprites_small(seed: int = 0, canvas: int = CANVAS) -> RawData:
    """The whole small grid (4,608 images), split 90/10 by a seeded permutation."""
    order = np.random.default_rng(seed).permutation(SMALL.size)
    n_test = int(round(SMALL_TEST_FRACTION * SMALL.size))
    return _raw(SMALL, order[n_test:], order[:n_test], canvas)


@DATASETS.register("dsprites", path="none", images=True,
                   layout="generated here (no file): a seeded sample of the dSprites grid")
def _dsprites(cfg) -> RawData:
    return read_dsprites(cfg.seed, cfg.train_size, cfg.test_size, _canvas(cfg))


@DATASETS.register("dsprites-small", path="none", images=True,
                   layout="generated here (no file): 3 x 3 x 8 x 8 x 8 dSprites grid")
def _dsprites_small(cfg) -> RawData:
    return read_dsprites_small(cfg.seed, _canvas(cfg))
