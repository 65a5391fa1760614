"""Decoder likelihoods p(x|z).

A likelihood turns the decoder's output for each data point into a distribution over the
flattened data vector x of size D (one event, ``.to_event(1)``)::

    decoder(z): [..., B, L] -> out: [..., B, K * D]        K = params_per_pixel
    likelihood(out): distribution with batch shape [..., B] and event shape [D]

``out`` is laid out K-major: ``out[..., k*D:(k+1)*D]`` is parameter k of every pixel (for
K = 2: the means, then the scales). ``mean(out)`` is E[x|z] [..., D] (used for pictures and
reconstructions); ``check(x, what)`` raises a one-line :class:`DataError` naming the problem and
the fix when the data lie outside the likelihood's support.

    name                   K  log p(x|z) per pixel                              data
    bernoulli              1  x l - softplus(l)                                 {0, 1}
    continuous-bernoulli   1  x l - log((e^l - 1) / l)                          [0, 1]
    gaussian               1  log N(x; mu, sigma^2), sigma = model.sigma        any real
    gaussian-learned       1  log N(x; mu, s_d^2), s_d learned per pixel        any real
      (variance="decoder") 2  log N(x; mu, s^2), s = softplus(raw) from decoder
    laplace                1  -|x - mu| / b - log(2 b), b = model.sigma         any real
    discretized-logistic   2  log [F((x - mu + h)/s) - F((x - mu - h)/s)]       {0, 1/255, .., 1}

Likelihoods are modules, so learned parameters (``gaussian-learned`` with per-pixel
variance) are registered, optimised and moved by ``.to(device)`` with the rest of the VAE.
``docs/likelihoods.md`` has the math and the data each one needs.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import nn
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all
from torch.nn import functional as F

from .errors import ConfigError, DataError

MIN_SCALE = 1e-3        # floor on a learned Gaussian standard deviation (see GaussianLearned...)
LOG_SCALE_MIN = -8.0    # floor on the discretized logistic's log-scale (see DiscretizedLogistic)
LEVELS = 255            # 8-bit data: x in {0, 1/255, ..., 255/255}
_GRID_TOL = 1e-3        # |255 x - round(255 x)| above this is off the 8-bit grid


def _range(x: torch.Tensor) -> str:
    return f"[{x.min().item():g}, {x.max().item():g}]"


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
        return (value >= 0) & (value <= 1) & ((k - k.round()).abs() < _GRID_TOL)

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


class Likelihood(nn.Module):
    """Base class: the family of p(x|z) and what data it accepts.

    ``likelihood(out)`` (``forward``) gives the distribution of x [..., D] given the decoder's
    output ``out`` [..., K*D], with batch shape out.shape[:-1] and event shape [D].
    """

    name = ""
    params_per_pixel = 1

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The K per-pixel parameters of ``out`` [..., K*D], each [..., D] (K-major layout)."""
        if self.params_per_pixel == 1:
            return (out,)
        return out.chunk(self.params_per_pixel, dim=-1)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check(self, x: torch.Tensor, what: str = "data") -> None:
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=1).sum())
            raise DataError(f"{what} has NaN or inf values in {bad} examples; clean or drop "
                            f"those rows")

    def extra_repr(self) -> str:
        return f"name={self.name!r}, params_per_pixel={self.params_per_pixel}"


class BernoulliLikelihood(Likelihood):
    """x_d ~ Bernoulli(sigmoid(out_d)), parameterised by logits for numerical stability.

    log p(x|z) = sum_d x_d * out_d - softplus(out_d). Needs binary data x in {0, 1}.
    """

    name = "bernoulli"

    def forward(self, out):
        return dist.Bernoulli(logits=out, validate_args=False).to_event(1)

    def mean(self, out):
        return torch.sigmoid(out)

    def check(self, x, what="data"):
        super().check(x, what)
        if ((x != 0) & (x != 1)).any():
            lo, hi = x.min().item(), x.max().item()
            if 0 <= lo and hi <= 1:
                hint = ("set binarize = \"dynamic\" or \"static\" in [data], or use likelihood "
                        "= \"continuous-bernoulli\" or \"gaussian\" for grey levels")
            else:
                hint = ("rescale the data to [0, 1] and binarize them, or use likelihood = "
                        "\"gaussian\"")
            raise DataError(f"{what} has values in [{lo:g}, {hi:g}] but the bernoulli "
                            f"likelihood needs binary values 0/1: {hint}")


class ContinuousBernoulliLikelihood(Likelihood):
    """x_d ~ ContinuousBernoulli(logits=out_d): the Bernoulli form with its normaliser, a
    proper density for grey levels in [0, 1] (Loaiza-Ganem & Cunningham 2019).

    log p(x|z) = sum_d x_d out_d - log((exp(out_d) - 1) / out_d). E[x|z] is the continuous
    Bernoulli's mean 1/(1 - e^-l) - 1/l, not sigmoid(l). Computed stably from the logits
    (see :class:`ContinuousBernoulli`).
    """

    name = "continuous-bernoulli"

    def forward(self, out):
        return ContinuousBernoulli(logits=out, validate_args=False).to_event(1)

    def mean(self, out):
        return cb_mean(out)

    def check(self, x, what="data"):
        super().check(x, what)
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise DataError(f"{what} has values in {_range(x)} but the continuous-bernoulli "
                            f"likelihood needs values in [0, 1]: rescale the data to [0, 1] "
                            f"(e.g. divide by 255), or use likelihood = \"gaussian\"")


class GaussianLikelihood(Likelihood):
    """x_d ~ Normal(out_d, sigma^2) with a fixed sigma.

    log p(x|z) = -D/2 log(2 pi sigma^2) - ||x - out||^2 / (2 sigma^2). Accepts any real data.
    """

    name = "gaussian"

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, out):
        return dist.Normal(out, self.sigma, validate_args=False).to_event(1)

    def mean(self, out):
        return out

    def extra_repr(self):
        return f"{super().extra_repr()}, sigma={self.sigma:g}"


class GaussianLearnedLikelihood(Likelihood):
    """x_d ~ Normal(mu_d, s_d^2) with a learned standard deviation s_d.

    ``variance = "pixel"``: one learned s_d per pixel, shared by all data points; the module
    owns ``log_scale`` [D] and s = min_scale + exp(log_scale). The decoder outputs mu [.., D].
    ``variance = "decoder"``: the decoder outputs mu and a raw scale r per pixel [..., 2D]
    (K-major: means first) and s = min_scale + softplus(r + c), so each point gets its own s.

    Both start at s = ``init_scale`` (model.sigma, 0.1 by default: the fixed-sigma gaussian
    model, a typical residual for data in [0, 1]; for "pixel", Adam moves log s by about lr per
    step, so a start at s = 1 would need ~700 steps at lr 3e-3 just to reach 0.1), with
    c = softplus^-1(init_scale - min_scale) so a raw output of 0 means init_scale.

    The floor ``min_scale`` (1e-3) matters: a Gaussian whose variance is learned has an
    unbounded density, so a pixel the decoder can predict exactly (an always-black border
    pixel, or one grey level the data sit on) lets s -> 0 and log p(x|z) -> +inf; the ELBO is
    then dominated by (and training collapses onto) those few pixels. With the floor each
    pixel contributes at most -log(min_scale) - log(2 pi)/2 = 5.99 nats.
    """

    name = "gaussian-learned"

    def __init__(self, input_dim: int, variance: str = "pixel", init_scale: float = 0.1,
                 min_scale: float = MIN_SCALE):
        super().__init__()
        if variance not in ("pixel", "decoder"):
            raise ConfigError(f"model.variance = {variance!r} is not one of: pixel, decoder")
        if not init_scale > min_scale:
            raise ConfigError(f"model.sigma = {init_scale:g} (the starting scale of "
                              f"gaussian-learned) must be above the floor {min_scale:g}; raise it")
        self.variance = variance
        self.min_scale = float(min_scale)
        self.init_scale = float(init_scale)
        self.params_per_pixel = 2 if variance == "decoder" else 1
        start = init_scale - min_scale
        if variance == "pixel":
            self.log_scale = nn.Parameter(torch.full((input_dim,), math.log(start)))
        else:
            self.raw_offset = math.log(math.expm1(start))  # softplus^-1

    def loc_scale(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu [..., D], s [..., D] or [D] for "pixel")."""
        if self.variance == "pixel":
            return out, self.min_scale + self.log_scale.exp()
        loc, raw = self.split(out)
        return loc, self.min_scale + F.softplus(raw + self.raw_offset)

    def forward(self, out):
        loc, scale = self.loc_scale(out)
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def mean(self, out):
        return self.split(out)[0]

    def scale(self, out: torch.Tensor) -> torch.Tensor:
        """The standard deviation s of every pixel, [..., D]."""
        loc, scale = self.loc_scale(out)
        return scale.expand_as(loc)

    def extra_repr(self):
        return (f"{super().extra_repr()}, variance={self.variance!r}, "
                f"init_scale={self.init_scale:g}, min_scale={self.min_scale:g}")


class LaplaceLikelihood(Likelihood):
    """x_d ~ Laplace(out_d, b) with a fixed scale b (an L1 reconstruction loss).

    log p(x|z) = -D log(2 b) - ||x - out||_1 / b. Accepts any real data.
    """

    name = "laplace"

    def __init__(self, scale: float):
        super().__init__()
        self.b = float(scale)

    def forward(self, out):
        return dist.Laplace(out, self.b, validate_args=False).to_event(1)

    def mean(self, out):
        return out

    def extra_repr(self):
        return f"{super().extra_repr()}, b={self.b:g}"


class DiscretizedLogisticLikelihood(Likelihood):
    """x_d ~ DiscretizedLogistic(mu_d, log s_d) on the 8-bit grid {0, 1/255, ..., 1}.

    The decoder outputs [..., 2D] (K-major): mu = the raw first half (no squashing, as in
    PixelCNN++: a mu outside [0, 1] is meaningful, it puts the mass into the edge bin 0 or 1,
    which is how a confident black or white pixel is expressed), and log s = the second half,
    floored at LOG_SCALE_MIN = -8 (s >= 3.4e-4, a fifth of a half-bin, so one bin can still
    hold > 99% of the mass, while 1/s stays <= 3000; PixelCNN++ floors at -7 on data in
    [-1, 1], whose bins are twice as wide). A raw output of 0 means s = 1.

    log p(x|z) = sum_d log P(x_d) (see :class:`DiscretizedLogistic`); a probability, so it is
    at most 0 and cannot collapse like a learned-variance density. Needs 8-bit data: uint8
    images divided by 255, binarize = "none".
    """

    name = "discretized-logistic"
    params_per_pixel = 2

    def loc_log_scale(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.split(out)
        return loc, raw.clamp(min=LOG_SCALE_MIN)

    def forward(self, out):
        loc, log_scale = self.loc_log_scale(out)
        return DiscretizedLogistic(loc, log_scale, validate_args=False).to_event(1)

    def mean(self, out):
        return DiscretizedLogistic(*self.loc_log_scale(out), validate_args=False).mean

    def check(self, x, what="data"):
        super().check(x, what)
        if not x.numel():
            return
        fix = ("load 8-bit images as uint8 (pyrovae divides them by 255) with binarize = "
               "\"none\", or use likelihood = \"continuous-bernoulli\" or \"gaussian\"")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{what} has values in {_range(x)} but the discretized-logistic "
                            f"likelihood needs 8-bit pixel values k/255 in [0, 1]: {fix}")
        k = x * LEVELS
        off = (k - k.round()).abs() > _GRID_TOL
        if off.any():
            example = x[off][0].item()
            raise DataError(f"{what} has values off the 8-bit grid k/255 (e.g. {example:.6g}) "
                            f"but the discretized-logistic likelihood needs 8-bit pixel values: "
                            f"{fix}")


def make_likelihood(config, input_dim: int) -> Likelihood:
    """The likelihood named by ``config.likelihood`` (a VAEConfig) for data of size D."""
    name = config.likelihood
    if name == "bernoulli":
        return BernoulliLikelihood()
    if name == "continuous-bernoulli":
        return ContinuousBernoulliLikelihood()
    if name == "gaussian":
        return GaussianLikelihood(config.sigma)
    if name == "gaussian-learned":
        return GaussianLearnedLikelihood(input_dim, config.variance, init_scale=config.sigma)
    if name == "laplace":
        return LaplaceLikelihood(config.sigma)
    if name == "discretized-logistic":
        return DiscretizedLogisticLikelihood()
    raise ValueError(f"unknown likelihood {name!r}")
