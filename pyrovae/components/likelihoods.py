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
    beta-binomial          2  log BetaBin(255 x; 255, a, b)  (beta_binomial.py)  {0, 1/255, .., 1}

Likelihoods are modules, so learned parameters (``gaussian-learned`` with per-pixel
variance) are registered, optimised and moved by ``.to(device)`` with the rest of the VAE.
``docs/likelihoods.md`` has the math and the data each one needs. Those on discrete data
(bernoulli, discretized-logistic, beta-binomial) are registered with ``discrete=True``: their
log p(x|z) is a log probability, so their bounds are also reported in bits per dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.components.distributions import (LEVELS, LOG_SCALE_MIN, ContinuousBernoulli,  # noqa: F401
                            DiscretizedLogistic, GRID_TOL, bernoulli_image, cb_mean)
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.registry import LIKELIHOODS
from pyrovae.runtime.sizes import meta_count, on_meta
from pyrovae.runtime.settings import setting

MIN_SCALE = 1e-3        # floor on a learned Gaussian standard deviation (see GaussianLearned...)
VARIANCES = ("pixel", "decoder")  # gaussian-learned: one variance per pixel, or per point


@dataclass
class ScaleSettings:
    """``[model.likelihood]`` of gaussian and laplace: the fixed scale."""

    sigma: float = setting(0.1, "scale of gaussian (std) and laplace", min=0.0,
                           exclusive_min=True)


@dataclass
class LearnedScaleSettings:
    """``[model.likelihood]`` of gaussian-learned: where the scale comes from, and its start."""

    sigma: float = setting(0.1, "gaussian-learned: the starting scale", min=0.0,
                           exclusive_min=True)
    variance: str = setting("pixel", "gaussian-learned: one learned variance per pixel, or "
                            "output by the decoder", choices=VARIANCES)


def _range(x: torch.Tensor) -> str:
    return f"[{x.min().item():g}, {x.max().item():g}]"


class Likelihood(nn.Module):
    """Base class: the family of p(x|z) and what data it accepts.

    ``likelihood(out)`` (``forward``) gives the distribution of x [..., D] given the decoder's
    output ``out`` [..., K*D], with batch shape out.shape[:-1] and event shape [D].
    """

    name = ""
    params_per_pixel = 1

    @classmethod
    def build(cls, config, input_dim: int) -> Likelihood:
        """One from a model config (``sigma``, ``variance``) for data of size D; subclasses
        whose constructor takes settings override it."""
        return cls()

    @classmethod
    def parameter_count(cls, config, input_dim: int, buffers: bool = False) -> int:
        """Its own parameters (and buffers) for data of size D (gaussian-learned "pixel": D
        log-scales), counted on one built on the meta device (nothing allocated)."""
        return meta_count(lambda: cls.build(config, input_dim), buffers)

    @classmethod
    def pixel_params(cls, config) -> int:
        """K, the decoder's outputs per pixel, of the one ``config`` builds (meta device)."""
        return int(on_meta(lambda: cls.build(config, 1)).params_per_pixel)

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


@LIKELIHOODS.register("bernoulli", discrete=True)
class BernoulliLikelihood(Likelihood):
    """x_d ~ Bernoulli(sigmoid(out_d)), parameterised by logits for numerical stability.

    log p(x|z) = sum_d x_d * out_d - softplus(out_d) (:class:`BernoulliImage`, two passes over
    [..., D]). Needs binary data x in {0, 1}.
    """

    name = "bernoulli"

    def forward(self, out):
        return bernoulli_image(out)

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


@LIKELIHOODS.register("continuous-bernoulli")
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


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
    """x_d ~ Normal(out_d, sigma^2) with a fixed sigma.

    log p(x|z) = -D/2 log(2 pi sigma^2) - ||x - out||^2 / (2 sigma^2). Accepts any real data.
    """

    name = "gaussian"
    settings = ScaleSettings

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    @classmethod
    def build(cls, config, input_dim):
        return cls(config.sigma)

    def forward(self, out):
        return dist.Normal(out, self.sigma, validate_args=False).to_event(1)

    def mean(self, out):
        return out

    def extra_repr(self):
        return f"{super().extra_repr()}, sigma={self.sigma:g}"


@LIKELIHOODS.register("gaussian-learned")
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
    settings = LearnedScaleSettings

    @classmethod
    def build(cls, config, input_dim):
        return cls(input_dim, config.variance, init_scale=config.sigma)

    def __init__(self, input_dim: int, variance: str = "pixel", init_scale: float = 0.1,
                 min_scale: float = MIN_SCALE):
        super().__init__()
        if variance not in ("pixel", "decoder"):
            raise ConfigError(f"model.likelihood.variance = {variance!r} is not one of: pixel, "
                              f"decoder")
        if not init_scale > min_scale:
            raise ConfigError(f"model.likelihood.sigma = {init_scale:g} (the starting scale of "
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


@LIKELIHOODS.register("laplace")
class LaplaceLikelihood(Likelihood):
    """x_d ~ Laplace(out_d, b) with a fixed scale b (an L1 reconstruction loss).

    log p(x|z) = -D log(2 b) - ||x - out||_1 / b. Accepts any real data.
    """

    name = "laplace"
    settings = ScaleSettings

    def __init__(self, scale: float):
        super().__init__()
        self.b = float(scale)

    @classmethod
    def build(cls, config, input_dim):
        return cls(config.sigma)

    def forward(self, out):
        return dist.Laplace(out, self.b, validate_args=False).to_event(1)

    def mean(self, out):
        return out

    def extra_repr(self):
        return f"{super().extra_repr()}, b={self.b:g}"


@LIKELIHOODS.register("discretized-logistic", discrete=True)
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
        check_eight_bit(x, what, self.name)


def check_eight_bit(x: torch.Tensor, what: str, name: str) -> None:
    """Refuse data off the 8-bit grid {0, 1/255, ..., 1} in one line (the likelihoods of
    8-bit images: discretized-logistic, beta-binomial)."""
    if not x.numel():
        return
    fix = ("load 8-bit images as uint8 (pyrovae divides them by 255) with binarize = "
           "\"none\", or use likelihood = \"continuous-bernoulli\" or \"gaussian\"")
    if x.min() < 0 or x.max() > 1:
        raise DataError(f"{what} has values in {_range(x)} but the {name} likelihood needs "
                        f"8-bit pixel values k/255 in [0, 1]: {fix}")
    k = x * LEVELS
    off = (k - k.round()).abs() > GRID_TOL
    if off.any():
        example = x[off][0].item()
        raise DataError(f"{what} has values off the 8-bit grid k/255 (e.g. {example:.6g}) "
                        f"but the {name} likelihood needs 8-bit pixel values: {fix}")


def make_likelihood(config, input_dim: int) -> Likelihood:
    """The likelihood ``config.likelihood`` chooses (a model config's LikelihoodConfig: the
    name and its settings) for data of size D (kept as ``data_dim``: the D of bits per
    dimension)."""
    chosen = config.likelihood
    likelihood = LIKELIHOODS.get(chosen.name).build(chosen, input_dim)
    likelihood.data_dim = int(input_dim)
    return likelihood


def likelihood_size(config, input_dim: int, buffers: bool = False) -> tuple[int, int]:
    """(K outputs per pixel, own parameters) of the likelihood :func:`make_likelihood` builds
    for data of size D, asked of its class (nothing built but on the meta device)."""
    chosen = config.likelihood
    family = LIKELIHOODS.get(chosen.name)
    return family.pixel_params(chosen), family.parameter_count(chosen, input_dim, buffers)
