"""VIMCO (Mnih & Rezende 2016): score-function gradients of the IWAE bound with per-sample
baselines, for guide sites that are sampled, not reparameterised.

With L = log (1/K) sum_k w_k and L_{-k} the same bound with w_k replaced by the geometric mean
of the others, exp((1/(K-1)) sum_{j != k} log w_j), a non-reparameterised site y_k adds

    sum_k (L - L_{-k}) grad_phi log q(y_k | x)

to the pathwise gradient sum_k w~_k grad log w_k. L_{-k} does not depend on draw k, so the
estimator is unbiased; the learning signal of each draw is its own contribution to the bound.
"""

from __future__ import annotations

import math

import torch

from pyrovae.runtime.registry import GRADIENTS
from pyrovae.objectives.gradients.base import GradientEstimator, with_score_terms


@GRADIENTS.register("vimco", needs="vimco", reparameterised=False, min_particles=2,
                    sampled_sites=True)
class VIMCO(GradientEstimator):
    """IWAE's pathwise gradient plus per-draw baselined score terms."""

    def surrogate(self, bound, draw):
        def signal(lw):
            k = lw.shape[0]
            geo = (lw.sum(0, keepdim=True) - lw) / (k - 1)      # log geometric mean of the others
            eye = torch.eye(k, dtype=torch.bool, device=lw.device)
            swapped = torch.where(eye[:, :, None], geo[None], lw[None])  # [k (left out), k, B]
            left_out = torch.logsumexp(swapped, dim=1) - math.log(k)     # L_{-k}  [k, B]
            return torch.logsumexp(lw, dim=0) - math.log(k) - left_out  # L - L_{-k}
        return with_score_terms(bound, draw, signal)
