"""Distributions the likelihoods need beyond torch's: a numerically stable continuous
Bernoulli, the discretized logistic of 8-bit images (PixelCNN++/IAF, one component), and
the Bernoulli image whose log-density is summed over the pixels in two passes.

The first two are Pyro ``TorchDistribution``s over single values (batch shape = parameter
shape); the likelihoods in ``likelihoods.py`` make them events over the D pixels with
``.to_event(1)``. :class:`BernoulliImage` is already that event.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all
from torch.nn import functional as F

LOG_SCALE_MIN = -8.0    # floor on the discretized logistic's log-scale (see DiscretizedLogistic)
LEVELS = 255            # 8-bit data: x in {0, 1/255, ..., 255/255}
GRID_TOL = 1e-3         # |255 x - round(255 x)| above this is off the 8-bit grid


# ---- the Bernoulli image: one event of D pixels -----------------------------------------


#: problems of at most this many entries (2M) of [..., D] take torch's per-pixel log_prob, bit for
#: bit (training steps, the digits fixtures of tests/runs: their numbers stay exactly 0.1.0's)
DIRECT_ENTRIES = 2 ** 21


def bernoulli_log_prob(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """sum_d x_d l_d - softplus(l_d) = sum_d (x_d - 1) l_d - softplus(-l_d): logits [..., D],
    value broadcasting against them -> [...]. One softplus pass over l and one contraction with
    (x - 1); free of cancellation except where log p underflows to 0."""
    # softplus with beta = -1 is -softplus(-l) in one pass; its linear regime (l < -50)
    # drops log1p(e^l) < 2e-22, below float64's resolution of l (torch's default of 20
    # would drop up to 2e-9 per pixel)
    return (F.softplus(logits, beta=-1, threshold=50.0).sum(-1)
            + torch.einsum("...d,...d->...", logits, value - 1))


class BernoulliImage(dist.Independent):
    """prod_d Bernoulli(x_d | sigmoid(l_d)) over the last dimension: the same distribution as
    ``Bernoulli(logits=l).to_event(1)`` (sampling, mean, enumeration, expand are the base's),
    with the log-density of :func:`bernoulli_log_prob` once l and x span more than
    :data:`DIRECT_ENTRIES` entries. That is about half the time of torch's per-pixel binary
    cross-entropy and sum (its 1 - x, log-sigmoid buffer and negation are each a pass over
    [..., D]), and all of the difference counts in importance sampling, where l is [K, B, D]
    and this sum costs about what the decoder's last layer does (docs/performance.md). Equal
    to torch's value to float rounding (tests/components/test_likelihoods.py).
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.base_dist.logits
        if (self.reinterpreted_batch_ndims != 1 or self._validate_args
                or max(logits.numel(), value.numel()) <= DIRECT_ENTRIES):
            return super().log_prob(value)
        return bernoulli_log_prob(logits, value)


def bernoulli_image(logits: torch.Tensor) -> BernoulliImage:
    """D binary pixels with logits [..., D] as one event (batch shape [...])."""
    return BernoulliImage(dist.Bernoulli(logits=logits, validate_args=False), 1,
                          validate_args=False)


# ---- continuous Bernoulli, computed from the logits ----------------------------------------
#
# CB(x | l) = exp(l x) / Z(l) on [0, 1] with Z(l) = (e^l - 1) / l (Z(0) = 1). torch's
# ContinuousBernoulli evaluates the normaliser from probs = clamp_probs(sigmoid(l)), which is
# stuck at 1 - 1.2e-7 for |l| > ~16 in float32: its density then integrates to 0.80 at l = 20
# and 0.32 at l = 50, and its mean stays at 0.937 (the clamp is the cause named in
# pytorch/pytorch#72525). A decoder reaches such logits easily on the constant background of
# images, so the functions below work with l directly, using
#     log Z(l) = max(l, 0) + g(|l|),   g(t) = log((1 - e^-t) / t)   (Z(l) = e^l Z(-l)),
# and Taylor series in l near l = 0, where log Z has a removable singularity.

_CB_TAYLOR = 0.1  # |l| below this uses the Taylor series (error < 1e-10)


def _cb_small(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(|l|, whether |l| is in the Taylor region, |l| with that region replaced by 1)."""
    t = logits.abs()
    small = t < _CB_TAYLOR
    return t, small, torch.where(small, torch.ones_like(t), t)


def cb_log_normalizer(logits: torch.Tensor) -> torch.Tensor:
    """log Z(l) = log((e^l - 1) / l) of the continuous Bernoulli, stable for every l.

    Away from 0: max(l, 0) + log(1 - e^-|l|) - log|l|; near 0 its Taylor series in l (a
    polynomial in l itself, so the gradient at l = 0 is the true 1/2)."""
    _, small, safe = _cb_small(logits)
    direct = F.relu(logits) + torch.log(-torch.expm1(-safe)) - torch.log(safe)
    l2 = logits * logits
    taylor = 0.5 * logits + l2 / 24 - l2 * l2 / 2880 + l2 * l2 * l2 / 181440
    return torch.where(small, taylor, direct)


def cb_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] = d log Z / dl = 1 / (1 - e^-l) - 1 / l (1/2 at l = 0, slope 1/12 there)."""
    _, small, safe = _cb_small(logits)
    m = 1 / -torch.expm1(-safe) - 1 / safe   # the mean for |l|; CB(-l) is CB(l) mirrored
    direct = torch.where(logits >= 0, m, 1 - m)
    l2 = logits * logits
    taylor = 0.5 + logits * (1 / 12 - l2 / 720 + l2 * l2 / 30240)
    return torch.where(small, taylor, direct)


def cb_variance(logits: torch.Tensor) -> torch.Tensor:
    """Var[x] = d^2 log Z / dl^2 = 1 / l^2 - 1 / (4 sinh^2(l / 2)) (1/12 at l = 0)."""
    t = logits.abs()
    small = t < 1.0  # the direct form cancels badly for small t
    safe = torch.where(small, torch.ones_like(t), t)
    direct = 1 / safe ** 2 - 0.25 / torch.sinh(0.5 * safe) ** 2
    t2 = t * t
    taylor = 1 / 12 - t2 / 240 + t2 * t2 / 6048 - t2 * t2 * t2 / 172800
    return torch.where(small, taylor, direct)


class ContinuousBernoulli(dist.ContinuousBernoulli):
    """Pyro's (torch's) continuous Bernoulli with log_prob, mean, variance, cdf, icdf (so
    sample and rsample) and entropy computed from the logits, stable for any logit.

    Loaiza-Ganem & Cunningham (2019): the Bernoulli log-likelihood applied to grey levels x in
    [0, 1] is not a density; adding the normaliser makes it one:
    log p(x) = l x - log((e^l - 1) / l). Its mean is *not* sigmoid(l).
    """

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return self.logits * value - cb_log_normalizer(self.logits)

    def _cont_bern_log_norm(self):  # log C(lambda) in torch's form log p = -BCE(l, x) + log C
        return F.softplus(self.logits) - cb_log_normalizer(self.logits)

    def _log_normalizer(self, x):
        return cb_log_normalizer(x)

    @property
    def mean(self):
        return cb_mean(self.logits)

    @property
    def variance(self):
        return cb_variance(self.logits)

    def entropy(self):
        return cb_log_normalizer(self.logits) - self.logits * self.mean

    def cdf(self, value):
        """F(x) = (e^{l x} - 1) / (e^l - 1), written for l > 0 as e^{l(x-1)} (1 - e^{-lx}) /
        (1 - e^{-l}) so nothing overflows."""
        if self._validate_args:
            self._validate_sample(value)
        lg, x = broadcast_all(self.logits, value)
        x = x.clamp(0, 1)
        t = lg.abs()
        small = t < 1e-4
        safe = torch.where(small, torch.ones_like(t), t)
        pos = torch.exp(safe * (x - 1)) * torch.expm1(-safe * x) / torch.expm1(-safe)
        neg = torch.expm1(-safe * x) / torch.expm1(-safe)
        near = x + 0.5 * lg * x * (x - 1)
        return torch.where(small, near, torch.where(lg > 0, pos, neg))

    def icdf(self, value):
        """Inverse of :meth:`cdf`: x = 1 + log1p((1 - u) expm1(-l)) / l for l > 0, and the
        mirror image 1 - x(1 - u; -l) for l < 0."""
        lg, u = broadcast_all(self.logits, value)
        t = lg.abs()
        small = t < 1e-4
        safe = torch.where(small, torch.ones_like(t), t)
        pos = 1 + torch.log1p((1 - u) * torch.expm1(-safe)) / safe
        neg = -torch.log1p(u * torch.expm1(-safe)) / safe
        near = u + 0.5 * lg * u * (1 - u)
        return torch.where(small, near, torch.where(lg > 0, pos, neg)).clamp(0, 1)


# ---- the discretized logistic ----------------------------------------------------------------


class _EightBitGrid(constraints.Constraint):
    """Values k / 255 for k = 0..255 (up to float rounding)."""

    is_discrete = True
    event_dim = 0

    def check(self, value):
        k = value * LEVELS
        return (value >= 0) & (value <= 1) & ((k - k.round()).abs() < GRID_TOL)

    def __repr__(self):
        return "EightBitGrid()"


eight_bit_grid = _EightBitGrid()


class DiscretizedLogistic(TorchDistribution):
    """A logistic distribution with location ``loc`` and scale ``exp(log_scale)`` discretised
    to the 256 values x = k / 255 in [0, 1] (one component of PixelCNN++'s mixture,
    Salimans et al. 2017; Kingma et al. 2016 use it for the IAF-VAE).

    With F the logistic CDF, s = exp(log_scale) and h = 1/510 half a bin::

        P(x) = F((x + h - loc) / s) - F((x - h - loc) / s)     0 < x < 1
        P(0) = F((h - loc) / s)                                 the lower tail goes to x = 0
        P(1) = 1 - F((1 - h - loc) / s)                         the upper tail goes to x = 1

    so the 256 probabilities sum to 1 for any loc (also outside [0, 1], which moves the mass
    into an edge bin) and scale. Everything is computed in log space: with x = k/255,
    a = ((k + 1/2)/255 - loc)/s, b = ((k - 1/2)/255 - loc)/s and t = a - b = 1/(255 s),

        log P(x) = log sigmoid(a) + log sigmoid(-b) + log(1 - exp(-t))      (middle bins)

    (an identity: sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^{b-a})), which is
    exact and finite in both tails and for bins tiny against s. PixelCNN++ instead subtracts
    the two sigmoids and, where the difference underflows, falls back to the log density times
    the bin width; that fallback is an approximation the identity does not need (tested: it
    agrees with the fallback where that is accurate, and with float64 differences elsewhere).
    The edges are computed in units of bins from k = round(255 x), as (k -+ 1/2 - 255 loc),
    so neighbouring bins share one float edge and the 256 probabilities sum to 1 within float32
    rounding even for s << 1/255 (computed from x -+ 1/510 they are off by 1e-3 at s = 6e-6,
    as the float32 rounding of x moves the edges).

    ``mean`` is the exact mean of the discretised distribution,
    E[x] = (1/255) sum_{k=1}^{255} P(x >= k/255), not loc (which may lie outside [0, 1]).
    ``sample`` draws a logistic variate by the inverse CDF, loc + s (log u - log(1 - u)),
    rounds it to the grid and clamps it to [0, 1], which is an exact draw from P.
    Batch shape: the broadcast shape of loc and log_scale; event shape [].
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    support = eight_bit_grid
    has_enumerate_support = True

    def __init__(self, loc, log_scale, validate_args=None):
        self.loc, self.log_scale = broadcast_all(loc, log_scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.log_scale = self.log_scale.expand(batch_shape)
        super(DiscretizedLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        # in units of bins: c = 255 (x - loc) with x snapped to its bin k, so the edges are
        # c -+ 1/2 exactly (no float32 rounding of x or of k/255 moves them), neighbouring bins
        # share one edge value and the probabilities telescope to 1 even for s << 1/255, and
        # the bin width in units of s is exactly t = 1 / (255 s) (a difference b - a of the
        # rounded edges would lose digits for wide scales and far-away loc)
        k = (value * LEVELS).round()
        c = k - LEVELS * self.loc
        t = torch.exp(-self.log_scale) / LEVELS
        a, b = (c + 0.5) * t, (c - 0.5) * t   # upper and lower bin edge, standardised
        log_cdf_upper = F.logsigmoid(a)       # log F(a): the whole lower tail up to the bin
        log_sf_lower = F.logsigmoid(-b)       # log (1 - F(b)): the whole upper tail from it
        middle = log_cdf_upper + log_sf_lower + torch.log(-torch.expm1(-t))
        return torch.where(k <= 0, log_cdf_upper,
                           torch.where(k >= LEVELS, log_sf_lower, middle))

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            eps = torch.finfo(self.loc.dtype).eps
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(eps, 1 - eps)
            x = self.loc.expand(shape) + self.scale.expand(shape) * (torch.log(u) - torch.log1p(-u))
            return (x * LEVELS).round().clamp(0, LEVELS) / LEVELS

    @property
    def mean(self):
        # P(x >= k/255) = 1 - F((k - 1/2)/255) = sigmoid((loc - (k - 1/2)/255) / s); summed in
        # chunks of thresholds so memory stays at 32x the batch
        # (in units of bins, as in log_prob)
        thresholds = torch.arange(1, LEVELS + 1, dtype=self.loc.dtype, device=self.loc.device) - 0.5
        centre = (LEVELS * self.loc).unsqueeze(-1)
        t = (torch.exp(-self.log_scale) / LEVELS).unsqueeze(-1)
        total = torch.zeros_like(self.loc)
        for chunk in thresholds.split(32):
            total = total + torch.sigmoid((centre - chunk) * t).sum(-1)
        return total / LEVELS

    def enumerate_support(self, expand=True):
        values = torch.arange(LEVELS + 1, dtype=self.loc.dtype, device=self.loc.device) / LEVELS
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values


# ---- the likelihoods -------------------------------------------------------------------------
