"""The ELBO per data point, split into its reconstruction and KL terms.

For each data point x_i and one draw z_i ~ q(z|x_i)::

    log_px_z_i = log p(x_i | z_i)                                 (minus the distortion)
    kl_i       = KL(q(z|x_i) || p(z))        analytic, when it has a closed form
               = log q(z_i|x_i) - log p(z_i)  Monte Carlo, otherwise
    elbo_i     = log_px_z_i - beta * kl_i

The terms are read off Pyro traces of the VAE's own guide and model (the guide's draw replayed
into the model), so any prior or likelihood the model uses is evaluated the same way, and the
densities are the unscaled per-point ones (no plate scaling). Shapes: x [B, D] -> terms [B].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import kl_divergence

from ..rng import seeded
from .traces import eval_mode, paired_traces


@dataclass
class ElboTerms:
    """Per-point terms, each [B]."""

    log_px_z: torch.Tensor
    kl: torch.Tensor
    beta: float
    analytic_kl: bool = False

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_px_z - self.beta * self.kl


def _kl(q, p, z, analytic: bool) -> tuple[torch.Tensor, bool]:
    """(KL per point, whether it is analytic)."""
    if analytic:
        try:
            return kl_divergence(q, p), True
        except NotImplementedError:
            pass
    return q.log_prob(z) - p.log_prob(z), False


@torch.no_grad()
def elbo_terms(vae, x: torch.Tensor, analytic_kl: bool = True) -> ElboTerms:
    """One-sample ELBO terms of each row of x [B, D] under ``vae``'s model and guide."""
    guide_trace, model_trace = paired_traces(vae, x)
    obs = model_trace.nodes["x"]
    q_site, p_site = guide_trace.nodes["z"], model_trace.nodes["z"]
    log_px_z = obs["fn"].log_prob(obs["value"])
    kl, analytic = _kl(q_site["fn"], p_site["fn"], q_site["value"], analytic_kl)
    return ElboTerms(log_px_z, kl, vae.beta, analytic)


@torch.no_grad()
def evaluate_elbo(vae, x: torch.Tensor, batch_size: int = 1000, analytic_kl: bool = True,
                  seed: int = 0) -> dict[str, float]:
    """Average ELBO terms over all rows of x [N, D], in nats per data point.

    Returns ``elbo`` and its standard error ``elbo_se`` (over data points), ``log_px_z``
    (reconstruction), ``kl`` (rate) and ``kl_estimator`` ("analytic" or "monte-carlo").
    Repeatable for a given ``seed`` and leaves the caller's random stream untouched.
    """
    parts = []
    with seeded(seed), eval_mode(vae):
        for start in range(0, x.shape[0], batch_size):
            parts.append(elbo_terms(vae, x[start:start + batch_size], analytic_kl))
    log_px_z = torch.cat([p.log_px_z for p in parts]).double()
    kl = torch.cat([p.kl for p in parts]).double()
    elbo = log_px_z - vae.beta * kl
    n = elbo.numel()
    se = float(elbo.std() / math.sqrt(n)) if n > 1 else float("nan")
    return {"elbo": float(elbo.mean()), "elbo_se": se, "log_px_z": float(log_px_z.mean()),
            "kl": float(kl.mean()),
            "kl_estimator": "analytic" if parts[0].analytic_kl else "monte-carlo"}
