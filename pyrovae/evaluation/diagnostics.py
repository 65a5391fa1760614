"""Posterior diagnostics from the encoder's q(z|x) = N(mu(x), diag(sigma(x)^2)).

For N data points with posterior parameters mu, sigma [N, L]:

    kl_per_dim[d]  = (1/N) sum_i KL(N(mu_id, sigma_id^2) || p(z_d))     (factorised priors)
    activity[d]    = Cov_x(E_q[z_d]) = Var_i(mu_id); dimension d is *active* when > 0.01
                     (Burda et al. 2015)
    I_q(x; z)      = E_i E_{z ~ q(z|x_i)} [log q(z|x_i) - log q(z)],
                     q(z) = (1/N) sum_j q(z|x_j)  (the aggregate posterior over the N points)

The mutual information estimate uses one z per point and all N points in the mixture (He et al.
2019); it is at most log N, and 0 for an encoder that ignores x.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal, kl_divergence

from ..rng import seeded
from .traces import eval_mode

ACTIVE_THRESHOLD = 0.01


@torch.no_grad()
def posterior_params(vae, x: torch.Tensor, batch_size: int = 1000):
    """(mu, sigma) of q(z|x) for every row of x [N, D]: ([N, L], [N, L])."""
    with eval_mode(vae):
        parts = [vae.encode(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def kl_per_dim(vae, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor | None:
    """Average analytic KL of each latent dimension [L], or None when the prior does not
    factorise over dimensions (mixture, VampPrior, flow): then only the total KL is defined."""
    if not getattr(getattr(vae, "prior", None), "analytic_kl", False):
        return None
    p = vae.prior().base_dist  # Normal with [L] parameters
    return kl_divergence(Normal(mu, sigma), Normal(p.loc, p.scale)).mean(0)


def activity(mu: torch.Tensor) -> torch.Tensor:
    """Var over data points of each dimension's posterior mean: [N, L] -> [L]."""
    return mu.double().var(dim=0, unbiased=True)


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of dimensions whose activity exceeds ``threshold``."""
    return int((activity(mu) > threshold).sum())


@torch.no_grad()
def mutual_information(mu: torch.Tensor, sigma: torch.Tensor, seed: int = 0,
                       chunk: int = 1024) -> float:
    """I_q(x; z) in nats, from posterior parameters [N, L] (see the module docstring).

    log q(z_i | x_j) for all pairs comes from matrix products, without an [N, N, L] tensor:
    sum_d (z_id - mu_jd)^2 / s_jd^2 = z_i^2 . (1/s_j^2) - 2 z_i . (mu_j / s_j^2) + sum_d
    mu_jd^2 / s_jd^2. O(N^2 L) work, O(chunk * N) memory, float64 (rounding ~1e-16 times
    (|z| / sigma)^2, negligible for real posteriors); repeatable for a ``seed``.
    """
    mu, sigma = mu.double(), sigma.double()
    n, dim = mu.shape
    with seeded(seed):
        z = mu + sigma * torch.randn_like(mu)  # one z_i ~ q(z|x_i) per point
    log_q_own = Normal(mu, sigma).log_prob(z).sum(-1)  # [N]
    precision = sigma.pow(-2)  # [N, L]
    const = -(mu.pow(2) * precision).sum(-1) / 2 - sigma.log().sum(-1) \
        - dim * math.log(2 * math.pi) / 2  # [N], the j-only terms
    log_q_agg = []
    for i in range(0, n, chunk):
        zi = z[i:i + chunk]  # [c, L] against every q(z|x_j)
        log_q = -(zi.pow(2) @ precision.T) / 2 + zi @ (mu * precision).T + const  # [c, N]
        log_q_agg.append(torch.logsumexp(log_q, dim=1) - math.log(n))
    return float((log_q_own - torch.cat(log_q_agg)).mean())
