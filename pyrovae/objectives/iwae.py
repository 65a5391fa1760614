"""The importance-weighted bound (IWAE, Burda et al. 2015), per data point.

For each data point x_i and K draws z_ik ~ q(z|x_i)::

    log w_ik  = log p(x_i | z_ik) + beta * (log p(z_ik) - log q(z_ik | x_i))
    L_K(x_i)  = log (1/K) sum_k exp(log w_ik)
    loss      = -(N / B) * sum_{i in batch} L_K(x_i)

E[L_1] is the ELBO, E[L_K] increases with K and tends to log p(x_i) (for beta = 1). The
data plate's scale N/B multiplies the per-point bounds *outside* the log-sum-exp. Pyro's
``RenyiELBO(alpha=0)`` applies it inside, to each log weight: the same bound when the batch
is the whole data set (N = B; tested), a different objective when training on minibatches.

The K draws are vectorised over a particle plate left of the model's plates, so the networks
see z of shape [K, B, L]. Every site must sit in the data plate (each log-density is [K, B]);
z must be reparameterised. Site scales carry the data plate's N/B and the model's beta: the
observed sites' scale is taken as N/B and each latent site's scale relative to it as beta.
"""

from __future__ import annotations

import math

import pyro
import pyro.infer as infer
import torch
from pyro.infer.enum import get_importance_trace

from ..interface import DATA_PLATE, InterfaceError
from ..registry import OBJECTIVES


def _per_point(name: str, site, k: int) -> torch.Tensor:
    """A site's log-density per particle and data point [K, B]: summed over the plates nested
    inside the data plate (dims right of it)."""
    lp = site["unscaled_log_prob"]
    dims = [f.dim for f in site["cond_indep_stack"] if f.name == DATA_PLATE and f.dim is not None]
    if not dims:
        raise InterfaceError(f"iwae: site '{name}' is not inside the plate named "
                             f"'{DATA_PLATE}'; the bound is per data point, so every site must "
                             f"be in it")
    inner = -1 - dims[0]
    if inner > 0:
        lp = lp.sum(dim=tuple(range(-inner, 0)))
    if lp.dim() != 2 or lp.shape[0] != k:
        raise InterfaceError(f"iwae: site '{name}' has per-point log-density shape "
                             f"{tuple(lp.shape)}, not [K, B] with K = {k}; put the particle "
                             f"plate's dim left of every plate (max_plate_nesting)")
    return lp


class IWAE_ELBO(infer.ELBO):
    """Importance-weighted bound with K = ``num_particles`` draws per data point."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, **kwargs):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=False, **kwargs)
        self.data_plates = max_plate_nesting

    def _get_trace(self, model, guide, args, kwargs):
        return get_importance_trace("flat", self.data_plates + 1, model, guide, args, kwargs)

    def log_weights(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w [K, B], the data plate's scale N/B) for one draw of K particles per point."""
        k = self.num_particles
        # the plate wraps model and guide inside Pyro's replay, which stops outer handlers
        particles = pyro.plate("iwae_particles", k, dim=-(self.data_plates + 1))
        model_trace, guide_trace = self._get_trace(particles(model), particles(guide), args,
                                                   kwargs)
        observed = [s for s in model_trace.nodes.values()
                    if s["type"] == "sample" and s["is_observed"]]
        if not observed:
            raise ValueError("iwae: the model has no observed site")
        scale = torch.as_tensor(observed[0]["scale"])
        log_w = 0.0
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or (sign < 0 and site["is_observed"]):
                    continue
                if sign < 0 and not site["fn"].has_rsample:
                    raise InterfaceError(f"iwae needs a reparameterised guide; site '{name}' is "
                                         f"not (use elbo = \"tracegraph\" or \"enum\")")
                lp = _per_point(name, site, k)
                log_w = log_w + sign * (torch.as_tensor(site["scale"]) / scale) * lp
        return log_w, scale

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """-(N/B) sum_i L_K(x_i): a scalar to minimise."""
        log_w, scale = self.log_weights(model, guide, *args, **kwargs)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)  # [B]
        return -(scale * bound.sum())

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())


OBJECTIVES.register("iwae", IWAE_ELBO, vectorize=False)
