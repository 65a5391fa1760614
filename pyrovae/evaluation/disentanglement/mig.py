"""The Mutual Information Gap (Chen et al. 2018, "Isolating sources of disentanglement in
VAEs"), as disentanglement_lib computes it (Locatello et al. 2019, ``metrics/mig.py``).

Each code dimension z_j of the representations [N, L] is discretised into ``bins`` equal-width
bins over its range (20 by default); with factors v_k [N] (K columns of indices)::

    I_jk  = I(z_j; v_k)                  empirical discrete mutual information [L, K], nats
    MIG   = 1/K sum_k ( I_(1)k - I_(2)k ) / H(v_k)

where I_(1)k >= I_(2)k are the two largest entries of column k. A code that copies each factor
into its own dimension (any permutation, any monotone map that keeps the factor's values in
distinct bins) scores 1 minus the small positive bias of the empirical I of the other
dimensions; an entangled code (one dimension informative about several factors, or several
about one) scores lower; pure noise about 0.
"""

from __future__ import annotations

import numpy as np

from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.disentanglement.common import (check_inputs, discretize, entropies,
                                                       mutual_info_matrix)


def mig(z, factors, bins: int = 20) -> dict:
    """MIG of representations z [N, L] against factor indices [N, K] -> {"mig": float,
    "mig_per_factor": [K] list, "mutual_info": [L, K] nats, "entropy": [K] nats}."""
    z, factors = check_inputs(z, factors, "MIG")
    if z.shape[1] < 2:
        raise ConfigError("MIG needs at least 2 code dimensions (the gap between the top two)")
    if bins < 2:
        raise ConfigError(f"MIG bins = {bins}: use at least 2 bins (20 is the usual)")
    m = mutual_info_matrix(discretize(z, bins), factors)
    h = entropies(factors)
    if np.any(h <= 0):
        k = int(np.argmin(h))
        raise ConfigError(f"MIG: factor {k} takes one value in these examples (entropy 0); "
                          f"drop it or use examples where it varies")
    top = np.sort(m, axis=0)[::-1]
    per_factor = (top[0] - top[1]) / h
    return {"mig": float(per_factor.mean()), "mig_per_factor": per_factor.tolist(),
            "mutual_info": m, "entropy": h}
