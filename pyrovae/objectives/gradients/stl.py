"""Sticking the landing (Roeder et al. 2017): the reparameterization gradient without the score
term.

    grad_phi STL = sum_k d_k (d log w_k / d z_k)(d z_k / d phi)

i.e. log q is differentiated through z only, its parameter path d/dphi log q(z; phi)|_z dropped
(added back with the opposite sign as c_k log q(z fixed; phi)). The model's gradient is the
bound's. At the exact posterior log w_k = log p(x) for every z, so the guide's STL gradient is
exactly zero for every draw. Unbiased for the ELBO; for IWAE (and the other multi-sample bounds)
it is biased (Tucker et al. 2018), which DReG corrects.
"""

from __future__ import annotations

from ...registry import GRADIENTS
from .base import GradientEstimator, pathwise, weighted


@GRADIENTS.register("stl", reparameterised=True)
class STL(GradientEstimator):
    """The bound's gradient with log q's parameter path dropped."""

    def plan(self, bound):
        return ("scaled" if bound.separate_targets else "sample"), True

    def surrogate(self, bound, draw):
        if bound.separate_targets:
            return pathwise(bound, draw, bound.log_d(draw.log_w))
        return bound.value(draw.log_w) + weighted(bound.log_c(draw.log_w), draw.log_q_fixed)
