"""Module paths of release 0.1, kept importable for one release: ``import pyrovae.model``,
``from pyrovae.registry import PRIORS`` and the like still work (with a DeprecationWarning
naming the new path), the module object being the new one, so a registration made through
an old path is the same registry entry.

    MOVED   old dotted path -> new dotted path (a package's submodules follow it)

and attributes renamed for a release (``Run.vae`` -> ``Run.model``): :func:`renamed`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED: dict[str, str] = {
    "pyrovae.priors": "pyrovae.components.priors",
    "pyrovae.likelihoods": "pyrovae.components.likelihoods",
    "pyrovae.distributions": "pyrovae.components.distributions",
    "pyrovae.nets": "pyrovae.components.nets",
    "pyrovae.posteriors": "pyrovae.components.posteriors",
    "pyrovae.kl": "pyrovae.objectives.schedules",
    "pyrovae.model": "pyrovae.kinds.vae.model",
    "pyrovae.kind_module": "pyrovae.kinds.base",
    "pyrovae.user_model": "pyrovae.kinds.module.model",
    "pyrovae.semisupervised": "pyrovae.kinds.ssvae",
    "pyrovae.hierarchical": "pyrovae.kinds.hvae",
    "pyrovae.conditional": "pyrovae.kinds.cvae",
    "pyrovae.registry": "pyrovae.runtime.registry",
    "pyrovae.errors": "pyrovae.runtime.errors",
    "pyrovae.files": "pyrovae.runtime.files",
    "pyrovae.rng": "pyrovae.runtime.rng",
    "pyrovae.limits": "pyrovae.runtime.memory",
    "pyrovae.interface": "pyrovae.runtime.interface",
    "pyrovae.distributed": "pyrovae.runtime.distributed",
    "pyrovae.evaluation.traces": "pyrovae.runtime.traces",
}


def renamed(new: str) -> property:
    """A property that reads and writes attribute ``new``: its old name, kept for a release."""
    return property(lambda self: getattr(self, new), lambda self, value: setattr(self, new, value),
                    doc=f"The old name of :attr:`{new}`, kept for one release.")


def new_name(old: str) -> str | None:
    """The current dotted path of ``old`` (or of a submodule of a moved package), or None."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        target_name = new_name(fullname)
        if target_name is None:
            return None
        warnings.warn(f"{fullname} moved to {target_name}; import it from there (the old path "
                      f"goes in the next release)", DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _Alias(target_name))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (before the path finder, which would load a
    moved package's submodule a second time under its old name), once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
