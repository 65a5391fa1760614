"""A bound and its gradient estimator, chosen independently, as one Pyro-style objective.

    loss = -(N/B) sum_{b in batch} [ s_b + stop(L_b - s_b) ]

L_b: the bound of point b (``bounds.py``) from S particles; s_b: the estimator's surrogate
(``gradients/``). The data plate's N/B multiplies each point's bound outside its log-sum-exp:
Pyro's ``RenyiELBO`` scales the log weights inside it, which is not a bound on minibatches
(docs/estimators.md). The value of the loss is -(N/B) sum_b L_b whatever the estimator, so the
training curves of estimators of one bound are comparable.

Pairs are checked when built (``pairs.check_pair``): an estimator that ``needs`` a bound
capability (DReG: ``dreg``, RWS: ``rws``, ...) refuses a bound without it, in one line that lists
the bounds that have it.

The bound and the estimator are built from their own settings (each declares a settings
dataclass, ``pyrovae.runtime.settings``): ``BOUNDS.get(bound)(num_particles=K, **its settings)``,
``GRADIENTS.get(gradient)(**its settings)``; :func:`chosen_settings` splits one flat set of
settings (a ``[model.objective]`` table's) between the two.
"""

from __future__ import annotations

import dataclasses

import pyro.infer as infer
import torch

from pyrovae.runtime.registry import BOUNDS, GRADIENTS
from pyrovae.runtime.settings import settings_of
from pyrovae.objectives import gradients  # noqa: F401  (registers the estimators)
from pyrovae.objectives.bounds import Bound
from pyrovae.objectives.pairs import check_pair
from pyrovae.objectives.particles import draw

#: release 0.1's settings, which every bound took: dropped where the chosen bound lacks them
LEGACY_SETTINGS = frozenset({"groups", "renyi_alpha", "ciwae_beta"})


def chosen_settings(bound: str, gradient: str, values: dict) -> tuple[object, object]:
    """The settings dataclasses of ``bound`` and ``gradient``, from the flat ``values`` (their
    defaults where a key is missing; release 0.1's keys the bound lacks dropped, any other key
    neither takes refused)."""
    left, made = dict(values), []
    for registry, name in ((BOUNDS, bound), (GRADIENTS, gradient)):
        settings = settings_of(registry, name)
        own = [f.name for f in dataclasses.fields(settings)]
        made.append(settings(**{k: left.pop(k) for k in own if k in left}))
    stray = [k for k in left if k not in LEGACY_SETTINGS]
    if stray:
        takes = [f.name for s in made for f in dataclasses.fields(s)]
        raise TypeError(f"bound \"{bound}\" and gradient \"{gradient}\" take no setting "
                        f"{stray[0]!r} (their settings: {', '.join(takes) or 'none'})")
    return made[0], made[1]


def as_dict(settings) -> dict:
    """A settings dataclass's fields and values."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def label_of(registry, name: str, settings) -> str:
    """What the run's label adds for component ``name`` with ``settings``: its ``label``."""
    label = getattr(registry.get(name), "label", None)
    return label(settings) if callable(label) else Bound.label(settings)


class BoundObjective(infer.ELBO):
    """``bound`` with gradient estimator ``gradient`` (names in BOUNDS, GRADIENTS); K =
    ``num_particles`` draws per point (per group: MIWAE/PIWAE draw ``groups`` * K);
    ``biased``: accept an estimator that is biased for the bound (``check_pair``);
    ``settings``: those of the bound and of the estimator, by name (``renyi_alpha=0.3``,
    ``groups=2``; the defaults of their settings dataclasses for the others)."""

    def __init__(self, bound: str = "iwae", gradient: str = "reparam", num_particles: int = 1,
                 *, max_plate_nesting: int = 1, biased: bool = False, **settings):
        check_pair(bound, gradient, num_particles, biased=biased)
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=False)
        self.bound_name, self.gradient_name = bound, gradient
        bound_settings, gradient_settings = chosen_settings(bound, gradient, settings)
        self.bound = BOUNDS.get(bound)(num_particles=num_particles, **as_dict(bound_settings))
        self.estimator = GRADIENTS.get(gradient)(**as_dict(gradient_settings))
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
