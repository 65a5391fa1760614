"""The BetaVAE score (Higgins et al. 2017, "beta-VAE: learning basic visual concepts with a
constrained variational framework"), as disentanglement_lib computes it
(``metrics/beta_vae.py``).

One point of the classifier's data: draw a factor k, then ``batch_size`` (64) pairs of examples
(z1, z2) that share factor k's value and draw the other factors independently; its feature is
the mean absolute difference, its label k::

    f = 1/B sum_b | z1_b - z2_b |   in R^L,      label k

A logistic regression (scikit-learn, default settings) is fitted on ``n_train`` (10,000) points
and the score is its accuracy on ``n_eval`` (5,000) fresh ones. Chance is about 1/K; a
disentangled code scores 1 (f_j = 0 exactly on the fixed factor's own dimension).

Here one batch's pairs share one value v of factor k (the sampler draws n examples with factor
k = v; the first half are z1, the second z2), where disentanglement_lib draws v per pair: the
feature has the same expectation (v is uniform either way), a little more variance.
"""

from __future__ import annotations

import numpy as np

from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.disentanglement.common import Sampler, draw_value, sklearn_needed


def _points(sampler: Sampler, sizes, n, batch_size, rng) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for _ in range(n):
        k = int(rng.integers(len(sizes)))
        z = np.asarray(sampler(k, draw_value(rng, sizes, k), 2 * batch_size), dtype=np.float64)
        features.append(np.mean(np.abs(z[:batch_size] - z[batch_size:]), axis=0))
        labels.append(k)
    return np.array(features), np.array(labels)


def beta_vae_score(sampler: Sampler, sizes, batch_size: int = 64, n_train: int = 10_000,
                   n_eval: int = 5_000, seed: int = 0) -> dict:
    """The BetaVAE score -> {"betavae": eval accuracy, "betavae_train": train accuracy}.

    ``sampler(k, value, n)``: representations [n, L] with factor k fixed (common.py);
    ``sizes``: the K factors' numbers of values.
    """
    sklearn_needed("BetaVAE score")
    from sklearn.linear_model import LogisticRegression

    if batch_size < 1 or n_train < 2 or n_eval < 1:
        raise ConfigError(f"BetaVAE score: batch_size = {batch_size}, n_train = {n_train}, "
                          f"n_eval = {n_eval}; use batch_size >= 1, n_train >= 2, n_eval >= 1")
    rng = np.random.default_rng(seed)
    x_train, y_train = _points(sampler, sizes, n_train, batch_size, rng)
    x_eval, y_eval = _points(sampler, sizes, n_eval, batch_size, rng)
    if len(np.unique(y_train)) < 2:
        return {"betavae": float(np.mean(y_eval == y_train[0])), "betavae_train": 1.0}
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return {"betavae": float(np.mean(model.predict(x_eval) == y_eval)),
            "betavae_train": float(np.mean(model.predict(x_train) == y_train))}
