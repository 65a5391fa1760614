"""A tiny VAE with known, not-too-small weights, and its terms computed by hand from the raw
weights (the objectives' and the KL tests' reference)."""

import math

import torch
from torch.nn import functional as F

from pyrovae import VAE, VAEConfig

D, L, H, B = 6, 2, 3, 5


def tiny_vae(beta=1.0, likelihood="bernoulli", seed=0, **kw):
    torch.manual_seed(seed)
    vae = VAE(VAEConfig(latent_dim=L, hidden=(H,), kl={"beta": beta}, likelihood=likelihood,
                        activation="tanh", sigma=0.5, **kw), (D,))
    with torch.no_grad():  # known, not-too-small weights
        for p in vae.parameters():
            p.copy_(torch.randn(p.shape) * 0.7)
    return vae


def data(seed=1):
    return torch.bernoulli(torch.full((B, D), 0.4), generator=torch.Generator().manual_seed(seed))


def by_hand(vae, x, z):
    """log p(x|z), log p(z), log q(z|x) and KL(q||p) per data point, from the raw weights."""
    e = [m for m in vae.encoder.net if isinstance(m, torch.nn.Linear)]
    d = [m for m in vae.decoder.net if isinstance(m, torch.nn.Linear)]
    h = torch.tanh(x @ e[0].weight.T + e[0].bias) @ e[1].weight.T + e[1].bias
    loc, scale = h[:, :L], F.softplus(h[:, L:]) + 1e-4
    out = torch.tanh(z @ d[0].weight.T + d[0].bias) @ d[1].weight.T + d[1].bias
    if vae.config.likelihood == "bernoulli":
        log_px_z = (x * out - F.softplus(out)).sum(-1)
    else:
        s = vae.config.likelihood.sigma
        log_px_z = (-0.5 * ((x - out) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_pz = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_qz = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * scale.log()).sum(-1)
    return log_px_z, log_pz, log_qz, kl


def guide_draw(vae, x, seed):
    torch.manual_seed(seed)
    return vae.guide(x).detach()
