"""Registries: the single source of the names, config choices and capabilities of each kind
of component.

    PRIORS        p(z) over R^L                 capability analytic_kl (closed-form KL(Normal||p))
    LIKELIHOODS   p(x|z)
    OBJECTIVES    ELBO estimators               analytic_kl, free_bits, compiled, enumerates, jit
    NETWORKS      encoder/decoder architectures
    MODEL_KINDS   model kinds (``model.kind``): their config dataclass, module and trainer
    POSTERIORS    guide families q(z|x)         (see pyrovae/posteriors)
    BOUNDS        per-point bounds on log p(x)  dreg, rws, score, vimco (the gradients they admit)
    GRADIENTS     gradient estimators           needs (the bound capability), reparam, particles
    DATASETS      data sources (``data.name``)  path, images, binarize, layout (pyrovae/data)
    ACTIVATIONS   hidden-layer nonlinearities   (pyrovae/components/nets/mlp.py)
    KL_SCHEDULES  beta_t over steps             (pyrovae/objectives/schedules.py)
    KL_DECOMPOSITIONS  the KL term's decompositions (``model.kl.decomposition``: none, tc,
                  dip-i, dip-ii; pyrovae/objectives/decompositions.py)
    LR_SCHEDULES  lr_t over steps               (pyrovae/training/lr_schedule.py)

A component registers itself where it is defined, with the decorator form::

    from pyrovae.runtime.registry import PRIORS

    @PRIORS.register("laplace", analytic_kl=False)
    def laplace_prior(config, latent_dim, **context):
        return MyLaplacePrior(latent_dim)

and is then a valid config choice (``prior = "laplace"``), a CLI choice and a ``compare
--vary`` value, with no other file edited. A registry is also a sequence of its names (``"mog"
in PRIORS``, ``", ".join(PRIORS)``), which is what the config fields' ``choices`` use, so
the choices are read when a config is checked, not frozen at import time.

This module imports only ``errors``: every layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyrovae.runtime.errors import ConfigError


#: appended to the refusal of a name no component has registered: it may be a plug-in's
PLUGIN_HINT = ("; if a plug-in registers it, import the plug-in first: pyrovae --plugin MODULE "
               "(or PYROVAE_PLUGINS=MODULE; in Python, import MODULE)")


class RegistryError(LookupError):
    """An unknown name, or a name registered twice (a bug in the registering code)."""


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, the object (class or factory) and capabilities."""

    name: str
    obj: Any
    capabilities: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Named components of one kind, in registration order."""

    def __init__(self, kind: str, config_key: str):
        self.kind, self.config_key = kind, config_key
        self._entries: dict[str, Entry] = {}

    # ---- registering ---------------------------------------------------------------------
    def register(self, name: str, obj: Any = None, *, replace: bool = False, **capabilities):
        """Register ``obj`` under ``name`` (or use as a decorator when ``obj`` is omitted).

        ``replace=True`` allows re-registering a name (e.g. reloading a module in a notebook);
        otherwise a second registration of a name is an error.
        """
        def add(target):
            if name in self._entries and not replace:
                raise RegistryError(f"{self.kind} '{name}' is already registered; pick another "
                                    f"name or pass replace=True")
            self._entries[name] = Entry(name, target, dict(capabilities))
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a component for their own use clean up)."""
        self._entries.pop(name, None)

    # ---- reading ---------------------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"{self.config_key} = {name!r} is not a registered {self.kind} "
                              f"(valid: {', '.join(self)}){PLUGIN_HINT}") from None

    def get(self, name: str) -> Any:
        """The registered object (class or factory) called ``name``."""
        return self.entry(name).obj

    def capability(self, name: str, key: str, default: Any = None) -> Any:
        return self.entry(name).capabilities.get(key, default)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def where(self, **wanted) -> RegistryView:
        """A live view of the names whose capabilities match ``wanted``, e.g. the objectives a
        model kind accepts; usable as ``choices``. A wanted True or False asks whether the
        capability is set (a missing one reads as False, an object as True)."""
        return RegistryView(self, wanted)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i):
        return self.names()[i]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"


def _matches(have: Any, wanted: Any) -> bool:
    return bool(have) == wanted if isinstance(wanted, bool) else have == wanted


class RegistryView:
    """The names of a registry that match some capabilities, read at each use."""

    def __init__(self, registry: Registry, wanted: dict):
        self.registry, self.wanted = registry, wanted

    def names(self) -> tuple[str, ...]:
        caps = {n: self.registry.entry(n).capabilities for n in self.registry}
        return tuple(n for n, c in caps.items() if all(_matches(c.get(k), v)
                                                       for k, v in self.wanted.items()))

    def __contains__(self, name) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, i):
        return self.names()[i]

    def __repr__(self) -> str:
        return f"RegistryView({self.registry.kind!r}: {', '.join(self)})"


PRIORS = Registry("prior", "model.prior.name")
LIKELIHOODS = Registry("likelihood", "model.likelihood")
OBJECTIVES = Registry("objective", "model.elbo")
NETWORKS = Registry("network", "model.network")
MODEL_KINDS = Registry("model kind", "model.kind")
POSTERIORS = Registry("posterior", "model.posterior.name")
BOUNDS = Registry("bound", "model.objective.bound")
GRADIENTS = Registry("gradient estimator", "model.objective.gradient")
DATASETS = Registry("data set", "data.name")
ACTIVATIONS = Registry("activation", "model.activation")
KL_SCHEDULES = Registry("KL schedule", "model.kl.schedule")
KL_DECOMPOSITIONS = Registry("KL decomposition", "model.kl.decomposition")
LR_SCHEDULES = Registry("learning-rate schedule", "train.lr_schedule")

__all__ = ["PLUGIN_HINT", "Registry", "RegistryView", "RegistryError", "Entry", "PRIORS", "LIKELIHOODS", "OBJECTIVES",
           "NETWORKS", "MODEL_KINDS", "POSTERIORS", "BOUNDS", "GRADIENTS", "DATASETS", "ACTIVATIONS",
           "KL_SCHEDULES", "KL_DECOMPOSITIONS", "LR_SCHEDULES"]
