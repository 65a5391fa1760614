"""Score-function (REINFORCE) gradients for guide sites that are sampled, not reparameterised
(a discrete y ~ q(y|x) that is not enumerated): the ELBO with a leave-one-out baseline.

For the ELBO with K >= 2 draws per point, a non-reparameterised site y_k adds

    (1/K) sum_k (log w_k - b_k) grad_phi log q(y_k | x),   b_k = (1/(K-1)) sum_{j != k} log w_j

to the pathwise gradient of the reparameterised sites. b_k does not depend on draw k, so the
estimator stays unbiased (Kool et al. 2019's leave-one-out baseline); no state is kept between
steps, so a resumed run continues bit for bit.
"""

from __future__ import annotations

from pyrovae.runtime.registry import GRADIENTS
from pyrovae.objectives.gradients.base import GradientEstimator, with_score_terms


@GRADIENTS.register("score", needs="score", reparameterised=False, min_particles=2,
                    sampled_sites=True)
class Score(GradientEstimator):
    """Pathwise where reparameterised, leave-one-out REINFORCE elsewhere."""

    def surrogate(self, bound, draw):
        def signal(lw):
            k = lw.shape[0]
            baseline = (lw.sum(0, keepdim=True) - lw) / (k - 1)
            return (lw - baseline) / k
        return with_score_terms(bound, draw, signal)
