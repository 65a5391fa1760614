"""Closed-form KL(q || p) of the full-covariance and low-rank guides against a diagonal Gaussian
prior p = Independent(Normal(m, s), 1) (the ``normal`` and ``learnable-normal`` priors), for
TraceMeanField_ELBO (``kl_divergence(guide_fn, model_fn)``) and the evaluation's analytic KL:

    KL(q || p) = -H(q) - E_q[log p(z)]
               = -H(q) + sum_d [ log s_d + log(2 pi) / 2 + ((mu_d - m_d)^2 + S_dd) / (2 s_d^2) ]

with H(q) = L/2 (1 + log 2 pi) + log det(S)^(1/2) the entropy of q = N(mu, S) (torch computes it
from the Cholesky factor, or for W W^T + diag(d) by the matrix determinant lemma) and S_dd the
marginal variances. Shapes: batch [...] -> KL [...]. Another Independent (a Laplace, a deeper
reinterpretation) raises NotImplementedError, which the objectives and the evaluation read as
"no closed form" (a Monte Carlo KL).
"""

from __future__ import annotations

import math

from torch.distributions import (Independent, LowRankMultivariateNormal, MultivariateNormal,
                                 Normal, register_kl)


def gaussian_kl_to_diagonal(q, p: Independent):
    """KL(q || p), q a Gaussian with ``mean``, ``variance`` and ``entropy()``; p a diagonal
    Gaussian Independent(Normal(m, s), 1) over the same L dimensions (module docstring)."""
    base = p.base_dist
    if not isinstance(base, Normal) or p.reinterpreted_batch_ndims != 1:
        raise NotImplementedError
    m, s = base.loc, base.scale
    cross = (s.log() + 0.5 * math.log(2 * math.pi)
             + ((q.mean - m).pow(2) + q.variance) / (2 * s.pow(2))).sum(-1)
    return cross - q.entropy()


register_kl(MultivariateNormal, Independent)(gaussian_kl_to_diagonal)
register_kl(LowRankMultivariateNormal, Independent)(gaussian_kl_to_diagonal)
