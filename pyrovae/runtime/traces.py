"""Per-data-point log-densities of any model that follows the interface, read off Pyro traces.

``point_traces(module, x)`` runs the guide, then the model replaying the guide's draws, and
returns every sample site's *unscaled* log-density per data point: for site s with value v_s,

    lp_s = log f_s(v_s), summed over the event and over any plate nested inside the data plate
           -> shape [E..., (K,) B]

where B indexes the data points (the plate named "data"), K the particles (``particles=K``
runs both programs inside a particle plate left of the model's plates, so every data point
gets K independent draws), and E... are enumeration dims: a discrete guide site marked
``infer={"enumerate": ...}`` (or, with ``enumerate="all"``, every discrete guide site with
finite support) is evaluated at all its values at once instead of being sampled.

From these, with q_E = exp(sum of the enumerated guide sites' lp) the probability of each
enumerated configuration:

    log w = logsumexp_E [ sum_model lp - sum_{sampled guide sites} lp ]         (log_weight)

an importance weight whose expectation is p(x): sum_y q(y) p(x, y, z_y) / (q(y) q(z_y|y)) has
expectation sum_y p(x, y) = p(x). A latent site of the model that the guide does not sample is
drawn from the model itself, so its density cancels and is left out of both sums.

Shapes: x [B, D] -> terms [E..., (K,) B].
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyrovae.runtime.interface import DATA_PLATE, InterfaceError, max_plate_nesting

ENUMERATE = ("marked", "all", "none")
_PARTICLES = "_pyrovae_particles"


@dataclass
class PointTraces:
    """The guide and model traces of a batch with per-point log-densities (module docstring)."""

    guide: poutine.Trace
    model: poutine.Trace
    lp_model: dict[str, torch.Tensor]          # every model sample site
    lp_guide: dict[str, torch.Tensor]          # every guide sample site
    observed: list[str]                        # model sites with observed values
    sampled: list[str]                         # latent sites the guide draws
    enumerated: list[str]                      # latent sites the guide enumerates
    prior_only: list[str] = field(default_factory=list)  # model latents the guide lacks
    point_dims: int = 1                        # trailing dims that are not enumeration: (K,) B

    def latent_values(self) -> dict[str, torch.Tensor]:
        return {name: self.guide.nodes[name]["value"] for name in self.sampled}

    def _full(self, terms) -> torch.Tensor:
        total = sum(terms, torch.zeros(()))
        return torch.as_tensor(total)

    def log_joint_ratio(self) -> torch.Tensor:
        """sum_model lp - sum_{sampled guide sites} lp, before summing out enumeration."""
        own = [self.lp_model[n] for n in self.observed + self.sampled + self.enumerated]
        return self._full(own) - self._full(self.lp_guide[n] for n in self.sampled)

    def log_enum_prob(self) -> torch.Tensor:
        """log q_E: the guide's log-probability of each enumerated configuration."""
        return self._full(self.lp_guide[n] for n in self.enumerated)

    def enum_dims(self, t: torch.Tensor) -> tuple[int, ...]:
        return tuple(range(t.dim() - self.point_dims))

    def sum_out(self, log_t: torch.Tensor) -> torch.Tensor:
        """logsumexp over the enumeration dims: [E..., (K,) B] -> [(K,) B]."""
        dims = self.enum_dims(log_t)
        return torch.logsumexp(log_t, dim=dims) if dims else log_t

    def expect(self, values: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """sum_E q_E * values: the expectation over the enumerated sites -> [(K,) B]."""
        weighted = torch.exp(log_q) * values
        dims = self.enum_dims(weighted)
        return weighted.sum(dims) if dims else weighted

    def log_weight(self) -> torch.Tensor:
        """log p(x, z) - log q(z|x) per point, enumerated sites summed out: [(K,) B]."""
        return self.sum_out(self.log_joint_ratio())


def _data_dim(name: str, site) -> int:
    for frame in site["cond_indep_stack"]:
        if frame.name == DATA_PLATE and frame.dim is not None:
            return frame.dim
    raise InterfaceError(f"sample site '{name}' is not inside a vectorized pyro.plate named "
                         f"'{DATA_PLATE}' over the rows of x; per-point log-densities need every "
                         f"site in it (docs/custom_models.md)")


def _site_log_prob(name: str, site) -> torch.Tensor:
    """The unscaled log-density of a site, masked, summed over the event and the plates nested
    inside the data plate: [..., B]."""
    lp = site["fn"].log_prob(site["value"])
    if site["mask"] is not None and not isinstance(site["mask"], bool):
        lp = torch.where(site["mask"], lp, torch.zeros_like(lp))
    elif site["mask"] is False:
        lp = torch.zeros_like(lp)
    inner = -1 - _data_dim(name, site)  # dims right of the data plate
    return lp.sum(dim=tuple(range(-inner, 0))) if inner > 0 else lp


def _enum_config(mode: str):
    def config(msg):
        if msg["type"] != "sample" or msg["is_observed"]:
            return {}
        marked = msg["infer"].get("enumerate") is not None
        discrete = getattr(msg["fn"], "has_enumerate_support", False)
        if marked or (mode == "all" and discrete):
            return {"enumerate": "parallel"}
        return {}
    return config


def _sample_sites(trace: poutine.Trace):
    return [(n, s) for n, s in trace.nodes.items()
            if s["type"] == "sample" and not site_is_subsample(s)]


@torch.no_grad()
def point_traces(module, x: torch.Tensor, *args, particles: int = 0, enumerate: str = "marked",
                 **kwargs) -> PointTraces:
    """Trace ``module``'s guide and model on x [B, D] (module docstring).

    ``particles`` K > 0: K draws per point, in a plate at dim -(max_plate_nesting + 1).
    ``enumerate``: "marked" (sites the guide marks), "all" (every finite discrete guide site)
    or "none" (every site sampled). Pyro's argument validation is off.
    """
    if enumerate not in ENUMERATE:
        raise ValueError(f"enumerate = {enumerate!r} is not one of {ENUMERATE}")
    nesting = max_plate_nesting(module)
    guide, model = module.guide, module.model
    if enumerate != "none":
        first = -(nesting + 1) - (1 if particles else 0)
        guide = poutine.enum(poutine.infer_config(guide, _enum_config(enumerate)),
                             first_available_dim=first)
    plate = (pyro.plate(_PARTICLES, particles, dim=-(nesting + 1)) if particles
             else contextlib.nullcontext())
    with pyro.validation_enabled(False), plate:
        guide_tr = poutine.trace(guide).get_trace(x, *args, **kwargs)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, *args,
                                                                                   **kwargs)
    lp_guide = {n: _site_log_prob(n, s) for n, s in _sample_sites(guide_tr)}
    lp_model = {n: _site_log_prob(n, s) for n, s in _sample_sites(model_tr)}
    observed = [n for n, s in _sample_sites(model_tr) if s["is_observed"]]
    if not observed:
        raise InterfaceError(f"{type(module).__name__}.model observes no site: give x as "
                             f"pyro.sample(..., obs=x)")
    in_guide = {n for n, s in _sample_sites(guide_tr) if not s["is_observed"]}
    enumerated = [n for n, s in _sample_sites(guide_tr)
                  if n in in_guide and s["infer"].get("_enumerate_dim") is not None]
    ordered = [n for n, s in _sample_sites(guide_tr) if n in in_guide]  # trace order: the
    sampled = [n for n in ordered if n not in enumerated]  # log-densities sum in a fixed order
    missing = [n for n in ordered if n not in lp_model]
    if missing:
        raise InterfaceError(f"guide site '{missing[0]}' has no site of that name in the model")
    prior_only = [n for n, s in _sample_sites(model_tr)
                  if not s["is_observed"] and n not in in_guide]
    return PointTraces(guide=guide_tr, model=model_tr, lp_model=lp_model, lp_guide=lp_guide,
                       observed=observed, sampled=sampled, enumerated=enumerated,
                       prior_only=prior_only, point_dims=2 if particles else 1)


def trace_bytes(traces: PointTraces) -> int:
    """Bytes of the tensors two traces hold (values and distribution parameters): a lower
    bound on the memory one draw per point takes."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if torch.is_tensor(t) and id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()

    for trace in (traces.guide, traces.model):
        for _, site in _sample_sites(trace):
            add(site["value"])
            fn = site["fn"]
            while fn is not None:
                for v in vars(fn).values():
                    add(v)
                fn = getattr(fn, "base_dist", None)
    return total


@contextlib.contextmanager
def eval_mode(module):
    """``module.eval()`` for the block, restoring its training flag after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w[k]) over dim 0: [K, ...] -> [...]."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
