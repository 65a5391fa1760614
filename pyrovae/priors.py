"""Priors p(z) over the latent z in R^L.

A prior is a module whose ``forward()`` returns a Pyro distribution with event shape [L] and
batch shape [] (the model's data plate broadcasts it to [B]). Being a module lets later priors
own learnable parameters that the optimizer sees.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I_L)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale, validate_args=False).to_event(1)


def make_prior(config, latent_dim: int, encoder: nn.Module, input_shape) -> nn.Module:
    """The prior named by ``config.name`` (a PriorConfig) over z in R^latent_dim.

    ``encoder`` and ``input_shape`` are for priors built from the encoder (VampPrior).
    """
    if config.name == "normal":
        return StandardNormalPrior(latent_dim)
    raise ValueError(f"unknown prior {config.name!r}")
