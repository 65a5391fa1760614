"""Sticking the landing (Roeder et al. 2017): the reparameterization gradient without the score
term.

    grad_phi STL = sum_k d_k (d log w_k / d z_k)(d z_k / d phi)

i.e. log q is differentiated through z only, its parameter path d/dphi log q(z; phi)|_z dropped
(added back with the opposite sign as c_k log q(z fixed; phi)). The model's gradient is the
bound's. At the exact posterior log w_k = log p(x) for every z, so the guide's STL gradient is
exactly zero for every draw. The dropped term, -beta sum_k d_k d/dphi log q(z_k; phi)|_z, has
mean zero when the coefficients d_k do not depend on z: for the ELBO (any K, any KL weight
beta) and for every other bound at K = 1. For IWAE and the other multi-sample bounds at K > 1
it is biased (Tucker et al. 2018), which DReG corrects: those pairs are refused unless
``objective.biased = true`` asks for the biased estimator by name (to study it).
"""

from __future__ import annotations

from pyrovae.runtime.registry import GRADIENTS
from pyrovae.objectives.gradients.base import GradientEstimator, pathwise, ratio_of, weighted


@GRADIENTS.register("stl", needs="stl", reparameterised=True, exact_at_one_particle=True,
                    may_be_biased=True)
class STL(GradientEstimator):
    """The bound's gradient with log q's parameter path dropped."""

    def plan(self, bound):
        return ("scaled" if bound.separate_targets else "sample"), True

    def surrogate(self, bound, draw):
        if bound.separate_targets:
            return pathwise(bound, draw, ratio_of(bound.log_d(draw.log_w),
                                                  bound.log_c(draw.log_w)))
        return bound.value(draw.log_w) + weighted(bound.log_c(draw.log_w), draw.log_q_fixed)
