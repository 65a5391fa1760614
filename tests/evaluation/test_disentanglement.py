"""Known answers of the disentanglement metrics (pyrovae.evaluation.disentanglement).

Synthetic factors v [N, 4] (sizes 3, 4, 5, 6) and three representations of them: a permutation
with per-dimension monotone maps (disentangled: every metric at or near its maximum), a
Hadamard mixture of the standardised factors (every dimension carries every factor equally:
clearly lower), and pure noise (near chance). Plus a tiny MIG worked by hand, and the
end-to-end :func:`disentanglement_scores` on dsprites-small with the true factors as the code.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pyrovae import load_dataset
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.disentanglement import (beta_vae_score, dci, disentanglement_scores,
                                                factor_vae_score, grid_sampler, mig, sap)

SIZES = np.array([3, 4, 5, 6])
PERM = [2, 0, 3, 1]
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2


def factors(n, seed):
    return (np.random.default_rng(seed).random((n, 4)) * SIZES).astype(np.int64)


def disentangled(v):
    f = v[:, PERM].astype(float)
    return np.stack([2 * f[:, 0] - 1, np.exp(f[:, 1] / 3), 0.1 * f[:, 2] ** 3 + f[:, 2],
                     -0.5 * f[:, 3]], axis=1)


def standardised(v):
    return (v - (SIZES - 1) / 2) / np.sqrt((SIZES ** 2 - 1) / 12)


def mixed(v):
    return standardised(v) @ HADAMARD.T


def rotated(v):
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(4, 4)))
    return standardised(v) @ q


_NOISE = np.random.default_rng(9)


def noise(v):
    return _NOISE.normal(size=(len(v), 4))


CODES = {"disentangled": disentangled, "mixed": mixed, "noise": noise}


@pytest.fixture(scope="module")
def scores():
    """Every metric of each code (small sample sizes: the whole module runs in ~30 s)."""
    out = {}
    for name, code in CODES.items():
        vt, ve = factors(1500, 1), factors(600, 2)
        zt, ze = code(vt), code(ve)
        sampler = grid_sampler(code, SIZES, seed=3)
        d = dci(zt, vt, ze, ve, model="forest")
        out[name] = {"mig": mig(zt, vt)["mig"],
                     "factorvae": factor_vae_score(zt, sampler, SIZES, n_train=200,
                                                   n_eval=200)["factorvae"],
                     "D": d["dci_disentanglement"], "C": d["dci_completeness"],
                     "I": d["dci_informativeness"], "sap": sap(zt, vt, ze, ve)["sap"],
                     "betavae": beta_vae_score(sampler, SIZES, n_train=200,
                                               n_eval=200)["betavae"]}
    return out


def test_disentangled_code_scores_perfect(scores):
    s = scores["disentangled"]
    assert s["mig"] > 0.98
    assert s["factorvae"] == 1.0
    assert s["betavae"] == 1.0
    assert s["D"] > 0.95 and s["C"] > 0.95 and s["I"] > 0.99
    assert s["sap"] > 0.4  # a one-feature linear SVM separates only a few of 4-6 classes


def test_mixed_code_scores_clearly_lower(scores):
    s, best = scores["mixed"], scores["disentangled"]
    assert s["mig"] < 0.05
    assert s["factorvae"] < 0.5
    assert s["betavae"] < 0.5
    assert s["D"] < 0.2 and s["C"] < 0.2
    assert s["I"] > 0.95  # (the factors are all still there: only their separation is gone)
    assert s["sap"] < 0.05 < best["sap"] - 0.3


def test_noise_scores_near_chance(scores):
    s = scores["noise"]
    assert s["mig"] < 0.02 and s["sap"] < 0.03
    assert s["D"] < 0.1 and s["C"] < 0.1
    chance = 1 / 4
    assert abs(s["factorvae"] - chance) < 0.12 and abs(s["betavae"] - chance) < 0.12
    assert s["I"] < 0.4  # the mean of the chance accuracies (1/3, 1/4, 1/5, 1/6) is 0.24


def test_a_random_rotation_lowers_mig_and_dci():
    vt, ve = factors(1500, 1), factors(600, 2)
    zt, ze = rotated(vt), rotated(ve)
    assert mig(zt, vt)["mig"] < 0.5
    d = dci(zt, vt, ze, ve, model="forest")
    assert d["dci_disentanglement"] < 0.7 and d["dci_completeness"] < 0.7


def test_mig_by_hand():
    """a, b two fair coins; z0 = a, z1 = a AND b. I(z0; a) = H(a) = ln 2, I(z0; b) = 0,
    I(z1; a) = I(z1; b) = h(1/4) - ln(2)/2 =: c. Gaps: (ln 2 - c)/ln 2 for a, c/ln 2 for b:
    MIG = 1/2 exactly; the matrix too."""
    a, b = np.array([0, 0, 1, 1] * 5), np.array([0, 1, 0, 1] * 5)
    z = np.stack([a, a & b], axis=1).astype(float)
    out = mig(z, np.stack([a, b], axis=1))
    c = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) - math.log(2) / 2
    np.testing.assert_allclose(out["mutual_info"], [[math.log(2), 0], [c, c]], atol=1e-12)
    np.testing.assert_allclose(out["entropy"], [math.log(2)] * 2, atol=1e-12)
    assert out["mig"] == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(out["mig_per_factor"], [1 - c / math.log(2), c / math.log(2)])


def test_coarse_bins_merge_values_and_lower_mig():
    v = factors(2000, 4)
    z = disentangled(v)
    assert mig(z, v, bins=2)["mig"] < mig(z, v, bins=20)["mig"] - 0.2


def test_sap_continuous_is_one_for_an_affine_copy():
    v = factors(500, 6).astype(np.int64)
    z = standardised(v)[:, PERM] * [2, -1, 3, 0.5] + 1
    assert sap(z, v, z, v, continuous=True)["sap"] == pytest.approx(1.0, abs=0.05)


def test_seeded():
    v = factors(400, 7)
    sampler = lambda: grid_sampler(rotated, SIZES, seed=0)  # noqa: E731
    a = factor_vae_score(rotated(v), sampler(), SIZES, n_train=50, n_eval=50, seed=1)
    b = factor_vae_score(rotated(v), sampler(), SIZES, n_train=50, n_eval=50, seed=1)
    assert a == b


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="integer indices"):
        mig(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="same N"):
        mig(np.zeros((4, 2)), np.zeros((3, 2), dtype=int))
    with pytest.raises(ConfigError, match="no ground-truth factors"):
        disentanglement_scores(lambda x: x, load_dataset("digits"))


def _true_factors(indices):
    """The "representation" that is the factors themselves: their values, as floats."""
    return np.asarray(indices, dtype=np.float32)


def test_true_factors_of_dsprites_small_score_near_perfect():
    """disentanglement_scores end to end: the data set's generator replaced by the true factors
    (as x), the identity as the encoder."""
    data = load_dataset("dsprites-small")
    data = dataclasses.replace(data, factors=dataclasses.replace(data.factors,
                                                                 observe=_true_factors))
    s = disentanglement_scores(lambda x: x, data, n=1500, seed=0, dci_model="forest",
                               votes=100)
    assert s["mig"] > 0.95 and s["factorvae"] == 1.0 and s["betavae"] == 1.0
    assert s["dci_disentanglement"] > 0.9 and s["dci_completeness"] > 0.9
    assert s["dci_informativeness"] > 0.95 and s["sap"] > 0.2
    assert s["active_dims"] == 5


def test_dsprites_small_through_the_renderer_with_a_centroid_encoder():
    """Real images: a hand-made encoder (the centroid column and row of the lit pixels) holds
    posX and posY in one dimension each, and nothing of shape: its MIG for the positions is
    high, for shape about 0."""
    data = load_dataset("dsprites-small")
    side = int(math.isqrt(data.dim))
    grid = np.arange(side) + 0.5

    def centroid(x):
        img = x.numpy().reshape(len(x), side, side)
        mass = img.sum(axis=(1, 2))
        return np.stack([(img.sum(1) * grid).sum(1) / mass, (img.sum(2) * grid).sum(1) / mass],
                        axis=1)

    x = data.test_x
    z = centroid(x)
    out = mig(z, data.factors.test)
    per = dict(zip(data.factors.names, out["mig_per_factor"]))
    assert per["posX"] > 0.8 and per["posY"] > 0.8 and per["shape"] < 0.1
    s = disentanglement_scores(centroid, data, n=400, seed=0, dci_model="forest", votes=40)
    assert s["active_dims"] == 2 and 0 <= s["mig"] <= 1
