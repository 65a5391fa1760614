"""The ELBO per data point, split into its reconstruction and KL terms, for any model that
follows the interface (every site found from the traces, see traces.py).

For each data point x_i, one draw of the guide's sampled sites, and the guide's enumerated
(discrete) sites summed out exactly with their probabilities q_E::

    log_px_z_i = sum_E q_E sum_{observed o} log p(x_i | ...)                (minus the distortion)
    kl_i       = sum_E q_E sum_{latent s} KL_s
    elbo_i     = log_px_z_i - kl_i                       the bound: elbo_i <= log p(x_i)
    objective_i = log_px_z_i - sum_E q_E sum_s c_s KL_s  what training maximises

with KL_s = log q(z_s|.) - log p(z_s|.) at the draw (Monte Carlo), or the closed-form
KL(q_s || p_s) when it exists and z_s is the only sampled latent site (so its prior does not
depend on another draw); c_s is the site's scale in the guide (the model's beta, 1 unless the
model scales the site). With c_s = beta < 1 the objective is not a lower bound on log p(x),
so the ELBO is always the unweighted one and the objective is reported beside it. The
densities are the unscaled per-point ones (no plate scaling).
Shapes: x [B, D] -> terms [B] (or [K, B] inside a particle plate of K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.distributions import kl_divergence

from pyrovae.runtime.rng import seeded
from pyrovae.runtime.traces import PointTraces, eval_mode, point_traces


@dataclass
class ElboTerms:
    """Per-point terms, each [B] (or [K, B])."""

    log_px_z: torch.Tensor
    kl: torch.Tensor
    weighted_kl: torch.Tensor
    analytic_kl: bool = False
    #: latent site -> its KL_s per point (the terms ``kl`` sums), in the guide's site order
    site_kl: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def elbo(self) -> torch.Tensor:
        """The ELBO, log p(x|z) - KL: a lower bound on log p(x) whatever the KL's weight."""
        return self.log_px_z - self.kl

    @property
    def objective(self) -> torch.Tensor:
        """log p(x|z) - sum_s c_s KL_s: the weighted objective (the ELBO when every c_s = 1)."""
        return self.log_px_z - self.weighted_kl

    @property
    def beta(self) -> float:
        """The average weight of the KL (1 for an unweighted bound)."""
        kl = float(self.kl.sum())
        return float(self.weighted_kl.sum()) / kl if kl else 1.0


def _site_kl(t: PointTraces, name: str, analytic: bool) -> tuple[torch.Tensor, bool]:
    """(KL_s per point, whether it is the closed form)."""
    if analytic:
        q, p = t.guide.nodes[name]["fn"], t.model.nodes[name]["fn"]
        try:
            kl = kl_divergence(q, p)
        except NotImplementedError:
            pass
        else:
            if kl.shape == t.lp_guide[name].shape:  # no plates nested inside the data plate
                return kl, True
    return t.lp_guide[name] - t.lp_model[name], False


def _scale(site) -> float | torch.Tensor:
    scale = site["scale"]
    return scale if torch.is_tensor(scale) else float(scale)


@torch.no_grad()
def terms_of(t: PointTraces, analytic_kl: bool = True) -> ElboTerms:
    """:class:`ElboTerms` from the traces of one batch (see the module docstring)."""
    analytic_ok = analytic_kl and len(t.sampled) == 1 and not t.prior_only
    log_q = t.log_enum_prob()
    log_px = sum((t.lp_model[n] * _scale(t.model.nodes[n]) for n in t.observed), 0.0)
    weighted, analytic = 0.0, bool(t.sampled) and analytic_ok
    sites = {}
    for name in t.sampled + t.enumerated:
        if name in t.sampled:
            term, closed = _site_kl(t, name, analytic_ok)
            analytic = analytic and closed
        else:
            term = t.lp_guide[name] - t.lp_model[name]
        sites[name] = term
        weighted = weighted + _scale(t.guide.nodes[name]) * term
    kl = sum(sites.values(), 0.0)  # the sites' terms added in order: the total's bits as before
    zero = torch.zeros_like(log_px)
    return ElboTerms(t.expect(log_px, log_q), t.expect(kl + zero, log_q),
                     t.expect(weighted + zero, log_q), analytic,
                     {name: t.expect(term + zero, log_q) for name, term in sites.items()})


@torch.no_grad()
def elbo_terms(vae, x: torch.Tensor, analytic_kl: bool = True, particles: int = 0,
               enumerate: str = "all") -> ElboTerms:
    """One-sample ELBO terms of each row of x [B, D] under ``vae``'s model and guide
    ([K, B] with ``particles`` = K). ``enumerate="all"``: every finite discrete guide site is
    summed out exactly (the same expectation as sampling it, without its noise)."""
    return terms_of(point_traces(vae, x, particles=particles, enumerate=enumerate),
                    analytic_kl)


@torch.no_grad()
def evaluate_elbo(vae, x: torch.Tensor, batch_size: int = 1000, analytic_kl: bool = True,
                  seed: int = 0) -> dict[str, float]:
    """Average ELBO terms over all rows of x [N, D], in nats per data point.

    Returns ``elbo`` (log p(x|z) - KL, the bound) and its standard error ``elbo_se`` (over
    data points), ``objective`` (log p(x|z) - beta KL, as trained; equal to ``elbo`` when the
    KL is unweighted), ``log_px_z`` (reconstruction), ``kl`` (rate), ``kl_estimator``
    ("analytic" or "monte-carlo") and ``kl_sites`` ({latent site: its share of ``kl``}).
    Repeatable for a given ``seed`` and leaves the caller's random stream untouched.
    """
    parts = []
    with seeded(seed), eval_mode(vae):
        for start in range(0, x.shape[0], batch_size):
            parts.append(elbo_terms(vae, x[start:start + batch_size], analytic_kl))
    log_px_z = torch.cat([p.log_px_z for p in parts]).double()
    kl = torch.cat([p.kl for p in parts]).double()
    objective = log_px_z - torch.cat([p.weighted_kl for p in parts]).double()
    elbo = log_px_z - kl
    n = elbo.numel()
    se = float(elbo.std() / math.sqrt(n)) if n > 1 else float("nan")
    sites = {name: float(torch.cat([p.site_kl[name] for p in parts]).double().mean())
             for name in parts[0].site_kl}
    return {"elbo": float(elbo.mean()), "elbo_se": se, "objective": float(objective.mean()),
            "log_px_z": float(log_px_z.mean()),
            "kl": float(kl.mean()),
            "kl_estimator": "analytic" if parts[0].analytic_kl else "monte-carlo",
            "kl_sites": sites}
