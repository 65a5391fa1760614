"""The model and guide callables the trainer hands to an objective.

The interface asks for ``model(x, ..., n_data=None)``, so the data plate scales a minibatch
of B rows to the N rows of the data set. A program without that keyword gets the same scale
from ``poutine.scale(N / B)`` around it (every site sits in the data plate, so scaling every
site is scaling the plate)."""

from __future__ import annotations

import functools

from pyro import poutine

from pyrovae.runtime.interface import takes_n_data


def _scaled(fn):
    @functools.wraps(fn)
    def program(x, *args, n_data=None, **kwargs):
        scale = 1.0 if n_data is None else n_data / x.shape[0]
        with poutine.scale(scale=scale):
            return fn(x, *args, **kwargs)
    return program


def bind_programs(module):
    """(model, guide) of ``module``, each taking ``n_data``; bound once, so their identity is
    stable (compiled objectives key on it)."""
    return tuple(fn if takes_n_data(fn) else _scaled(fn) for fn in (module.model, module.guide))
