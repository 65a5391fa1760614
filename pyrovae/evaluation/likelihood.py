"""Importance-sampled log-likelihood, per data point, for any model that follows the interface.

    log p(x_i) ~= log (1/K) sum_k w_ik,   w_ik = p(x_i, z_ik) / q(z_ik | x_i),   z_ik ~ q(z|x_i)

an estimate that is a lower bound in expectation (IWAE bound) and tends to log p(x_i) as K
grows (Burda et al. 2015 use K = 5000). z stands for all of the guide's latent sites, found from
the traces (traces.py): several sites, a hierarchy, nested plates; a discrete site that the
guide enumerates is summed out exactly inside each weight (and by default every finite
discrete site is, ``enumerate="all"``: a Rao-Blackwellised weight with the same expectation).
The weights come from traces of the guide and model run under a particle plate, so each data
point gets K independent draws of its own (never one weight per minibatch). Samples are drawn
in chunks, so memory stays bounded whatever K is; K x N draws beyond ``memory.MAX_WORK``, or
one batch's log weights beyond the memory available, are refused in one line first
(:func:`check_sizes`). Shapes: x [B, D] -> log p(x) [B].
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from pyrovae.runtime import distributed, memory
from pyrovae.runtime.allocator import reuse_freed_memory
from pyrovae.runtime.rng import seeded
from pyrovae.runtime.traces import eval_mode, log_mean_exp, point_traces, trace_bytes

__all__ = ["weighted_draws", "log_weights", "reduce_log_weights", "log_likelihood",
           "log_mean_exp", "chunk_size", "check_sizes"]


@torch.no_grad()
def weighted_draws(vae, x: torch.Tensor, k: int):
    """k draws of every latent site per row of x [B, D] with their terms: ({latent site: value
    [k, B, ...]}, {observed site: log p(site|z) [k, B]}, log w = log p(x, z) - log q(z|x)
    [k, B]).

    The observed sites are the model's own, by the names its trace gives them (e.g. "x", or
    "x_out" of a conditional model, or several); their log-densities sum to log p(x|z).
    Every latent site is sampled, discrete ones too, so each draw has a value of every one."""
    t = point_traces(vae, x, particles=k, enumerate="none")
    return t.latent_values(), {n: t.lp_model[n] for n in t.observed}, t.log_weight()


def log_weights(vae, x: torch.Tensor, k: int, enumerate: str = "all") -> torch.Tensor:
    """log p(x, z) - log q(z|x) for k draws z ~ q(z|x) per row of x [B, D]: returns [k, B]."""
    t = point_traces(vae, x, particles=k, enumerate=enumerate)
    return t.log_weight().expand(k, x.shape[0])


def chunk_size(vae, x: torch.Tensor, budget_bytes: int) -> int:
    """Particles per chunk so that one chunk's tensors fit in ``budget_bytes``: from the
    module's ``particle_bytes(batch)`` when it declares one, else measured on one draw (the
    tensors of its traces, times 3 for the networks' intermediate activations)."""
    batch = x.shape[0]
    if callable(getattr(vae, "particle_bytes", None)):
        per_particle = vae.particle_bytes(batch)
    else:
        with seeded(0):
            per_particle = 3 * trace_bytes(point_traces(vae, x, particles=1, enumerate="all"))
    return max(1, budget_bytes // max(per_particle, 1))


def check_sizes(vae, points: int, num_samples: int, batch_size: int) -> None:
    """Refuse, in one line, K = ``num_samples`` draws for each of ``points`` points beyond
    ``memory.max_work()`` draws, or one batch's K log weights (float64, held twice while they
    are joined) beyond the memory available."""
    memory.check_work(points * num_samples, f"importance sampling {points} points x "
                      f"{num_samples} samples", "lower the samples (--nll-samples, --samples) "
                      "or the points", unit="draws of one point")
    memory.check_bytes(16 * num_samples * min(batch_size, points), f"{num_samples} samples' "
                       f"log weights for batches of {min(batch_size, points)} points",
                       "lower the samples (--nll-samples, --samples) or --batch-size",
                       device=memory.model_device(vae))


def reduce_log_weights(vae, x: torch.Tensor, reduce, num_samples: int = 5000,
                       batch_size: int = 100, memory_mb: int = 512, seed: int = 0,
                       progress: bool = False, enumerate: str = "all") -> list:
    """[reduce(log w) for each batch of x], log w [K, b] (float64) the K = ``num_samples``
    log weights of the batch's b rows; ``reduce`` maps them to e.g. log p(x) [b].

    Each batch's weights are drawn in chunks that fit ``memory_mb``; one batch's weights
    (K * b * 8 bytes: 4 MB for K=5000, b=100) are all that is held at once. Repeatable for a
    ``seed``; leaves the caller's random stream alone. Batch i draws from the seed
    ``batch_seed(seed, i)``, so its numbers do not depend on the batches before it: in a
    data-parallel run (``pyrovae.runtime.distributed``) each process computes every R-th batch and
    all get the same list as one process.
    """
    n = x.shape[0]
    check_sizes(vae, n, num_samples, batch_size)
    # every chunk allocates the same large tensors: reuse the last chunk's pages (allocator.py)
    with torch.no_grad(), eval_mode(vae), reuse_freed_memory():
        with seeded(seed):
            chunk = chunk_size(vae, x[:batch_size], memory_mb * 2**20)
        own = len(distributed.current().own_batches(n, batch_size))
        with tqdm(total=own * math.ceil(num_samples / chunk), desc=f"log p(x), K={num_samples}",
                  disable=not (progress and distributed.is_writer()), unit="chunk") as bar:
            def one_batch(start, stop, index):
                parts = []
                with seeded(distributed.batch_seed(seed, index)):
                    for done in range(0, num_samples, chunk):
                        parts.append(log_weights(vae, x[start:stop], min(chunk, num_samples - done),
                                                 enumerate).double())
                        bar.update(1)
                return reduce(torch.cat(parts))
            return distributed.map_batches(one_batch, n, batch_size, x.device)


def log_likelihood(vae, x: torch.Tensor, num_samples: int = 5000, batch_size: int = 100,
                   memory_mb: int = 512, seed: int = 0, progress: bool = False,
                   enumerate: str = "all") -> torch.Tensor:
    """Importance-sampled log p(x) of every row of x [N, D] with ``num_samples`` draws each.

    Returns [N] in nats (float64). Repeatable for a ``seed``; leaves the caller's random
    stream alone.
    """
    return torch.cat(reduce_log_weights(vae, x, log_mean_exp, num_samples, batch_size,
                                        memory_mb, seed, progress, enumerate))
