"""A linear-Gaussian VAE (probabilistic PCA) whose log p(x) is known in closed form."""

import torch

from pyrovae import VAE, VAEConfig
from pyrovae.components.nets.mlp import MIN_SCALE

D, L, S = 6, 2, 0.5


def ppca(exact_posterior: bool):
    """A linear VAE whose decoder is PPCA with orthogonal W columns, so the exact posterior
    N(A(x - b), Sigma) has a diagonal Sigma and the encoder can represent it exactly."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=L, hidden=(), likelihood="gaussian", sigma=S), (D,))
    q, _ = torch.linalg.qr(torch.randn(D, L))
    w = q * torch.tensor([2.0, 0.7])  # orthogonal columns of different lengths
    b = torch.randn(D) * 0.3
    dec, enc = vae.decoder.net[0], vae.encoder.net[0]
    with torch.no_grad():
        dec.weight.copy_(w)
        dec.bias.copy_(b)
        if exact_posterior:
            sigma = torch.linalg.inv(torch.eye(L) + w.T @ w / S**2)  # diagonal
            a = sigma @ w.T / S**2
            std = sigma.diagonal().sqrt()
            raw = torch.log(torch.expm1(std - MIN_SCALE))  # softplus^-1
            enc.weight.copy_(torch.cat([a, torch.zeros(L, D)]))
            enc.bias.copy_(torch.cat([-a @ b, raw]))
    cov = w @ w.T + S**2 * torch.eye(D)
    exact = torch.distributions.MultivariateNormal(b, cov)
    return vae, exact
