"""Doubly reparameterized gradients (Tucker, Lawson, Gu & Maddison 2018).

For IWAE the guide's gradient sum_k w~_k grad_phi log w_k equals in expectation

    grad_phi DReG = sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi)

(the score term reparameterised a second time), whose variance vanishes at the exact posterior
and whose signal-to-noise ratio grows with K, where IWAE's falls as 1/sqrt(K). The bound gives
the coefficients e_k (``log_e``: IWAE w~^2, MIWAE per group, CIWAE b/K + (1-b) w~^2, the ELBO 1/K,
where DReG is STL); the model keeps sum_k c_k grad_theta log w_k. One forward and one backward
pass: the z-path's gradient is scaled by e_k / c_k on its way back (particles.py).
"""

from __future__ import annotations

from ...registry import GRADIENTS
from .base import GradientEstimator, pathwise


@GRADIENTS.register("dreg", needs="dreg", reparameterised=True)
class DReG(GradientEstimator):
    """Doubly reparameterized guide gradient, the bound's model gradient."""


    def plan(self, bound):
        return "scaled", True

    def surrogate(self, bound, draw):
        return pathwise(bound, draw, bound.log_e(draw.log_w))
