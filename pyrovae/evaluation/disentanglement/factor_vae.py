"""The FactorVAE score (Kim & Mnih 2018, "Disentangling by factorising"), as disentanglement_lib
computes it (``metrics/factor_vae.py``).

Each code dimension is first divided by its standard deviation s_j over a random sample of the
data (the ``z`` given); dimensions with s_j < ``prune`` (0.05 here, as Kim & Mnih drop the
dimensions collapsed to the prior; 0 keeps every dimension that varies) are dropped. Then
each *vote* is: draw a factor k and a value of it, draw ``batch_size`` (64) examples with factor
k fixed at that value and the others random (the sampler), and take

    d = argmin_j  Var_batch(z_j) / s_j^2     over the active dimensions j

the dimension that varies least once k is fixed. The votes V[k, d] (``n_train`` of them, 10,000
in disentanglement_lib) train a majority-vote classifier d -> k* (d) = argmax_k V[k, d]; the
score is its accuracy on ``n_eval`` (5,000) fresh votes::

    accuracy = sum_d V_eval[k*(d), d] / sum V_eval

Chance is about 1/K. A disentangled code scores 1 (the fixed factor's own dimension has zero
variance), a code where every dimension mixes all factors about chance.
"""

from __future__ import annotations

import numpy as np

from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.disentanglement.common import Sampler, draw_value


def _votes(sampler: Sampler, sizes, scale, active, n, batch_size, rng) -> np.ndarray:
    votes = np.zeros((len(sizes), int(active.sum())), dtype=np.int64)
    for _ in range(n):
        k = int(rng.integers(len(sizes)))
        z = np.asarray(sampler(k, draw_value(rng, sizes, k), batch_size), dtype=np.float64)
        local = np.var(z[:, active], axis=0, ddof=1) / scale[active] ** 2
        votes[k, int(np.argmin(local))] += 1
    return votes


def factor_vae_score(z, sampler: Sampler, sizes, batch_size: int = 64, n_train: int = 10_000,
                     n_eval: int = 5_000, prune: float = 0.05, seed: int = 0) -> dict:
    """The FactorVAE score -> {"factorvae": eval accuracy, "factorvae_train": train accuracy,
    "active_dims": int}.

    ``z`` [N, L]: representations of a random sample of the data (for the scales s_j);
    ``sampler(k, value, n)``: representations [n, L] with factor k fixed (common.py);
    ``sizes``: the K factors' numbers of values.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ConfigError(f"the FactorVAE score takes representations [N, L] with N >= 2, got "
                          f"shape {z.shape}")
    if batch_size < 2:
        raise ConfigError(f"FactorVAE batch_size = {batch_size}: a variance needs at least 2")
    rng = np.random.default_rng(seed)
    scale = np.std(z, axis=0, ddof=1)
    active = scale >= prune
    if not active.any():
        return {"factorvae": 0.0, "factorvae_train": 0.0, "active_dims": 0}
    train = _votes(sampler, sizes, scale, active, n_train, batch_size, rng)
    evals = _votes(sampler, sizes, scale, active, n_eval, batch_size, rng)
    classifier = np.argmax(train, axis=0)  # [L_active]: the factor each dimension votes for
    cols = np.arange(train.shape[1])
    return {"factorvae": float(evals[classifier, cols].sum() / max(evals.sum(), 1)),
            "factorvae_train": float(train[classifier, cols].sum() / max(train.sum(), 1)),
            "active_dims": int(active.sum())}
