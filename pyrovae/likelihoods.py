"""Decoder likelihoods p(x|z).

A likelihood turns the decoder's output for each data point into a distribution over the
flattened data vector x of size D (one event, ``.to_event(1)``):

    decoder(z): [..., B, L] -> out: [..., B, D * params_per_pixel]
    likelihood(out): distribution with batch shape [..., B] and event shape [D]

``mean(out)`` is E[x|z] (used for pictures), ``check(x)`` raises a :class:`DataError` when the
data lie outside the likelihood's support, with the fix in the message.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from .errors import DataError


class Likelihood:
    """Base class: the family of p(x|z) and what data it accepts."""

    name = ""
    params_per_pixel = 1

    def __call__(self, out: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check(self, x: torch.Tensor, what: str = "data") -> None:
        if not torch.isfinite(x).all():
            raise DataError(f"{what} contains NaN or inf values; clean or drop those rows")


class BernoulliLikelihood(Likelihood):
    """x_d ~ Bernoulli(sigmoid(out_d)), parameterised by logits for numerical stability.

    log p(x|z) = sum_d x_d * out_d - softplus(out_d). Needs binary data x in {0, 1}.
    """

    name = "bernoulli"

    def __call__(self, out):
        return dist.Bernoulli(logits=out, validate_args=False).to_event(1)

    def mean(self, out):
        return torch.sigmoid(out)

    def check(self, x, what="data"):
        super().check(x, what)
        if ((x != 0) & (x != 1)).any():
            lo, hi = x.min().item(), x.max().item()
            hint = ("set binarize = \"dynamic\" or \"static\" in [data]"
                    if 0 <= lo and hi <= 1 else "rescale the data to [0, 1] and binarize them")
            raise DataError(f"{what} has values in [{lo:g}, {hi:g}] but the bernoulli "
                            f"likelihood needs binary values 0/1: {hint}, or use "
                            f"likelihood = \"gaussian\"")


class GaussianLikelihood(Likelihood):
    """x_d ~ Normal(out_d, sigma^2) with a fixed sigma.

    log p(x|z) = -D/2 log(2 pi sigma^2) - ||x - out||^2 / (2 sigma^2). Accepts any real data.
    """

    name = "gaussian"

    def __init__(self, sigma: float):
        self.sigma = float(sigma)

    def __call__(self, out):
        return dist.Normal(out, self.sigma, validate_args=False).to_event(1)

    def mean(self, out):
        return out


def make_likelihood(config, input_dim: int) -> Likelihood:
    """The likelihood named by ``config.likelihood`` (a VAEConfig) for data of size D."""
    if config.likelihood == "bernoulli":
        return BernoulliLikelihood()
    if config.likelihood == "gaussian":
        return GaussianLikelihood(config.sigma)
    raise ValueError(f"unknown likelihood {config.likelihood!r}")
