"""A bound and its gradient estimator, chosen independently, as one Pyro-style objective.

    loss = -(N/B) sum_{b in batch} [ s_b + stop(L_b - s_b) ]

L_b: the bound of point b (``bounds.py``) from S particles; s_b: the estimator's surrogate
(``gradients/``). The data plate's N/B multiplies each point's bound outside its log-sum-exp:
Pyro's ``RenyiELBO`` scales the log weights inside it, which is not a bound on minibatches
(docs/estimators.md). The value of the loss is -(N/B) sum_b L_b whatever the estimator, so the
training curves of estimators of one bound are comparable.

Pairs are checked when built (``config.check_pair``): an estimator that ``needs`` a bound
capability (DReG: ``dreg``, RWS: ``rws``, ...) refuses a bound without it, in one line that lists
the bounds that have it.
"""

from __future__ import annotations

import pyro.infer as infer
import torch

from pyrovae.config import check_pair
from pyrovae.runtime.registry import BOUNDS, GRADIENTS
from pyrovae.objectives import gradients  # noqa: F401  (registers the estimators)
from pyrovae.objectives.bounds import BoundSettings
from pyrovae.objectives.particles import draw


class BoundObjective(infer.ELBO):
    """``bound`` with gradient estimator ``gradient`` (names in BOUNDS, GRADIENTS); K =
    ``num_particles`` draws per point (per group: MIWAE/PIWAE draw ``groups`` * K);
    ``biased``: accept an estimator that is biased for the bound (``check_pair``)."""

    def __init__(self, bound: str = "iwae", gradient: str = "reparam", num_particles: int = 1,
                 groups: int = 1, renyi_alpha: float = 0.5, ciwae_beta: float = 0.5,
                 max_plate_nesting: int = 1, biased: bool = False, **kwargs):
        check_pair(bound, gradient, num_particles, biased=biased)
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=False)
        self.bound_name, self.gradient_name = bound, gradient
        self.bound = BOUNDS.get(bound)(BoundSettings(num_particles, groups, renyi_alpha,
                                                         ciwae_beta))
        self.estimator = GRADIENTS.get(gradient)()
        self.data_plates = max_plate_nesting

    def __repr__(self) -> str:
        return f"BoundObjective({self.bound_name}, {self.gradient_name}, K={self.num_particles})"

    def draw(self, model, guide, *args, **kwargs):
        """One draw of the bound's particles, with the paths the estimator keeps."""
        values, fixed = self.estimator.plan(self.bound)
        d = draw(model, guide, args, kwargs, self.bound.particles, self.data_plates, values, fixed)
        self.estimator.check(self.gradient_name, d)
        return d

    def per_point(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """(L [B] the bound, s [B] the surrogate), and the data plate's scale N/B."""
        if hasattr(self.bound, "estimate"):  # a bound read off the traces (tmc)
            value, scale = self.bound.estimate(model, guide, args, kwargs, self.data_plates)
            return value.detach(), value, scale
        d = self.draw(model, guide, *args, **kwargs)
        value = self.bound.value(d.log_w.detach())
        return value, self.estimator.surrogate(self.bound, d), d.scale

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """-(N/B) sum_b L_b in value, the estimator in gradient: a scalar to minimise."""
        value, surrogate, scale = self.per_point(model, guide, *args, **kwargs)
        return -(scale * (surrogate + (value - surrogate).detach()).sum())

    def _get_trace(self, model, guide, args, kwargs):  # (abstract in infer.ELBO; not used)
        raise NotImplementedError("BoundObjective draws its particles itself (particles.draw)")

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            if hasattr(self.bound, "estimate"):
                value, scale = self.bound.estimate(model, guide, args, kwargs, self.data_plates)
                return float(-(scale * value.sum()))
            d = draw(model, guide, args, kwargs, self.bound.particles, self.data_plates)
            return float(-(d.scale * self.bound.value(d.log_w).sum()))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())
