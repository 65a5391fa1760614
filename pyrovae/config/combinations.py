"""The combination matrix: every bound x gradient estimator x KL weighting x model kind x guide
family, generated from the registries (never a hand-kept list), with what the config says of
each: accepted, or refused in one line (the ConfigError's message).

    bound       BOUNDS                      (the (elbo, reparam) pair once per Pyro estimator
                                            of ``model.elbo``: trace, meanfield, tracegraph)
    gradient    GRADIENTS
    weighting   1 | beta=0.5 | warm-up (linear, read mid-way) | per-layer (hvae kl_weights),
                where the kind has the setting
    kind        MODEL_KINDS, each a tiny config of its dataclass
    guide       POSTERIORS for kinds with ``[model.posterior]``, else the kind's own guide

Each accepted combination has a *target*, what its gradient's mean is (the GRADIENTS
capability ``target``; PIWAE's split by the BOUNDS capability ``targets``):

    bound    the gradient of the expected bound E[L] (with the KL weight in log w)
    wake     reweighted wake-sleep: wake-theta = the bound's model gradient, wake-phi =
             sum_k w~_k grad log q(z_k|x) (self-normalised weights of the tempered target)
    piwae    the model's parameters: grad E[IWAE(M K)]; the guide's: grad E[MIWAE(M, K)]
    biased   asked for by ``objective.biased`` (stl on a multi-sample bound): no target

Whether each target is met is checked, not declared: ``benchmarks/estimator_matrix.py`` and
``tests/objectives/test_matrix.py`` hold every accepted combination against reference gradients written
independently of ``pyrovae/objectives``.

The KL decomposition (``[model.kl] decomposition``, KL_DECOMPOSITIONS) is one more axis, held
at ``none`` in :func:`combinations`; :func:`decomposition_combinations` crosses each other
decomposition with every (bound, gradient) pair, weighting, kind and guide. Its accepted cells
(kind vae, the diagonal guide, elbo = meanfield with the default pair) have the target
``decomposition``: the loss and gradient of the surrogate its docs state, held draw by draw
against a reference written in plain torch in ``tests/objectives/test_kl_decomposition.py``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import (BOUNDS, GRADIENTS, KL_DECOMPOSITIONS, MODEL_KINDS,
                                      OBJECTIVES, POSTERIORS)
from pyrovae.config.fields import section_from_dict

#: KL weightings: name -> the [model] keys that set it (those a kind lacks refuse it)
WEIGHTINGS: dict[str, dict] = {
    "1": {},
    "beta=0.5": {"kl": {"beta": 0.5}},
    "warm-up": {"kl": {"schedule": "linear", "warmup": 10}},
    "per-layer": {"kl_weights": [1.0, 0.5]},
}
#: the step at which a warm-up is read (beta_t = 0.5 of its top value)
WARMUP_STEP = 5
#: Pyro's estimators of the default (elbo, reparam) pair that the matrix checks
PYRO_ELBOS = ("trace", "meanfield", "tracegraph")

#: the tiny [model] table of each built-in kind (a plug-in kind: its dataclass's defaults)
TINY: dict[str, dict] = {
    "vae": {"latent_dim": 2, "hidden": [8], "likelihood": "bernoulli"},
    "ssvae": {"latent_dim": 2, "hidden": [8], "classifier": [8], "labels": 20,
              "validation": 0, "label_batch_size": 10, "likelihood": "bernoulli"},
    "hvae": {"stochastic": [3, 2], "hidden": [[8], [8]], "likelihood": "bernoulli"},
    "cvae": {"latent_dim": 2, "hidden": [8], "likelihood": "bernoulli"},
    "module": {},
}


@dataclass(frozen=True)
class Combination:
    """One cell: its axes, the [model] table that sets it, and what the config says."""

    bound: str
    gradient: str
    elbo: str                 # model.elbo ("trace" unless a Pyro estimator is the cell)
    weighting: str
    kind: str
    guide: str
    table: dict
    refused: str | None       # the one-line refusal, None where accepted
    target: str | None        # what the gradient's mean is (module docstring)

    @property
    def accepted(self) -> bool:
        return self.refused is None

    @property
    def estimator(self) -> str:
        """The gradient column: ``reparam (Pyro trace)`` for the default pair's estimators."""
        if self.bound == "elbo" and self.gradient == "reparam":
            return f"reparam (Pyro {self.elbo})"
        return self.gradient

    def label(self) -> str:
        return (f"{self.kind}/{self.guide} {self.bound}/{self.estimator} "
                f"weight={self.weighting}")


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _applies(kind: str, weighting: str) -> bool:
    """Whether the kind's dataclass has the keys that set ``weighting``."""
    fields = {f.name for f in dataclasses.fields(MODEL_KINDS.capability(kind, "config"))}
    return all(key in fields for key in WEIGHTINGS[weighting])


def _guides(kind: str) -> tuple[str, ...]:
    """The guide families of a kind: POSTERIORS where its dataclass has [model.posterior]."""
    cls = MODEL_KINDS.capability(kind, "config")
    fields = {f.name for f in dataclasses.fields(cls)}
    return tuple(POSTERIORS) if "posterior" in fields else ("own",)


def target_of(bound: str, gradient: str, biased: bool) -> str:
    """What the gradient's mean is (module docstring)."""
    if biased:
        return "biased"
    return BOUNDS.capability(bound, "targets") or GRADIENTS.capability(gradient, "target",
                                                                       "bound")


def _pairs(num_particles: int):
    """(bound, gradient, elbo) of the matrix: every registered pair, the default pair once
    per Pyro estimator."""
    for bound in BOUNDS:
        for gradient in GRADIENTS:
            if bound == "elbo" and gradient == "reparam":
                for elbo in PYRO_ELBOS:
                    if elbo in OBJECTIVES:
                        yield bound, gradient, elbo
            else:
                yield bound, gradient, "trace"


def _table(kind, guide, bound, gradient, elbo, weighting, num_particles, groups):
    table = _merge(TINY.get(kind, {}), WEIGHTINGS[weighting])
    table.update(kind=kind, elbo=elbo, num_particles=num_particles)
    if guide != "own":
        table["posterior"] = {"name": guide, "rank": 1, "flows": 1, "context": 4}
    if not (bound == "elbo" and gradient == "reparam"):
        table["objective"] = {"bound": bound, "gradient": gradient, "groups": groups}
    return table


def combinations(num_particles: int = 3, groups: int = 2, kinds=None) -> list[Combination]:
    """Every combination the registries allow (module docstring), each with the config's
    verdict. ``num_particles`` K (per group) and ``groups`` M are the multi-sample settings
    used throughout; ``kinds``: restrict to these model kinds."""
    out = []
    for kind in (kinds or MODEL_KINDS):
        cls = MODEL_KINDS.capability(kind, "config")
        for guide in _guides(kind):
            for bound, gradient, elbo in _pairs(num_particles):
                for weighting in (w for w in WEIGHTINGS if _applies(kind, w)):
                    table = _table(kind, guide, bound, gradient, elbo, weighting,
                                   num_particles, groups)
                    refused = None
                    try:
                        config = section_from_dict(cls, table, "model")
                    except ConfigError as err:
                        refused = str(err)
                    biased = bool(refused is None and getattr(
                        getattr(config, "objective", None), "biased", False))
                    target = None if refused else target_of(bound, gradient, biased)
                    out.append(Combination(bound, gradient, elbo, weighting, kind, guide,
                                           table, refused, target))
    return out


def decomposition_combinations(num_particles: int = 1, kinds=None) -> list[tuple[str, Combination]]:
    """(decomposition, cell) for every KL decomposition but ``none`` crossed with the cells of
    :func:`combinations` (``num_particles`` K; 1 is the only K a decomposition takes), each
    with the config's verdict; an accepted cell's target is ``decomposition``."""
    out = []
    for name in KL_DECOMPOSITIONS:
        if name == "none":
            continue
        for c in combinations(num_particles, kinds=kinds):
            table = _merge(c.table, {"kl": {"decomposition": name}})
            cls = MODEL_KINDS.capability(c.kind, "config")
            try:
                section_from_dict(cls, table, "model")
                refused = None
            except ConfigError as err:
                refused = str(err)
            out.append((name, dataclasses.replace(
                c, table=table, refused=refused,
                target=None if refused else "decomposition")))
    return out


def with_biased(c: Combination) -> Combination:
    """The same cell with ``objective.biased = true`` (for the estimators refused without it)."""
    table = _merge(c.table, {"objective": {"biased": True}})
    cls = MODEL_KINDS.capability(c.kind, "config")
    try:
        section_from_dict(cls, table, "model")
    except ConfigError as err:
        return dataclasses.replace(c, table=table, refused=str(err), target=None)
    return dataclasses.replace(c, table=table, refused=None, target="biased")


def summary(cells: list[Combination]) -> dict[str, Any]:
    """Counts: cells, accepted, refused, and accepted by target."""
    accepted = [c for c in cells if c.accepted]
    by_target: dict[str, int] = {}
    for c in accepted:
        by_target[c.target] = by_target.get(c.target, 0) + 1
    return {"cells": len(cells), "accepted": len(accepted),
            "refused": len(cells) - len(accepted), "by_target": by_target}
