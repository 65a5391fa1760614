"""Importance-sampled log-likelihood, per data point.

    log p(x_i) ~= log (1/K) sum_k w_ik,   w_ik = p(x_i, z_ik) / q(z_ik | x_i),   z_ik ~ q(z|x_i)

an estimate that is a lower bound in expectation (IWAE bound) and tends to log p(x_i) as K
grows (Burda et al. 2015 use K = 5000). The weights come from Pyro traces of the VAE's guide
and model run under a particle plate (dim -2), so each data point gets its own K weights
(never one weight per minibatch). Samples are drawn in chunks, so the networks' memory stays
bounded whatever K is. Shapes: x [B, D] -> log p(x) [B].
"""

from __future__ import annotations

import math

import pyro
import torch
from tqdm.auto import tqdm

from ..rng import seeded
from .traces import eval_mode, paired_traces


@torch.no_grad()
def weighted_draws(vae, x: torch.Tensor, k: int):
    """k draws z ~ q(z|x) per row of x [B, D] with their terms: (z [k, B, L],
    log p(x|z) [k, B], log w = log p(x, z) - log q(z|x) [k, B])."""
    with pyro.plate("particles", k, dim=-2):
        guide, model = paired_traces(vae, x)
    q, p, obs = guide.nodes["z"], model.nodes["z"], model.nodes["x"]
    z = q["value"]
    log_px_z = obs["fn"].log_prob(obs["value"])
    return z, log_px_z, log_px_z + p["fn"].log_prob(z) - q["fn"].log_prob(z)


def log_weights(vae, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x, z) - log q(z|x) for k draws z ~ q(z|x) per row of x [B, D]: returns [k, B]."""
    return weighted_draws(vae, x, k)[2]


def _chunk_size(vae, batch: int, budget_bytes: int) -> int:
    """Particles per chunk so the decoder's activations fit in ``budget_bytes``."""
    width = vae.input_dim * vae.likelihood.params_per_pixel + sum(vae.config.hidden) + 4 * vae.config.latent_dim
    per_particle = 4 * batch * width * 3  # float32, with room for temporaries
    return max(1, budget_bytes // per_particle)


def reduce_log_weights(vae, x: torch.Tensor, reduce, num_samples: int = 5000,
                       batch_size: int = 100, memory_mb: int = 512, seed: int = 0,
                       progress: bool = False) -> list:
    """[reduce(log w) for each batch of x], log w [K, b] (float64) the K = ``num_samples``
    log weights of the batch's b rows; ``reduce`` maps them to e.g. log p(x) [b].

    Each batch's weights are drawn in chunks that fit ``memory_mb``; one batch's weights
    (K * b * 8 bytes: 4 MB for K=5000, b=100) are all that is held at once. Repeatable for a
    ``seed``; leaves the caller's random stream alone.
    """
    chunk = _chunk_size(vae, min(batch_size, x.shape[0]), memory_mb * 2**20)
    total = math.ceil(x.shape[0] / batch_size) * math.ceil(num_samples / chunk)
    out = []
    with tqdm(total=total, disable=not progress, desc=f"log p(x), K={num_samples}",
              unit="chunk") as bar, torch.no_grad(), seeded(seed), eval_mode(vae):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            parts = []
            for done in range(0, num_samples, chunk):
                parts.append(log_weights(vae, xb, min(chunk, num_samples - done)).double())
                bar.update(1)
            out.append(reduce(torch.cat(parts)))
    return out


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w[k]) over dim 0: [K, ...] -> [...]."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def log_likelihood(vae, x: torch.Tensor, num_samples: int = 5000, batch_size: int = 100,
                   memory_mb: int = 512, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Importance-sampled log p(x) of every row of x [N, D] with ``num_samples`` draws each.

    Returns [N] in nats (float64). Repeatable for a ``seed``; leaves the caller's random
    stream alone.
    """
    return torch.cat(reduce_log_weights(vae, x, log_mean_exp, num_samples, batch_size,
                                        memory_mb, seed, progress))
