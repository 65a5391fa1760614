"""S particles of a model/guide pair as per-point log-densities: what every bound reads.

For a minibatch x of B points and S particles per point (a plate ``particles`` of size S left
of the model's plates), one draw z_sb ~ q(z | x_b) per particle and point gives

    log p_sb = sum over model sites    r_site * log p(site | parents)        [S, B]
    log q_sb = sum over guide latents  r_site * log q(site | parents)        [S, B]
    log w_sb = log p_sb - log q_sb

each summed over the plates nested inside the data plate (every site must sit in the plate
named "data"). r_site is the site's scale relative to the observed sites' scale N/B: 1, or the
model's KL weight beta on the latents. N/B itself (``Draw.scale``) multiplies the per-point
bounds *outside* their log-sum-exp.

A gradient estimator chooses which paths the gradient takes, never the values:

    values="sample"   the model and log q see z as drawn (the reparameterization gradient)
    values="detach"   they see z.detach(): no gradient through z (reweighted wake-sleep)
    values="scaled"   they see z whose gradient is multiplied on the way back by a per-point,
                      per-particle coefficient r_sb [S, B], set after the forward pass
                      (``Draw.ratio.value``): the z-path and the parameter path of the model
                      then carry different weights in one backward pass (DReG, PIWAE)
    fixed=True        also log q(z.detach(); phi) [S, B], the guide's log-density with every
                      value held fixed: its gradient is the score term d/dphi log q(z; phi)|_z

With one latent site, log q at new values reuses the guide's distribution objects. With several
(a hierarchical guide q(z1|x) q(z2|z1)) the guide is replayed on the new values, so the
conditional of z2 is rebuilt from the new z1 and every path is accounted for once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyrovae.runtime.interface import DATA_PLATE, InterfaceError

PARTICLE_PLATE = "particles"
VALUES = ("sample", "detach", "scaled")


class GradientRatio:
    """The coefficient r [S, B] a "scaled" value multiplies its gradient by (set before the
    backward pass, after the forward pass that needed the values)."""

    value: torch.Tensor | None = None


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``ratio.value`` viewed as ``shape``."""

    @staticmethod
    def forward(ctx, value, ratio, shape):
        ctx.ratio, ctx.shape = ratio, shape
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        if ctx.ratio.value is None:
            raise RuntimeError("a scaled particle value was back-propagated before its "
                               "gradient ratio was set")
        return grad * ctx.ratio.value.reshape(ctx.shape).to(grad.dtype), None, None


@dataclass
class Draw:
    """One draw of S particles for B points (module docstring). Tensors are [S, B]."""

    log_p: torch.Tensor
    log_q: torch.Tensor
    log_q_score: torch.Tensor | None   # the sites that are not reparameterised, unweighted
    score_sites: tuple[str, ...]
    log_q_fixed: torch.Tensor | None
    scale: torch.Tensor                # N / B, the data plate's scale
    ratio: GradientRatio | None
    log_q_raw: torch.Tensor | None = None  # sum of log q without the KL weights r_site
    kl_weight: torch.Tensor | None = None  # the latents' common r_site (None: they differ)

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_p - self.log_q

    @property
    def particles(self) -> int:
        return self.log_p.shape[0]


def _data_dim(name: str, site) -> int:
    dims = [f.dim for f in site["cond_indep_stack"] if f.name == DATA_PLATE and f.dim is not None]
    if not dims:
        raise InterfaceError(f"site '{name}' is not inside the plate named '{DATA_PLATE}'; the "
                             f"bounds are per data point, so every site must be in it")
    return dims[0]


def per_point(name: str, site, log_prob: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A site's log-density [S, B]: summed over the plates right of the data plate."""
    mask = site.get("mask")
    if mask is not None and mask is not True:
        log_prob = torch.where(torch.as_tensor(mask, device=log_prob.device), log_prob, 0.0)
    inner = -1 - _data_dim(name, site)
    lp = log_prob.sum(dim=tuple(range(-inner, 0))) if inner > 0 else log_prob
    if lp.dim() > 2:
        raise InterfaceError(f"site '{name}' has per-point log-density shape {tuple(lp.shape)}, "
                             f"not [S, B] = {list(shape)}; keep every plate other than "
                             f"'{DATA_PLATE}' inside it (max_plate_nesting)")
    return torch.broadcast_to(lp, shape)


def _samples(trace) -> dict:
    return {n: s for n, s in trace.nodes.items()
            if s["type"] == "sample" and not site_is_subsample(s)}


def _latents(trace) -> list[str]:
    return [n for n, s in _samples(trace).items() if not s["is_observed"]]


def _new_values(trace, latents, change) -> poutine.Trace:
    """A copy of ``trace`` whose latent values are ``change(name, site)`` (sites copied)."""
    out = trace.copy()
    for name in latents:
        out.nodes[name] = dict(trace.nodes[name], value=change(name, trace.nodes[name]))
    return out


def _scaled(ratio: GradientRatio, nesting: int):
    def change(name, site):
        value = site["value"]
        if not site["fn"].has_rsample:
            return value.detach()
        ev = site["fn"].event_dim
        shape = [1] * value.dim()
        shape[-(nesting + 1) - ev] = -1       # particles
        shape[_data_dim(name, site) - ev] = value.shape[_data_dim(name, site) - ev]
        return _ScaleGrad.apply(value, ratio, tuple(shape))
    return change


def _log_q(guide_trace, latents, shape, fixed: bool = False) -> tuple:
    """(sum of r * log q over every latent [S, B], the unweighted log q of the sites that are
    not reparameterised (their score function's log-density), their names, the unweighted sum
    over every latent), at each site's value, or at the value detached if ``fixed``."""
    total, raw, score, names = 0.0, 0.0, 0.0, []
    for name in latents:
        site = guide_trace.nodes[name]
        value = site["value"].detach() if fixed else site["value"]
        lp = per_point(name, site, site["fn"].log_prob(value), shape)
        total, raw = total + site["_relative_scale"] * lp, raw + lp
        if not site["fn"].has_rsample:
            score, names = score + lp, names + [name]
    return total, (score if names else None), tuple(names), raw


def _common_weight(trace, latents) -> torch.Tensor | None:
    """The relative scale r (the KL weight) shared by every latent site, or None if they
    differ (a hierarchical model's per-layer weights)."""
    weights = [trace.nodes[name]["_relative_scale"] for name in latents]
    first = weights[0]
    if all(w.shape == first.shape and torch.equal(w, first) for w in weights[1:]):
        return first
    return None


def draw(model, guide, args: tuple, kwargs: dict, particles: int, nesting: int,
         values: str = "sample", fixed: bool = False) -> Draw:
    """Run ``guide`` then ``model`` (replayed on the guide's latents) with ``particles`` draws per
    data point; ``nesting``: the model's max_plate_nesting (the particle plate goes left of it).
    ``values`` and ``fixed``: which gradient paths to keep (module docstring)."""
    if values not in VALUES:
        raise ValueError(f"values = {values!r}: one of {VALUES}")
    plate = pyro.plate(PARTICLE_PLATE, particles, dim=-(nesting + 1))
    guide_trace = poutine.trace(plate(guide)).get_trace(*args, **kwargs)
    latents = _latents(guide_trace)
    ratio = GradientRatio() if values == "scaled" else None
    seen = guide_trace
    if values != "sample":
        change = _scaled(ratio, nesting) if ratio else (lambda name, site: site["value"].detach())
        seen = _new_values(guide_trace, latents, change)
        if len(latents) > 1:  # rebuild the conditionals from the new values
            seen = poutine.trace(poutine.replay(plate(guide), trace=seen)).get_trace(*args,
                                                                                     **kwargs)
    model_trace = poutine.trace(poutine.replay(plate(model), trace=seen)).get_trace(*args,
                                                                                    **kwargs)
    observed = [s for s in _samples(model_trace).values() if s["is_observed"]]
    if not observed:
        raise InterfaceError("the model has no observed site (pyro.sample(..., obs=x))")
    scale = torch.as_tensor(observed[0]["scale"])
    batch = observed[0]["value"].shape[_data_dim("obs", observed[0]) - observed[0]["fn"].event_dim]
    shape = (particles, batch)

    log_p = 0.0
    for name, site in _samples(model_trace).items():
        lp = per_point(name, site, site["fn"].log_prob(site["value"]), shape)
        log_p = log_p + (torch.as_tensor(site["scale"]) / scale) * lp
    for trace in {id(guide_trace): guide_trace, id(seen): seen}.values():
        for name in latents:
            trace.nodes[name]["_relative_scale"] = torch.as_tensor(trace.nodes[name]["scale"]) / scale
    log_q, log_q_score, score_sites, log_q_raw = _log_q(seen, latents, shape)

    log_q_fixed = None
    if fixed:
        if values == "detach":
            log_q_fixed = log_q
        elif len(latents) > 1:
            held = _new_values(guide_trace, latents, lambda name, site: site["value"].detach())
            held = poutine.trace(poutine.replay(plate(guide), trace=held)).get_trace(*args,
                                                                                     **kwargs)
            for name in latents:
                held.nodes[name]["_relative_scale"] = guide_trace.nodes[name]["_relative_scale"]
            log_q_fixed = _log_q(held, latents, shape)[0]
        else:
            log_q_fixed = _log_q(guide_trace, latents, shape, fixed=True)[0]
    return Draw(log_p, log_q, log_q_score, score_sites, log_q_fixed, scale, ratio, log_q_raw,
                _common_weight(guide_trace, latents) if latents else None)
