"""Posterior diagnostics from the encoder's q(z|x) = N(mu(x), diag(sigma(x)^2)).

For a guide that is not a diagonal Gaussian (``[model.posterior]`` full, lowrank, iaf),
``encode`` gives its marginal means and standard deviations: the activity below needs only the
means, while the per-dimension KL and the mutual information are left out (None).

For N data points with posterior parameters mu, sigma [N, L]:

    kl_per_dim[d]  = (1/N) sum_i KL(N(mu_id, sigma_id^2) || p(z_d))     (factorised priors)
    activity[d]    = Cov_x(E_q[z_d]) = Var_i(mu_id); dimension d is *active* when > 0.01
                     (Burda et al. 2015)
    I_q(x; z)      = E_i E_{z ~ q(z|x_i)} [log q(z|x_i) - log q(z)],
                     q(z) = (1/N) sum_j q(z|x_j)  (the aggregate posterior over the N points)

The mutual information estimate uses one z per point and all N points in the mixture (He et al.
2019); it is at most log N, and 0 for an encoder that ignores x.

A model with several latent layers lists their sites in a ``latent_layers`` attribute and gets
the same numbers for each layer from its traces (:func:`layer_diagnostics`).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal, kl_divergence

from pyrovae.runtime.rng import seeded
from pyrovae.runtime.traces import eval_mode, point_traces

ACTIVE_THRESHOLD = 0.01


@torch.no_grad()
def posterior_params(vae, x: torch.Tensor, batch_size: int = 1000):
    """(mu, sigma) of q(z|x) for every row of x [N, D]: ([N, L], [N, L])."""
    with eval_mode(vae):
        parts = [vae.encode(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def diagonal_posterior(vae) -> bool:
    """Whether ``vae``'s q(z|x) is the diagonal Gaussian ``encode`` describes (a VAE's
    ``posterior`` family says; a model without one has the Gaussian encoder of the interface).
    A full, low-rank or flow guide's (mean, std) are its marginal moments, not the whole q."""
    return bool(getattr(getattr(vae, "posterior", None), "diagonal", True))


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


LAYER_PARTICLES = 16  # draws per point for the per-layer posterior means and KL


@torch.no_grad()
def layer_diagnostics(vae, x: torch.Tensor, seed: int = 0, particles: int = LAYER_PARTICLES,
                      batch_size: int = 100) -> dict:
    """Per-layer diagnostics of a model that names its latent sites in a ``latent_layers``
    attribute (a hierarchical VAE's z1, z2, ..., bottom to top), read off the traces of
    ``particles`` draws per point of x [N, D]. For each site s with values in R^L_s:

        E_q[z_s|x_i]     the mean of the guide's distribution of z_s, averaged over the draws
                         of the layers it is conditioned on (exact for the bottom layer)
        activity_s[d]    Var_i(E_q[z_sd|x_i]); active_units_s counts those > 0.01
        kl_per_dim_s[d]  (1/N) sum_i E_q[log q(z_sd|.) - log p(z_sd|.)], Monte Carlo (the
                         conditionals factorise over dimensions); kl_s sums it: the layer's
                         share of the rate (without the layer's KL weight)
        mutual_info_s    I_q(x; z_s) (as ``mutual_information``) when q(z_s|x) is a diagonal
                         Gaussian of x alone (its parameters the same in every draw), else None

    and over all layers: ``active_units``, ``latent_dim``, ``activity`` and ``kl_per_dim``
    (the layers' lists joined, bottom to top). A site whose distributions are not
    factorised over a last dimension (a full-covariance Gaussian, say) gets its total KL
    only (``kl_per_dim_s`` None)."""
    sites = list(vae.latent_layers)
    means = {s: [] for s in sites}
    kls = {s: [] for s in sites}
    gaussian = {s: [] for s in sites}
    with eval_mode(vae), seeded(seed):
        for xb in x.split(batch_size):
            t = point_traces(vae, xb, particles=particles, enumerate="none")
            for s in sites:
                q, p = t.guide.nodes[s]["fn"], t.model.nodes[s]["fn"]
                mean = q.mean                                                   # [K, B, L]
                means[s].append(mean.mean(0))
                base_q, base_p = getattr(q, "base_dist", None), getattr(p, "base_dist", None)
                if (getattr(q, "reinterpreted_batch_ndims", 0) == 1 and base_p is not None
                        and getattr(p, "reinterpreted_batch_ndims", 0) == 1):
                    v = t.guide.nodes[s]["value"]
                    kls[s].append((base_q.log_prob(v) - base_p.log_prob(v)).mean(0))  # [B, L]
                else:
                    kls[s].append((t.lp_guide[s] - t.lp_model[s]).mean(0)[:, None])   # [B, 1]
                fixed = (isinstance(base_q, Normal) and bool((mean == mean[:1]).all())
                         and bool((q.stddev == q.stddev[:1]).all()))
                gaussian[s].append((mean[0], q.stddev[0]) if fixed else None)
    result, activities, per_dims = {"layers": sites}, [], []
    for s in sites:
        mu = torch.cat(means[s])
        kl = torch.cat(kls[s]).double().mean(0)
        act = activity(mu)
        per_dim = kl.shape[0] == mu.shape[1]
        mi = None
        if all(g is not None for g in gaussian[s]):
            loc = torch.cat([g[0] for g in gaussian[s]])
            scale = torch.cat([g[1] for g in gaussian[s]])
            mi = mutual_information(loc, scale, seed=seed)
        result.update({f"latent_dim_{s}": int(mu.shape[1]),
                       f"active_units_{s}": int((act > ACTIVE_THRESHOLD).sum()),
                       f"kl_{s}": float(kl.sum()),
                       f"kl_per_dim_{s}": [float(v) for v in kl] if per_dim else None,
                       f"activity_{s}": [float(v) for v in act],
                       f"mutual_info_{s}": mi})
        activities.append(act)
        per_dims.append(kl if per_dim else None)
    result.update({
        "active_units": sum(result[f"active_units_{s}"] for s in sites),
        "latent_dim": sum(result[f"latent_dim_{s}"] for s in sites),
        "activity": [float(v) for v in torch.cat(activities)],
        "kl_per_dim": (None if any(k is None for k in per_dims)
                       else [float(v) for v in torch.cat(per_dims)]),
        "mutual_info_max": math.log(x.shape[0])})
    return result
