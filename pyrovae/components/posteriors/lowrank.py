"""Low-rank plus diagonal Gaussian q(z|x) = N(mu(x), W(x) W(x)^T + diag(d(x))), W of rank r.

    encoder x -> h [B, L + L r + L] = [mu | W row by row (L x r) | raw diagonal]
    d_i = (softplus(raw_i) + 1e-4)^2       (W = 0 is the diagonal family)
    log q(z|x) by the Woodbury identity and the matrix determinant lemma: O(L r^2), no L x L
    marginal std_i = sqrt(sum_k W_ik^2 + d_i)

Sampling is z = mu + W eps_1 + sqrt(d) * eps_2 (reparameterised; torch's
LowRankMultivariateNormal). ``model.posterior.rank`` = r, at most L. The closed-form KL against a
diagonal Gaussian prior is registered with torch (posteriors/kl.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch.nn import functional as F

from pyrovae.runtime.errors import ConfigError
from pyrovae.components.nets.mlp import MIN_SCALE
from pyrovae.components.posteriors.base import Posterior, register_posterior
from pyrovae.runtime.settings import setting


@dataclass
class LowRankSettings:
    """``[model.posterior]`` of lowrank: the rank r of W."""

    rank: int = setting(2, "lowrank: rank r of W in W W^T + diag(d) (at most latent_dim)", min=1)


@register_posterior("lowrank")
class LowRankPosterior(Posterior):
    """N(mu, W W^T + diag(d)) with W [L, r] and d from the encoder (module docstring)."""

    analytic_kl = True
    settings = LowRankSettings

    def __init__(self, latent_dim: int, rank: int):
        super().__init__(latent_dim)
        self.rank = rank

    @classmethod
    def build(cls, config, latent_dim):
        return cls(latent_dim, config.rank)

    @classmethod
    def check(cls, config, latent_dim):
        if config.rank > latent_dim:
            raise ConfigError(f"model.posterior.rank = {config.rank} is above latent_dim = "
                              f"{latent_dim}; W W^T has rank at most L, so set rank <= "
                              f"{latent_dim}")

    @classmethod
    def outputs(cls, config, latent_dim):
        return latent_dim * (config.rank + 2)

    def params(self, h: torch.Tensor):
        """(mu [B, L], W [B, L, r], d [B, L]) from the encoder output h [B, L (r + 2)]."""
        dim, r = self.latent_dim, self.rank
        loc, factor, raw = h.split([dim, dim * r, dim], dim=-1)
        diag = (F.softplus(raw) + MIN_SCALE).pow(2)
        return loc, factor.reshape(*h.shape[:-1], dim, r), diag

    def forward(self, h):
        loc, factor, diag = self.params(h)
        return dist.LowRankMultivariateNormal(loc, factor, diag, validate_args=False)

    def moments(self, h):
        loc, factor, diag = self.params(h)
        return loc, (factor.pow(2).sum(-1) + diag).sqrt()
