"""The unnormalized posterior of any interface model as a function of one flat vector per point,
for samplers and local optimisers (ais.py, hmc.py, gaps.py) that need gradients in z.

For data x [B, D] and C chains (or particles) per point, every latent site s of the model
(found from a trace, not by name: several sites, a hierarchy, nested plates) is flattened to
[C, B, n_s] with its data-plate dim moved next to the chain dim, mapped to the unconstrained
space by u_s = T_s^-1(z_s) (T_s = ``biject_to(support)``: the identity for real sites), and the
sites are joined into one vector u [C, B, n], n = sum_s n_s. Then, with every site's log-density
summed over its event and the plates inside the data plate (traces.py):

    log p(z)      = sum_{latent s} log p(z_s | parents)            model conditioned on z  [C, B]
    log p(x | z)  = sum_{observed s} log p(x_s | z)                                       [C, B]
    log q(z | x)  = sum_{guide sites s} log q(z_s | ...)           guide conditioned on z  [C, B]
    log |J|       = sum_s log |det dT_s(u_s) / du_s|                                       [C, B]

each computed by ``poutine.condition`` + ``poutine.trace`` of the program run under a chain
plate of size C left of the model's plates, so autograd gives d/du of any of them. Densities
are unscaled (no N / B, no KL weight). Discrete latent sites are refused.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.interface import max_plate_nesting, takes_n_data
from pyrovae.runtime.traces import _data_dim, _sample_sites, _site_log_prob

_CHAINS = "_pyrovae_chains"


@dataclass
class Site:
    """One latent site's layout: ``moved`` is the value's shape with the data dim (at
    ``pos``) moved to position 1, chains at 0 (with C = 1); ``size`` numbers per point."""

    name: str
    pos: int
    moved: tuple
    size: int
    transform: object


def chain_plate(module, chains: int):
    """The plate of C chains (or particles), left of every plate of the model."""
    return pyro.plate(_CHAINS, chains, dim=-(max_plate_nesting(module) + 1))


def _per_point(t: torch.Tensor, chains: int, points: int) -> torch.Tensor:
    """A log-density [C?, ..., B] (data dim last) -> [C, B], summing the plates in between."""
    t = t.reshape((1,) * max(0, 2 - t.dim()) + t.shape)
    return t.expand(chains, *t.shape[1:]).reshape(chains, -1, points).sum(1)


def run_program(fn, module, x, chains, values=None):
    """Trace ``fn`` (model or guide) on x under a plate of C chains, conditioned on values."""
    if values is not None:
        fn = poutine.condition(fn, data=values)
    kwargs = {"n_data": x.shape[0]} if takes_n_data(fn) else {}
    with pyro.validation_enabled(False), chain_plate(module, chains):
        return poutine.trace(fn).get_trace(x, **kwargs)


class LatentSpace:
    """The latent sites of ``module``'s model on x [B, D], and the maps between their values
    {site: [C, ...]} and the flat unconstrained vector u [C, B, n] (module docstring)."""

    def __init__(self, module, x: torch.Tensor):
        self.module, self.x, self.points = module, x, x.shape[0]
        with torch.no_grad():
            trace = run_program(module.model, module, x, 1)
        self.sites, self.observed = [], []
        for name, site in _sample_sites(trace):
            if site["is_observed"]:
                self.observed.append(name)
                continue
            fn = site["fn"]
            if getattr(fn.support, "is_discrete", False):
                raise ConfigError(f"latent site '{name}' is discrete: AIS and the local "
                                  f"posteriors move continuous latents only; use the "
                                  f"importance-sampled NLL (--nll-samples) for this model")
            value = site["value"]
            pos = value.dim() - fn.event_dim + _data_dim(name, site)
            moved = tuple(value.movedim(pos, 1).shape)
            self.sites.append(Site(name, pos, moved, math.prod(moved[2:]),
                                   biject_to(fn.support)))
        if not self.sites:
            raise ConfigError(f"{type(module).__name__}.model has no latent site to anneal "
                              f"or optimise")
        self.size = sum(s.size for s in self.sites)
        self.names = [s.name for s in self.sites]

    # ---- values <-> flat vector ----------------------------------------------------------

    def flatten(self, values: dict) -> torch.Tensor:
        """{site: value [C, ...]} -> unconstrained u [C, B, n]."""
        parts = []
        for s in self.sites:
            u = s.transform.inv(values[s.name])
            parts.append(u.movedim(s.pos, 1).reshape(u.shape[0], self.points, s.size))
        return torch.cat(parts, dim=-1)

    def unflatten(self, u: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """u [C, B, n] -> ({site: z [C, ...]}, log |J| [C, B])."""
        chains, values = u.shape[0], {}
        ladj = torch.zeros(chains, self.points, dtype=u.dtype, device=u.device)
        for s, part in zip(self.sites, u.split([s.size for s in self.sites], dim=-1)):
            us = part.reshape(chains, *s.moved[1:]).movedim(1, s.pos)
            z = s.transform(us)
            values[s.name] = z
            if not _is_identity(s.transform):
                j = s.transform.log_abs_det_jacobian(us, z)
                ladj = ladj + _per_point(j.movedim(s.pos, -1), chains, self.points)
        return values, ladj

    # ---- draws -------------------------------------------------------------------------

    @torch.no_grad()
    def prior_draws(self, chains: int) -> torch.Tensor:
        """u [C, B, n] of C draws z ~ p(z) per point (the model run unconditioned)."""
        trace = run_program(self.module.model, self.module, self.x, chains)
        return self.flatten({s.name: trace.nodes[s.name]["value"] for s in self.sites})

    @torch.no_grad()
    def guide_draws(self, chains: int) -> torch.Tensor:
        """u [C, B, n] of C draws z ~ q(z|x) per point; a latent the guide lacks is drawn
        from the model given the guide's draws."""
        guide = run_program(self.module.guide, self.module, self.x, chains)
        values = {n: guide.nodes[n]["value"] for n in self.names if n in guide.nodes}
        if len(values) < len(self.names):
            model = run_program(self.module.model, self.module, self.x, chains, values)
            values = {n: model.nodes[n]["value"] for n in self.names}
        return self.flatten(values)

    # ---- log densities (differentiable in u) ----------------------------------------------

    def _sum(self, trace, names, chains):
        return sum(_per_point(_site_log_prob(n, trace.nodes[n]), chains, self.points)
                   for n in names)

    def log_joint(self, values: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(z), log p(x | z)), each [C, B], for latent values {site: [C, ...]}."""
        chains = next(iter(values.values())).shape[0]
        trace = run_program(self.module.model, self.module, self.x, chains, values)
        return self._sum(trace, self.names, chains), self._sum(trace, self.observed, chains)

    def log_guide(self, values: dict) -> torch.Tensor:
        """log q(z | x) [C, B] of the guide's sites at the given values."""
        chains = next(iter(values.values())).shape[0]
        trace = run_program(self.module.guide, self.module, self.x, chains, values)
        names = [n for n, s in _sample_sites(trace) if n in values]
        if len(names) < len(self.names):
            missing = sorted(set(self.names) - set(names))
            raise ConfigError(f"the guide has no site for the latent(s) {', '.join(missing)}, "
                              f"so q(z|x) is not a density over every latent; use "
                              f"ais_init = 'prior' (--ais-init prior)")
        return self._sum(trace, names, chains)


def _is_identity(t) -> bool:
    base = getattr(t, "base_transform", t)
    parts = getattr(base, "parts", None)
    return parts == [] or (parts is not None and all(_is_identity(p) for p in parts))


def log_weight_traced(module, x: torch.Tensor, particles: int) -> torch.Tensor:
    """log p(x, z) - log q(z|x) [K, B] for K draws z ~ q(z|x) per row, differentiable in the
    guide's parameters through reparameterized draws (every site sampled, none enumerated)."""
    guide = run_program(module.guide, module, x, particles)
    model = run_program(poutine.replay(module.model, trace=guide), module, x, particles)
    b = x.shape[0]
    in_guide = [n for n, s in _sample_sites(guide) if not s["is_observed"]]
    own = [n for n, s in _sample_sites(model) if s["is_observed"] or n in in_guide]
    log_p = sum(_per_point(_site_log_prob(n, model.nodes[n]), particles, b) for n in own)
    log_q = sum(_per_point(_site_log_prob(n, guide.nodes[n]), particles, b) for n in in_guide)
    return log_p - log_q


@contextlib.contextmanager
def no_param_grads(module):
    """Freeze ``module``'s parameters for the block (gradients flow to z only)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
