"""The diagonal Gaussian q(z|x) = N(mu(x), diag(sigma(x)^2)): the default, and the only family
of kind ``ssvae``.

    encoder x -> [B, 2L] -> gaussian_head -> mu [B, L], sigma = softplus(.) + 1e-4 [B, L]
    log q(z|x) = sum_d log N(z_d; mu_d, sigma_d^2)
    KL(q || N(m, diag(s^2))) = sum_d log(s_d / sigma_d) + (sigma_d^2 + (mu_d - m_d)^2) / (2 s_d^2) - 1/2

The encoder is exactly the one pyrovae always had (same layers, same parameter names, same
initial draws), and the guide samples ``Normal(mu, sigma).to_event(1)`` as before, so runs,
checkpoints and measured numbers of the default are unchanged.
"""

from __future__ import annotations

import pyro.distributions as dist

from pyrovae.components.posteriors.base import Posterior, register_posterior


@register_posterior("diagonal")
class DiagonalPosterior(Posterior):
    """N(mu, diag(sigma^2)) from the encoder's Gaussian head (loc, scale)."""

    analytic_kl = True
    diagonal = True
    gaussian_head = True

    @classmethod
    def outputs(cls, config, latent_dim):
        return 2 * latent_dim

    def forward(self, encoded):
        loc, scale = encoded
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def moments(self, encoded):
        return encoded
