"""Reference gradients of the bounds, written from the papers with plain torch and Pyro's
traces, sharing no code with ``pyrovae/objectives``: what the combination matrix
(``tests/objectives/test_matrix.py``, ``benchmarks/estimator_matrix.py``) holds every estimator against.

For a minibatch of B points, S particles (a plate ``particles`` left of the model's plates)
and the sites' scales (the data plate's N/B times a KL weight beta on the latents)::

    log w_sb = sum_model r_i log p_i  -  sum_guide r_j log q_j      r = scale / (N/B)   [S, B]

each site's log-density summed over the dims right of the data plate. The per-point bounds
(Burda et al. 2015; Li & Turner 2016; Rainforth et al. 2018)::

    elbo   mean_k log w_k                    iwae   log mean_k w_k
    renyi  log mean_k w_k^(1-a) / (1-a)      miwae  mean_m log mean_k w_mk    (M groups of K)
    ciwae  b elbo + (1-b) iwae               piwae  iwae over M K draws (its value)

and the loss -(N/B) sum_b L_b, whose mean the objective's loss value must have. The reference
gradient of one draw, whose mean is the target:

    "bound"  grad of -(N/B) sum_b [L_b + stop(L_b) sum_k log q(y_kb)]: reparameterised sites by
             the path, sampled ones (y, no rsample) by REINFORCE without a baseline
             (Williams 1992), log q(y) unweighted (it is the sampling density)
    "wake"   reweighted wake-sleep (Bornschein & Bengio 2015), z held fixed:
             -(N/B) sum_b sum_k stop(w~_kb) [log p_kb + log q_kb] (log q unweighted, w~ from the
             weighted log w: the self-normalised tempered target)
    "piwae"  the model's parameters from "bound" of iwae(M K), the guide's from miwae(M, K)
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

PLATE, DATA = "particles", "data"


def _sites(trace):
    return [(name, site) for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)]


def _per_point(site, shape) -> torch.Tensor:
    """log f(site) [S, B]: masked, summed over the batch dims right of the data plate."""
    lp = site["fn"].log_prob(site["value"])
    if site.get("mask") is not None and site["mask"] is not True:
        lp = torch.where(torch.as_tensor(site["mask"]), lp, torch.zeros_like(lp))
    dim = next(f.dim for f in site["cond_indep_stack"] if f.name == DATA)
    inner = -dim - 1                                   # batch dims right of the data plate
    if inner and lp.dim() > 0:
        lp = lp.sum(dim=tuple(range(-min(inner, lp.dim()), 0)))
    while lp.dim() > 2:
        lp = lp.squeeze(-2)
    return torch.broadcast_to(lp, shape)


class Particles:
    """One draw of S particles: log p, log q (weighted), log q unweighted, the sampled sites'
    unweighted log q, and N/B; ``fixed`` holds every latent at its value (z.detach())."""

    def __init__(self, model, guide, args, kwargs, particles: int, nesting: int,
                 fixed: bool = False):
        plate = pyro.plate(PLATE, particles, dim=-(nesting + 1))
        guide_trace = poutine.trace(plate(guide)).get_trace(*args, **kwargs)
        if fixed:
            held = guide_trace.copy()
            for name, site in _sites(guide_trace):
                held.nodes[name] = dict(site, value=site["value"].detach())
            guide_trace = poutine.trace(poutine.replay(plate(guide), trace=held)).get_trace(
                *args, **kwargs)
        model_trace = poutine.trace(poutine.replay(plate(model), trace=guide_trace)).get_trace(
            *args, **kwargs)
        obs = [s for _, s in _sites(model_trace) if s["is_observed"]]
        self.scale = torch.as_tensor(obs[0]["scale"], dtype=torch.float64)
        value = obs[0]["value"]
        batch = value.shape[len(value.shape) - obs[0]["fn"].event_dim - 1]
        shape = (particles, batch)
        r = lambda site: torch.as_tensor(site["scale"], dtype=torch.float64) / self.scale  # noqa: E731
        self.log_p = sum(r(s) * _per_point(s, shape) for _, s in _sites(model_trace))
        latents = [(n, s) for n, s in _sites(guide_trace) if not s["is_observed"]]
        self.log_q = sum(r(s) * _per_point(s, shape) for _, s in latents)
        self.log_q_raw = sum(_per_point(s, shape) for _, s in latents)
        sampled = [s for _, s in latents if not s["fn"].has_rsample]
        self.log_q_sampled = sum(_per_point(s, shape) for s in sampled) if sampled else None

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_p - self.log_q


def _lme(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def bound_value(name: str, log_w: torch.Tensor, groups: int = 1, alpha: float = 0.5,
                b: float = 0.5) -> torch.Tensor:
    """The per-point bound [B] from log w [S, B] (module docstring)."""
    if name == "elbo":
        return log_w.mean(0)
    if name in ("iwae", "piwae"):
        return _lme(log_w)
    if name == "renyi":
        return _lme((1 - alpha) * log_w) / (1 - alpha)
    if name == "miwae":
        return _lme(log_w.reshape(groups, -1, log_w.shape[-1]), 1).mean(0)
    if name == "ciwae":
        return b * log_w.mean(0) + (1 - b) * _lme(log_w)
    raise KeyError(f"no reference for bound {name!r}")


def _flat_grad(loss: torch.Tensor, params: list) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def bound_gradient(d: Particles, name: str, params: list, **settings) -> torch.Tensor:
    """"bound": the reparameterised + plain-REINFORCE gradient of -(N/B) sum_b L_b."""
    value = bound_value(name, d.log_w, **settings)
    surrogate = value
    if d.log_q_sampled is not None:
        surrogate = value + value.detach() * d.log_q_sampled.sum(0)
    return _flat_grad(-(d.scale * surrogate).sum(), params)


def wake_gradient(d: Particles, params: list) -> torch.Tensor:
    """"wake": wake-theta and wake-phi on a draw taken with ``fixed=True``."""
    w = torch.softmax(d.log_w.detach(), 0)
    return _flat_grad(-(d.scale * (w * (d.log_p + d.log_q_raw)).sum(0)).sum(), params)


def used_by(program, args, kwargs, params: list, nesting: int) -> torch.Tensor:
    """A mask over the flattened parameters: those the program's log-densities depend on."""
    trace = poutine.trace(pyro.plate(PLATE, 1, dim=-(nesting + 1))(program)).get_trace(
        *args, **kwargs)
    total = sum(s["fn"].log_prob(s["value"].detach()).sum() for _, s in _sites(trace))
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return torch.cat([(torch.ones_like(p, dtype=torch.bool) if g is not None
                       else torch.zeros_like(p, dtype=torch.bool)).reshape(-1)
                      for g, p in zip(grads, params)])


def reference_draw(target: str, bound: str, model, guide, args, kwargs, params: list,
                   particles: int, nesting: int, groups: int = 1, alpha: float = 0.5,
                   b: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of (the loss value -(N/B) sum_b L_b, the reference gradient of ``target``
    flattened over ``params``) (module docstring). ``particles`` is S, every draw (M K for
    miwae/piwae); the value is the bound's (IWAE's for wake and piwae)."""
    fixed = target == "wake"
    d = Particles(model, guide, args, kwargs, particles, nesting, fixed)
    reported = "iwae" if target in ("wake", "piwae") else bound
    value = -(d.scale * bound_value(reported, d.log_w.detach(), groups=groups, alpha=alpha,
                                    b=b)).sum()
    if target == "wake":
        return value, wake_gradient(d, params)
    if target == "piwae":
        as_model = bound_gradient(d, "iwae", params)
        as_guide = bound_gradient(d, "miwae", params, groups=groups)   # the same draws
        guide_mask = used_by(guide, args, kwargs, params, nesting)
        return value, torch.where(guide_mask, as_guide, as_model)
    return value, bound_gradient(d, bound, params, groups=groups, alpha=alpha, b=b)


def reference_gradient(*args, **kwargs) -> torch.Tensor:
    """The gradient of :func:`reference_draw`."""
    return reference_draw(*args, **kwargs)[1]
