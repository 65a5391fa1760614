"""The plain reparameterization gradient of a bound (Kingma & Welling 2014; Burda et al. 2015).

With z_k = g(eps_k; phi) and L = f(log w_1, ..., log w_S)::

    grad L = sum_k c_k grad log w_k(z_k(phi), phi),   c_k = dL / dlog w_k

which is what back-propagating the bound itself gives. It keeps the score term
-c_k d/dphi log q(z; phi)|_z, zero in expectation but not per draw: at the exact posterior the
guide's gradient is pure noise (Roeder et al. 2017). PIWAE, whose guide follows another target
(coefficients d), is back-propagated as sum c_k log w_k with the z-path scaled by d/c and the
parameter path corrected by -(d - c) log q(z fixed).
"""

from __future__ import annotations

from pyrovae.runtime.registry import GRADIENTS
from pyrovae.objectives.gradients.base import GradientEstimator, ratio_of, set_ratio, weighted


@GRADIENTS.register("reparam", reparameterised=True)
class Reparam(GradientEstimator):
    """grad of the bound itself (module docstring)."""

    def plan(self, bound):
        return ("scaled", True) if bound.separate_targets else ("sample", False)

    def surrogate(self, bound, draw):
        if not bound.separate_targets:
            return bound.value(draw.log_w)
        log_c, log_d = bound.log_c(draw.log_w), bound.log_d(draw.log_w)
        set_ratio(draw, ratio_of(log_d, log_c))
        extra = (log_d.exp() - log_c.exp()).detach()
        return weighted(log_c, draw.log_w) - (extra * draw.log_q_fixed).sum(0)
