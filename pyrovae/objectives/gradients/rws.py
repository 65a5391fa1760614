"""Reweighted wake-sleep (Bornschein & Bengio 2015), per data point on minibatches.

With S draws z_k ~ q(z|x) and self-normalised weights w~_k::

    wake-theta   grad_theta = sum_k w~_k grad_theta log p(x, z_k)      (IWAE's model gradient)
    wake-phi     grad_phi   = sum_k w~_k grad_phi log q(z_k | x)        (z held fixed)

wake-phi follows KL(p(z|x) || q(z|x)) instead of the bound, so it needs neither reparameterised
nor continuous latents. ``rws-dreg`` replaces wake-phi by its doubly reparameterized form
(Tucker et al. 2018), with the same expectation and less variance::

    grad_phi = sum_k (w~_k - w~_k^2) (d log w_k / d z_k)(d z_k / d phi)

With a KL weight beta on the latents, log w_k = log p(x|z_k) + beta (log p(z_k) - log q(z_k|x))
and w~ self-normalises the tempered target pi(z) ~ p(x|z) p(z)^beta q(z|x)^(1-beta): wake-phi
is sum_k w~_k grad_phi log q(z_k | x) with log q itself, not beta log q (the gradient of
-KL(pi || q) at fixed pi), and both forms above estimate that same vector for every beta.

The reported value is the IWAE bound. (Pyro's ``ReweightedWakeSleep`` takes no minibatch
scaling per point; here the data plate's N/B multiplies each point's terms.)
"""

from __future__ import annotations

import torch

from pyrovae.runtime.registry import GRADIENTS
from pyrovae.objectives.gradients.base import GradientEstimator, pathwise, ratio_of, weighted


@GRADIENTS.register("rws", needs="rws", reparameterised=False, target="wake")
class RWS(GradientEstimator):
    """wake-theta and wake-phi in one backward pass (values detached)."""


    def plan(self, bound):
        return "detach", False

    def surrogate(self, bound, draw):
        log_w = draw.log_w.detach()
        log_wn = log_w - torch.logsumexp(log_w, dim=0)
        return weighted(bound.log_c(log_w), draw.log_p) + weighted(log_wn, draw.log_q_raw)


@GRADIENTS.register("rws-dreg", needs="rws", reparameterised=True, target="wake")
class RWSDReG(GradientEstimator):
    """wake-theta, and wake-phi doubly reparameterized."""


    def plan(self, bound):
        return "scaled", True

    def surrogate(self, bound, draw):
        log_w = draw.log_w.detach()
        log_wn = log_w - torch.logsumexp(log_w, dim=0)
        log_guide = log_wn + torch.log1p(-log_wn.exp().clamp(max=1.0))    # w~ - w~^2
        return pathwise(bound, draw, ratio_of(log_guide, bound.log_c(log_w)))
