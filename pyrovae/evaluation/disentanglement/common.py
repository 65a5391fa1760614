"""Shared pieces of the disentanglement metrics: input checks, discretisation, discrete
mutual information and entropy, the samplers that fix one factor, and scikit-learn's import.

Shapes: representations ``z`` [N, L] (L code dimensions, e.g. posterior means), factors ``v``
[N, K] (K ground-truth factors, as integer indices). A *sampler* is a callable
``sampler(k, value, n) -> z [n, L]``: the representations of n fresh examples whose factor k
has index ``value`` and whose other factors are drawn uniformly at random (independently per
example). :func:`grid_sampler` builds one from a function of factor indices (e.g. render the
images and encode them), :func:`pool_sampler` from held examples with known factors.

Discrete mutual information (nats), from the empirical joint of two integer columns a, b::

    I(a; b) = sum_{i,j} p(i, j) log( p(i, j) / (p(i) p(j)) ),    H(a) = I(a; a)

as ``sklearn.metrics.mutual_info_score`` computes it (disentanglement_lib's definition).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pyrovae.runtime.errors import ConfigError

Sampler = Callable[[int, int, int], np.ndarray]


def sklearn_needed(what: str):
    """Import scikit-learn, or refuse in one line naming the pip command."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(f"the {what} needs scikit-learn: "
                          f"pip install 'pyrovae[disentanglement]'") from None


def check_inputs(z, v, what: str) -> tuple[np.ndarray, np.ndarray]:
    """z [N, L] finite floats and v [N, K] integer factor indices, as NumPy arrays."""
    z, v = np.asarray(z, dtype=np.float64), np.asarray(v)
    if z.ndim != 2 or v.ndim != 2 or len(z) != len(v):
        raise ConfigError(f"{what} takes representations [N, L] and factors [N, K] with the "
                          f"same N, got shapes {z.shape} and {v.shape}")
    if len(z) < 2:
        raise ConfigError(f"{what} needs at least 2 examples, got {len(z)}")
    if not np.isfinite(z).all():
        raise ConfigError(f"{what}: the representations hold NaN or inf; check the encoder")
    if not np.issubdtype(v.dtype, np.integer):
        raise ConfigError(f"{what} takes factors as integer indices (dtype {v.dtype} given); "
                          f"pass the factor indices, e.g. dataset.factors.test")
    return z, v


def discretize(z: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each column of z [N, L] into ``bins`` equal-width bins over its own range -> [N, L]
    ints in 1..bins (disentanglement_lib's histogram discretiser)."""
    out = np.zeros(z.shape, dtype=np.int64)
    for j in range(z.shape[1]):
        edges = np.histogram(z[:, j], bins)[1]
        out[:, j] = np.digitize(z[:, j], edges[:-1])
    return out


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two integer columns [N] (their empirical joint distribution)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])))


def mutual_info_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code_j; factor_k) for discrete codes [N, L] and factors [N, K] -> [L, K] nats."""
    return np.array([[mutual_info(codes[:, j], factors[:, k]) for k in range(factors.shape[1])]
                     for j in range(codes.shape[1])])


def entropies(factors: np.ndarray) -> np.ndarray:
    """H(factor_k) in nats for each column of factors [N, K] -> [K]."""
    return np.array([mutual_info(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def grid_sampler(represent: Callable[[np.ndarray], np.ndarray], sizes,
                 seed: int = 0) -> Sampler:
    """A sampler from ``represent``: factor indices [n, K] -> representations [n, L] (e.g.
    render then encode). The free factors are drawn uniformly from ``sizes`` (K counts)."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes)

    def sample(k: int, value: int, n: int) -> np.ndarray:
        idx = (rng.random((n, len(sizes))) * sizes).astype(np.int64)
        idx[:, k] = value
        return np.asarray(represent(idx), dtype=np.float64)

    return sample


def pool_sampler(z: np.ndarray, factors: np.ndarray, seed: int = 0) -> Sampler:
    """A sampler from held examples (representations z [N, L], factor indices [N, K]): draws
    with replacement among the examples whose factor k has that value (the others' factors are
    then distributed as in the pool, uniform for a random sample of a full grid)."""
    rng = np.random.default_rng(seed)
    z, factors = np.asarray(z, dtype=np.float64), np.asarray(factors)

    def sample(k: int, value: int, n: int) -> np.ndarray:
        rows = np.flatnonzero(factors[:, k] == value)
        if not len(rows):
            raise ConfigError(f"no example has factor {k} = {value}; use more examples or a "
                              f"generator (dataset.factors.observe)")
        return z[rng.choice(rows, n)]

    return sample


def draw_value(rng: np.random.Generator, sizes, k: int) -> int:
    """A uniformly drawn index of factor k."""
    return int(rng.integers(sizes[k]))
