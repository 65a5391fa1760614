"""Full-covariance Gaussian q(z|x) = N(mu(x), L(x) L(x)^T), L lower triangular (Cholesky).

    encoder x -> h [B, L + L(L+1)/2] = [mu | the lower triangle of L, row by row]
    L_ii = softplus(h_ii) + 1e-4 > 0      (the diagonal floor of the diagonal family)
    L_ij = h_ij  for j < i                (free off-diagonal entries)
    log q(z|x) = -L/2 log 2pi - sum_i log L_ii - |L^-1 (z - mu)|^2 / 2
    marginal std_i = sqrt(sum_j L_ij^2)

Sampling is z = mu + L eps, eps ~ N(0, I) (reparameterised). The closed-form KL against a
diagonal Gaussian prior is registered with torch (posteriors/kl.py), so the mean-field
objectives accept it. O(L^2) encoder outputs: 1,325 for L = 50.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.nn import functional as F

from pyrovae.components.nets.mlp import MIN_SCALE
from pyrovae.components.posteriors.base import Posterior, register_posterior


def tril_entries(latent_dim: int) -> int:
    """Entries of an L x L lower triangle, diagonal included: L (L + 1) / 2."""
    return latent_dim * (latent_dim + 1) // 2


@register_posterior("full")
class FullCovariancePosterior(Posterior):
    """N(mu, L L^T) with the Cholesky factor L from the encoder (module docstring)."""

    analytic_kl = True

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        rows, cols = torch.tril_indices(latent_dim, latent_dim)
        # flat positions in an L x L matrix of the triangle's entries, and of the diagonal's
        self.register_buffer("tril_flat", rows * latent_dim + cols, persistent=False)
        self.register_buffer("diag_mask", (rows == cols), persistent=False)

    @classmethod
    def outputs(cls, config, latent_dim):
        return latent_dim + tril_entries(latent_dim)

    def scale_tril(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu [B, L], L [B, L, L]) from the encoder output h [B, L + L(L+1)/2]."""
        dim = self.latent_dim
        loc, raw = h[..., :dim], h[..., dim:]
        entries = torch.where(self.diag_mask, F.softplus(raw) + MIN_SCALE, raw)
        flat = h.new_zeros(*h.shape[:-1], dim * dim)
        flat = flat.index_copy(-1, self.tril_flat, entries)
        return loc, flat.reshape(*h.shape[:-1], dim, dim)

    def forward(self, h):
        loc, tril = self.scale_tril(h)
        return dist.MultivariateNormal(loc, scale_tril=tril, validate_args=False)

    def moments(self, h):
        loc, tril = self.scale_tril(h)
        return loc, tril.pow(2).sum(-1).sqrt()
