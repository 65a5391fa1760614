"""The generated dSprites (pyrovae.data.dsprites): hand-checked pixels of each shape, the grid,
determinism, and the data sets "dsprites-small" and "dsprites" through load_dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyrovae import load_dataset
from pyrovae.runtime.errors import DataError
from pyrovae.data import dsprites


def one(shape, scale=1.0, theta=0.0, x=0.5, y=0.5, canvas=64):
    return dsprites.render(np.array([[shape, scale, theta, x, y]]), canvas)[0]


def box(img):
    rows, cols = np.nonzero(img)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_square_at_scale_one_in_the_centre_is_exactly_20_by_20():
    """Half-side 10 px about the centre (32, 32): pixel centres 22.5 .. 41.5."""
    img = one(0)
    expected = np.zeros((64, 64), dtype=bool)
    expected[22:42, 22:42] = True
    np.testing.assert_array_equal(img, expected)
    assert one(0, scale=0.5).sum() == 100  # half the side: a quarter of the area


def test_moving_posx_moves_the_box_right():
    """posX 0.5 -> 0.75 moves the centre by 64 * 1/2 * 1/4 = 8 px: the same pixels, shifted."""
    a, b = one(2, theta=0.7), one(2, theta=0.7, x=0.75)
    np.testing.assert_array_equal(np.roll(a, 8, axis=1), b)
    (r0, r1, c0, c1), (s0, s1, d0, d1) = box(a), box(b)
    assert (s0, s1, d0, d1) == (r0, r1, c0 + 8, c1 + 8)
    # the grid's 32 positions: from index 0 to 31 the centre moves 32 px
    lo, hi = dsprites.render_indices(np.array([[0, 5, 0, 0, 3], [0, 5, 0, 31, 3]]))
    assert box(hi)[2] - box(lo)[2] == 32


def test_posy_zero_is_the_top():
    top, bottom = box(one(0, y=0.0)), box(one(0, y=1.0))
    assert top[0] == 6 and bottom[1] == 57  # centres at rows 16 and 48, half-side 10


def test_a_square_turned_by_a_quarter_turn_is_the_same_image():
    for theta in (0.3, 1.0):
        np.testing.assert_array_equal(one(0, 0.8, theta, 0.3, 0.6),
                                      one(0, 0.8, theta + math.pi / 2, 0.3, 0.6))
    assert not np.array_equal(one(0, theta=0.0), one(0, theta=math.pi / 4))


def test_ellipse_area_is_pi_a_b():
    """Semi-axes 12 x 6 px at scale 1 (and 6 x 3 at scale 0.5): area pi a b within 3%."""
    for scale, theta in ((1.0, 0.0), (1.0, 0.9), (0.5, 2.0)):
        a, b = 12 * scale, 6 * scale
        assert one(1, scale, theta).sum() == pytest.approx(math.pi * a * b, rel=0.03)
    r0, r1, c0, c1 = box(one(1))
    assert (c1 - c0 + 1, r1 - r0 + 1) == (24, 12)  # long axis horizontal at orientation 0
    r0, r1, c0, c1 = box(one(1, theta=math.pi / 2))
    assert (c1 - c0 + 1, r1 - r0 + 1) == (12, 24)


def test_heart_is_symmetric_and_points_down():
    img = one(2)
    np.testing.assert_array_equal(img, img[:, ::-1])  # about the vertical axis through x = 32
    rows = np.nonzero(img.any(axis=1))[0]
    top_width, bottom_width = img[rows[0] + 2].sum(), img[rows[-1] - 1].sum()
    assert bottom_width < top_width  # the point at the bottom
    assert not np.array_equal(img, img[::-1])
    r0, r1, c0, c1 = box(img)
    assert c1 - c0 + 1 == 22 and abs((r0 + r1 + 1) / 2 - 32) <= 1  # 1.1 units half-wide


def test_every_shape_stays_inside_the_image():
    corners = np.array([[s, 1.0, t, x, y] for s in range(3) for t in np.linspace(0, 2 * np.pi, 40)
                        for x in (0, 1) for y in (0, 1)])
    imgs = dsprites.render(corners)
    assert imgs.sum(axis=(1, 2)).min() > 0
    edge = imgs[:, 0].any() or imgs[:, -1].any() or imgs[:, :, 0].any() or imgs[:, :, -1].any()
    assert not edge


def test_factor_grid_and_render_types():
    idx, val = dsprites.factor_grid()
    assert idx.shape == val.shape == (737_280, 5) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx.max(axis=0), [2, 5, 39, 31, 31])
    np.testing.assert_allclose(val[-1], [2, 1, 2 * np.pi, 1, 1])
    np.testing.assert_allclose(val[1], [0, 0.5, 0, 0, 1 / 31])  # posY fastest, as the original
    imgs = dsprites.render(val[:7])
    assert imgs.shape == (7, 64, 64) and imgs.dtype == bool
    assert dsprites.render(val[:3], canvas=32).shape == (3, 32, 32)
    small_idx, _ = dsprites.factor_grid(dsprites.SMALL)
    assert small_idx.shape == (4608, 5)


def test_render_is_deterministic_and_chunking_does_not_matter(monkeypatch):
    rng = np.random.default_rng(0)
    idx, val = dsprites.factor_grid()
    pick = val[rng.choice(len(val), 300, replace=False)]
    a = dsprites.render(pick)
    monkeypatch.setattr(dsprites, "CHUNK", 7)
    np.testing.assert_array_equal(a, dsprites.render(pick))


def test_dsprites_small_loads_with_its_factors():
    data = load_dataset("dsprites-small")
    again = load_dataset("dsprites-small")
    assert data.shape == (1, 64, 64) and data.num_train + len(data.test_x) == 4608
    assert len(data.test_x) == 461
    f = data.factors
    assert f.names == ("shape", "scale", "orientation", "posX", "posY")
    assert f.sizes == (3, 3, 8, 8, 8)
    assert f.train.shape == (data.num_train, 5) and f.test.shape == (461, 5)
    both = np.concatenate([f.train, f.test])
    assert len(np.unique(both, axis=0)) == 4608  # the whole grid, each point once
    np.testing.assert_array_equal(data.train_y.numpy(), f.train[:, 0])
    # the images are the factors' renderings, row for row
    np.testing.assert_array_equal(data.test_x.numpy(), f.observe(f.test))
    assert set(np.unique(data.train_x.numpy())) == {0.0, 1.0}
    assert np.array_equal(data.train_x.numpy(), again.train_x.numpy())
    other = load_dataset("dsprites-small", seed=1)
    assert not np.array_equal(other.factors.test, f.test)


def test_dsprites_small_classes_sizes_and_image_size_keep_factors_in_step():
    data = load_dataset("dsprites-small", classes=(2,), train_size=100, image_size=(32,))
    assert data.shape == (1, 32, 32) and data.num_train == 100
    assert (data.factors.train[:, 0] == 2).all() and len(data.factors.train) == 100
    np.testing.assert_array_equal(data.train_x.numpy(), data.factors.observe(data.factors.train))


def test_dsprites_is_a_seeded_sample_of_the_full_grid():
    a = load_dataset("dsprites", train_size=300, test_size=100)
    b = load_dataset("dsprites", train_size=500, test_size=100)
    assert a.factors.sizes == (3, 6, 40, 32, 32)
    np.testing.assert_array_equal(a.factors.test, b.factors.test)  # same test set
    np.testing.assert_array_equal(a.factors.train, b.factors.train[:300])  # nested
    assert len(np.unique(np.concatenate([b.factors.train, b.factors.test]), axis=0)) == 600
    np.testing.assert_array_equal(a.test_x.numpy(), a.factors.observe(a.factors.test))


def test_bad_options_are_one_line_errors():
    with pytest.raises(DataError, match="image_channels"):
        load_dataset("dsprites-small", image_channels=3)
    with pytest.raises(DataError, match="square"):
        load_dataset("dsprites-small", image_size=(32, 48))
    with pytest.raises(DataError, match="737,280"):
        load_dataset("dsprites", train_size=737_280, test_size=10)
