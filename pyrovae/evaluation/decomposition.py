"""The KL term's decomposition on a data split (Chen et al. 2018), for ``pyrovae evaluate``:

    E_n KL(q(z|x_n) || p(z)) = I_q(z; n) + KL(q(z) || prod_j q(z_j)) + sum_j KL(q(z_j) || p(z_j))
                             = index_code_mi + total_correlation + dimwise_kl

with n uniform over the split's N points and q(z) = (1/N) sum_n q(z|x_n). For x [N, D] with
posterior parameters mu, sigma [N, L]: each repetition shuffles the points (seeded) into the N // B
minibatches of B = min(``BATCH``, N) (a last partial one left out), draws one z_n ~ q(z|x_n) per point and
takes each point's three terms with the minibatch-stratified estimate of log q(z) and log
q(z_j) (``objectives.decompositions.tc_terms``, estimator ``mss``, N the split's size), repeated until
there are at least ``ESTIMATES`` minibatches (10,000 test points: one pass). The estimates are
the means over all points and repetitions; their standard errors the spread of
the minibatch means, sd / sqrt(number of minibatches). On every draw the three terms add up to
log q(z|x) - log p(z), the rate's Monte Carlo estimate, so their sum estimates the rate.

MSS's log q^(z) is the log of an unbiased estimate of q(z): it is low by about Var(q^/q) / 2,
which falls as 1/B, so a larger ``BATCH`` is less biased (with B = N the stratified weights
use every point).

Given for a model whose q(z|x) is one diagonal Gaussian (the "encoder" capability, a
``diagonal`` posterior, no ``latent_layers``); the dimension-wise KL needs a prior that
factorises into Normals (``normal``, ``learnable-normal``): else it and the MI are given,
``dimwise_kl`` None. For any other model the keys are absent.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal

from pyrovae.objectives.decompositions import tc_terms
from pyrovae.runtime.rng import seeded

BATCH = 1000     # points per minibatch of the estimate
ESTIMATES = 3    # at least this many minibatch estimates (repeated shuffles of a small split)
CHUNK = 250      # rows of the [B, L, B] pair densities at a time
KEYS = ("index_code_mi", "total_correlation", "dimwise_kl")


def _prior_normal(vae):
    """The prior's per-dimension Normal, or None for one that does not factorise so."""
    prior = getattr(vae, "prior", None)
    if not getattr(prior, "analytic_kl", False):
        return None
    base = getattr(prior(), "base_dist", None)
    return base if isinstance(base, Normal) else None


@torch.no_grad()
def kl_decomposition(vae, mu: torch.Tensor, sigma: torch.Tensor, seed: int = 0,
                     batch: int = BATCH, estimates: int = ESTIMATES) -> dict:
    """The three terms (nats per point) with their standard errors, from the posterior
    parameters mu, sigma [N, L] of a split (module docstring): ``index_code_mi``,
    ``total_correlation``, ``dimwise_kl`` (None without a factorised Normal prior), each with
    ``_se``, and ``decomposition_estimator`` ("mss"), ``decomposition_batch`` (B)."""
    mu, sigma = mu.double(), sigma.double()
    n = mu.shape[0]
    b = max(2, min(batch, n))
    prior = _prior_normal(vae)
    if prior is not None:
        prior = Normal(prior.loc.detach().double().to(mu.device),
                       prior.scale.detach().double().to(mu.device))
    batches = n // b
    repeats = -(-estimates // batches)  # ceil
    sums = {k: 0.0 for k in KEYS}
    means = {k: [] for k in KEYS}
    with seeded(seed):
        for _ in range(repeats):
            order = torch.randperm(n, device=mu.device)
            for start in range(0, n - b + 1, b):  # (a last partial batch is left out)
                idx = order[start:start + b]
                m, s = mu[idx], sigma[idx]
                z = m + s * torch.randn_like(m)
                log_p = None if prior is None else prior.log_prob(z)
                terms = tc_terms(z, m, s, log_p, n, "mss", chunk=CHUNK)
                for key, values in zip(KEYS, terms):
                    if values is not None:
                        sums[key] += float(values.sum())
                        means[key].append(float(values.mean()))
    count = batches * repeats
    out = {}
    for key in KEYS:
        if not means[key]:
            out[key], out[key + "_se"] = None, None
            continue
        values = torch.tensor(means[key], dtype=torch.float64)
        out[key] = sums[key] / (count * b)
        out[key + "_se"] = (float(values.std() / math.sqrt(len(values))) if len(values) > 1
                            else None)
    out.update(decomposition_estimator="mss", decomposition_batch=b)
    return out


__all__ = ["kl_decomposition", "BATCH", "ESTIMATES"]
