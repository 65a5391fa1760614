"""The beta-binomial likelihood of 8-bit images (BB-ANS's choice for 8-bit MNIST, Townsend et
al. 2019): each pixel's count k = 255 x is BetaBinomial(n = 255, a, b).

    P(k) = C(n, k) B(k + a, n - k + b) / B(a, b),     k = 0..n,  a, b > 0
    log P(k) = lgamma(n+1) - lgamma(k+1) - lgamma(n-k+1)
               + lgamma(k+a) + lgamma(n-k+b) - lgamma(n+a+b) - lgamma(a) - lgamma(b) + lgamma(a+b)

Unlike one discretized logistic, it can be U-shaped (a, b < 1): a pixel that is either black
or white, the commonest uncertainty on MNIST's strokes, costs one bit, not the spread of a
logistic over 256 bins. The decoder outputs [..., 2D] (K-major): a = softplus(first half) +
MIN_CONCENTRATION, b = softplus(second half) + MIN_CONCENTRATION. Mean: a / (a + b) (of x =
k / 255). Batch shape: the broadcast shape of a and b; event shape [] (``.to_event(1)`` over
the D pixels in the likelihood).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all
from torch.nn import functional as F

from pyrovae.components.distributions import LEVELS, eight_bit_grid
from pyrovae.components.likelihoods import Likelihood, check_eight_bit
from pyrovae.runtime.registry import LIKELIHOODS

MIN_CONCENTRATION = 1e-4   # floor on a and b: lgamma(a) stays finite, P(k) >= ~1e-4 * ...
LOG_N_FACTORIAL = math.lgamma(LEVELS + 1)


class BetaBinomialPixels(TorchDistribution):
    """BetaBinomial(255, a, b) over x = k / 255 (the 8-bit grid in [0, 1]); ``log_prob`` of x
    [...] snaps x to its bin k = round(255 x). Exact: the 256 probabilities sum to 1."""

    arg_constraints = {"concentration1": constraints.positive,
                       "concentration0": constraints.positive}
    support = eight_bit_grid
    has_enumerate_support = True

    def __init__(self, concentration1, concentration0, validate_args=None):
        self.concentration1, self.concentration0 = broadcast_all(concentration1, concentration0)
        super().__init__(self.concentration1.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BetaBinomialPixels, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration1 = self.concentration1.expand(batch_shape)
        new.concentration0 = self.concentration0.expand(batch_shape)
        super(BetaBinomialPixels, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration1, self.concentration0
        k = (value * LEVELS).round()
        rest = LEVELS - k
        return (LOG_N_FACTORIAL - torch.lgamma(k + 1) - torch.lgamma(rest + 1)
                + torch.lgamma(k + a) + torch.lgamma(rest + b) - torch.lgamma(LEVELS + a + b)
                - torch.lgamma(a) - torch.lgamma(b) + torch.lgamma(a + b))

    @property
    def mean(self):
        return self.concentration1 / (self.concentration1 + self.concentration0)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            p = dist.Beta(self.concentration1.expand(shape), self.concentration0.expand(shape)).sample()
            return torch.distributions.Binomial(LEVELS, probs=p).sample() / LEVELS

    def enumerate_support(self, expand=True):
        a = self.concentration1
        values = torch.arange(LEVELS + 1, dtype=a.dtype, device=a.device) / LEVELS
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values


@LIKELIHOODS.register("beta-binomial", discrete=True)
class BetaBinomialLikelihood(Likelihood):
    """x_d ~ BetaBinomial(255, a_d, b_d) / 255 on the 8-bit grid; see the module docstring.

    log p(x|z) = sum_d log P(255 x_d); a probability (at most 0), reported in bits per
    dimension like the discretized logistic. Needs 8-bit data: uint8 images divided by 255,
    binarize = "none".
    """

    name = "beta-binomial"
    params_per_pixel = 2

    def concentrations(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b), each [..., D], from the decoder's out [..., 2D]."""
        raw_a, raw_b = self.split(out)
        return F.softplus(raw_a) + MIN_CONCENTRATION, F.softplus(raw_b) + MIN_CONCENTRATION

    def forward(self, out):
        return BetaBinomialPixels(*self.concentrations(out), validate_args=False).to_event(1)

    def mean(self, out):
        return BetaBinomialPixels(*self.concentrations(out), validate_args=False).mean

    def check(self, x, what="data"):
        super().check(x, what)
        check_eight_bit(x, what, self.name)
