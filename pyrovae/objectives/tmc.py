"""Tensor Monte Carlo (Aitchison 2019): K draws of *each* latent site, all K^n combinations.

For a model with n latent sites z_1..z_n (in guide order) and a guide that draws K samples of
each site, given each combination of the samples of the sites it conditions on, the estimate
of p(x_b) per data point is

    p^(x_b) = (1/K^n) sum_{k_1..k_n} p(x_b, z^k) / q(z^k | x_b)        (z^k = z_1^{k_1}, ...)
    L_TMC   = log p^(x_b)                                              [B]

with every factor evaluated at its own sample and its parents' samples. Sites the guide draws
independently (q(z1|x) q(z2|x)) are combined across all K x K pairs, which is Aitchison's tensor
Monte Carlo; a site drawn given another (q(z2|z1)) gets K samples per parent sample, so the sum
is nested importance sampling. Either way E[p^] = p(x), so L_TMC is a lower bound in expectation,
at least as tight as IWAE with K draws, and exactly log p(x) at the exact posterior. With one
latent site it is IWAE(K). The samples sit in enumeration dims left of the model's plates
(Pyro's ``num_samples`` enumeration, ``expand=True``); the factors are summed out per point,
so the data plate's N/B multiplies the result outside the log-sum-exp. Memory grows as K^n.

Only the reparameterization gradient is defined here (every guide site reparameterised).
"""

from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.infer import config_enumerate

from pyrovae.runtime.interface import InterfaceError
from pyrovae.runtime.registry import BOUNDS
from pyrovae.objectives.bounds import Bound
from pyrovae.objectives.particles import _data_dim, _latents, _samples


def _per_point_factor(name: str, site, log_prob: torch.Tensor) -> torch.Tensor:
    """A site's log-density summed over the plates inside the data plate: [K..., B]."""
    inner = -1 - _data_dim(name, site)
    lp = log_prob
    mask = site.get("mask")
    if mask is not None and mask is not True:
        lp = torch.where(torch.as_tensor(mask, device=lp.device), lp, 0.0)
    return lp.sum(dim=tuple(range(-inner, 0))) if inner > 0 else lp


@BOUNDS.register("tmc", only=("reparam",))
class TMC(Bound):
    """log (1/K^n) sum over all sample combinations of p(x, z) / q(z|x) (module docstring)."""

    def value(self, log_w):
        raise TypeError("tmc is computed from the traces (TMC.estimate), not from log w [S, B]")

    def estimate(self, model, guide, args, kwargs, nesting: int):
        """(L_TMC [B] with its reparameterization gradient, the data plate's scale N/B)."""
        k = self.settings.num_particles
        sampled = config_enumerate(guide, "parallel", expand=True, num_samples=k)
        enum = poutine.enum(first_available_dim=-(nesting + 1))
        guide_trace = poutine.trace(enum(sampled)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs)
        latents = _latents(guide_trace)
        observed = [s for s in _samples(model_trace).values() if s["is_observed"]]
        if not observed:
            raise InterfaceError("the model has no observed site (pyro.sample(..., obs=x))")
        scale = torch.as_tensor(observed[0]["scale"])
        total = 0.0
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for name, site in _samples(trace).items():
                if sign < 0 and not site["fn"].has_rsample:
                    raise InterfaceError(f"bound = \"tmc\" needs reparameterised guide sites; "
                                         f"'{name}' is not")
                if sign < 0 and site["is_observed"]:
                    continue
                lp = _per_point_factor(name, site, site["fn"].log_prob(site["value"]))
                total = total + sign * (torch.as_tensor(site["scale"]) / scale) * lp
        total = torch.as_tensor(total)
        dims = tuple(range(total.dim() - 1))
        bound = torch.logsumexp(total, dim=dims) if dims else total
        return bound - len(latents) * math.log(k), scale
