"""Reweighted wake-sleep (Bornschein & Bengio 2015), per data point on minibatches.

With S draws z_k ~ q(z|x) and self-normalised weights w~_k::

    wake-theta   grad_theta = sum_k w~_k grad_theta log p(x, z_k)      (IWAE's model gradient)
    wake-phi     grad_phi   = sum_k w~_k grad_phi log q(z_k | x)        (z held fixed)

wake-phi follows KL(p(z|x) || q(z|x)) instead of the bound, so it needs neither reparameterised
nor continuous latents. ``rws-dreg`` replaces wake-phi by its doubly reparameterized form
(Tucker et al. 2018), with the same expectation and less variance::

    grad_phi = sum_k (w~_k - w~_k^2) (d log w_k / d z_k)(d z_k / d phi)

The reported value is the IWAE bound. (Pyro's ``ReweightedWakeSleep`` takes no minibatch
scaling per point; here the data plate's N/B multiplies each point's terms.)
"""

from __future__ import annotations

import torch

from ...registry import GRADIENTS
from .base import GradientEstimator, pathwise, weighted


@GRADIENTS.register("rws", needs="rws", reparameterised=False)
class RWS(GradientEstimator):
    """wake-theta and wake-phi in one backward pass (values detached)."""


    def plan(self, bound):
        return "detach", False

    def surrogate(self, bound, draw):
        log_w = draw.log_w.detach()
        log_wn = log_w - torch.logsumexp(log_w, dim=0)
        return weighted(bound.log_c(log_w), draw.log_p) + weighted(log_wn, draw.log_q)


@GRADIENTS.register("rws-dreg", needs="rws", reparameterised=True)
class RWSDReG(GradientEstimator):
    """wake-theta, and wake-phi doubly reparameterized."""


    def plan(self, bound):
        return "scaled", True

    def surrogate(self, bound, draw):
        log_wn = draw.log_w.detach() - torch.logsumexp(draw.log_w.detach(), dim=0)
        log_guide = log_wn + torch.log1p(-log_wn.exp().clamp(max=1.0))
        return pathwise(bound, draw, log_guide)
