"""Doubly reparameterized gradients (Tucker, Lawson, Gu & Maddison 2018), for any bound and
any KL weight.

The guide's gradient of a bound L(log w_1..S) has a score term, -beta sum_k d_k d/dphi
log q(z_k; phi)|_z (beta the KL weight on the latents, d_k = dL/dlog w_k the guide's
coefficients). Reparameterising it a second time, E[d_k(z) d/dphi log q(z_k)] =
E[(d d_k/d log w_k)(d log w_k/d z_k)(d z_k/d phi)], gives

    grad_phi DReG = sum_k e_k (d log w_k / d z_k)(d z_k / d phi),   e_k = d_k (1 - beta dlog_d_k)

with dlog_d_k = d log d_k / d log w_k (``bounds.py``). For IWAE e = (1 - beta) w~ + beta w~^2
(w~^2 at beta = 1, the paper's form); for the ELBO e = 1/K, where DReG is STL. Its variance
vanishes at the exact posterior, and its signal-to-noise ratio grows with K where IWAE's falls
as 1/sqrt(K). The model keeps sum_k c_k grad_theta log w_k. One forward and one backward pass:
the z-path's gradient is scaled by e_k / c_k on its way back (particles.py). A model whose
latent sites carry different KL weights (hvae's per-layer kl_weights) is refused in one line.
"""

from __future__ import annotations

from pyrovae.runtime.registry import GRADIENTS
from pyrovae.objectives.gradients.base import GradientEstimator, kl_weight, pathwise, ratio_of


@GRADIENTS.register("dreg", needs="dreg", reparameterised=True, one_kl_weight=True)
class DReG(GradientEstimator):
    """Doubly reparameterized guide gradient, the bound's model gradient."""

    def plan(self, bound):
        return "scaled", True

    def surrogate(self, bound, draw):
        beta = kl_weight("dreg", draw)
        log_w = draw.log_w.detach()
        ratio = ratio_of(bound.log_d(log_w), bound.log_c(log_w)) * (1 - beta * bound.dlog_d(log_w))
        return pathwise(bound, draw, ratio)
