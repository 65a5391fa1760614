"""Importance-sampled log-likelihood, per data point.

    log p(x_i) ~= log (1/K) sum_k w_ik,   w_ik = p(x_i, z_ik) / q(z_ik | x_i),   z_ik ~ q(z|x_i)

an estimate that is a lower bound in expectation (IWAE bound) and tends to log p(x_i) as K
grows (Burda et al. 2015 use K = 5000). The weights come from Pyro traces of the VAE's guide
and model run under a particle plate (dim -2), so each data point gets its own K weights
(never one weight per minibatch). Samples are drawn in chunks of K and combined with a running
log-sum-exp, so memory stays bounded whatever K is. Shapes: x [B, D] -> log p(x) [B].
"""

from __future__ import annotations

import math

import pyro
import torch
from tqdm.auto import tqdm

from ..rng import seeded
from .traces import eval_mode, paired_traces


@torch.no_grad()
def log_weights(vae, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x, z) - log q(z|x) for k draws z ~ q(z|x) per row of x [B, D]: returns [k, B]."""
    with pyro.plate("particles", k, dim=-2):
        guide, model = paired_traces(vae, x)
    q, p, obs = guide.nodes["z"], model.nodes["z"], model.nodes["x"]
    z = q["value"]
    return obs["fn"].log_prob(obs["value"]) + p["fn"].log_prob(z) - q["fn"].log_prob(z)


def _chunk_size(vae, batch: int, budget_bytes: int) -> int:
    """Particles per chunk so the decoder's activations fit in ``budget_bytes``."""
    width = vae.input_dim * vae.likelihood.params_per_pixel + sum(vae.config.hidden) + 4 * vae.config.latent_dim
    per_particle = 4 * batch * width * 3  # float32, with room for temporaries
    return max(1, budget_bytes // per_particle)


@torch.no_grad()
def log_likelihood(vae, x: torch.Tensor, num_samples: int = 5000, batch_size: int = 100,
                   memory_mb: int = 512, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Importance-sampled log p(x) of every row of x [N, D] with ``num_samples`` draws each.

    Returns [N] in nats. Repeatable for a ``seed``; leaves the caller's random stream alone.
    """
    out = []
    chunk = _chunk_size(vae, min(batch_size, x.shape[0]), memory_mb * 2**20)
    total = math.ceil(x.shape[0] / batch_size) * math.ceil(num_samples / chunk)
    bar = tqdm(total=total, disable=not progress, desc=f"log p(x), K={num_samples}", unit="chunk")
    with seeded(seed), eval_mode(vae):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            lse = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
            for done in range(0, num_samples, chunk):
                k = min(chunk, num_samples - done)
                lw = log_weights(vae, xb, k).double()
                lse = torch.logaddexp(lse, torch.logsumexp(lw, dim=0))
                bar.update(1)
            out.append(lse - math.log(num_samples))
    bar.close()
    return torch.cat(out)
