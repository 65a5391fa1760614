"""What a posterior family is: how many numbers the encoder gives per data point, and how they
become the guide's distribution q(z|x) over z in R^L.

    encoder:  x [B, D] -> encoded              ``gaussian_head``: (loc [B, L], scale [B, L]),
                                               else the raw output h [B, P], P = outputs
    family:   encoded  -> q(z|x)               batch shape [B], event shape [L], has_rsample
              encoded  -> (mean, std)          E_q[z|x] and the marginal std, each [B, L]

A family is a module (so a flow's networks are parameters of the VAE: trained, checkpointed and
resumed with it) registered in :data:`pyrovae.runtime.registry.POSTERIORS` with its class attributes as
capabilities:

    analytic_kl    KL(q || diagonal Gaussian prior) has a closed form (torch's kl_divergence),
                   which the mean-field objectives need
    diagonal       q factorises over dimensions: per-dimension KLs (free bits), the Gaussian
                   diagnostics (mutual information) and the VampPrior's mixture of q's
    gaussian_head  the encoder ends in ``nets.gaussian_head`` (loc, scale) instead of a raw h
"""

from __future__ import annotations

import torch
from torch import nn

from pyrovae.runtime.registry import POSTERIORS
from pyrovae.runtime.sizes import meta_count


def register_posterior(name: str):
    """Class decorator: register a :class:`Posterior` subclass as ``posterior = name``, with its
    ``analytic_kl``, ``diagonal`` and ``gaussian_head`` flags as the registry's capabilities."""
    def add(cls):
        return POSTERIORS.register(name, cls, analytic_kl=bool(cls.analytic_kl),
                                   diagonal=bool(cls.diagonal),
                                   gaussian_head=bool(cls.gaussian_head))
    return add


class Posterior(nn.Module):
    """Base class (module docstring). ``build(config, latent_dim)`` makes one from a
    PosteriorConfig; ``outputs(config, latent_dim)`` is the encoder's output size P, known
    before anything is built (the encoder is made first)."""

    analytic_kl: bool = False
    diagonal: bool = False
    gaussian_head: bool = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    @classmethod
    def build(cls, config, latent_dim: int) -> Posterior:
        return cls(latent_dim)

    @classmethod
    def outputs(cls, config, latent_dim: int) -> int:
        """Encoder outputs per data point."""
        raise NotImplementedError

    @classmethod
    def check(cls, config, latent_dim: int) -> None:
        """Refuse settings of ``[model.posterior]`` this family cannot use, in one line (a
        ConfigError), when the config is read."""

    @classmethod
    def parameter_count(cls, config, latent_dim: int, buffers: bool = False) -> int:
        """Parameters (and buffers) the family holds beside the encoder, counted on one built
        on the meta device (nothing allocated): exact for any family built without reading
        values; 0 for the Gaussian ones."""
        return meta_count(lambda: cls.build(config, latent_dim), buffers)

    def particle_floats(self) -> int:
        """Numbers one draw of z produces beside z itself (the flow's hidden layers), per point."""
        return 0

    def forward(self, encoded) -> torch.distributions.Distribution:
        """q(z|x) from the encoder's output: batch shape [B], event shape [L]."""
        raise NotImplementedError

    def moments(self, encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q[z|x], marginal standard deviations), each [B, L]."""
        raise NotImplementedError
