"""Bits per dimension: a likelihood on discrete data in the unit image-model papers report.

For a negative log-likelihood (or negative ELBO) of one D-dimensional data point, in nats::

    bits/dim = nats / (D ln 2)

It is given only where log p(x) is the log of a probability, i.e. for a likelihood on discrete
data: the registered likelihoods with the ``discrete`` capability (``bernoulli`` on binary
pixels, ``discretized-logistic`` on the 8-bit grid; ``pyrovae.runtime.registry.LIKELIHOODS``). A density
on continuous values has no code length (its value depends on the scale of x), so runs with
``gaussian``, ``laplace`` or ``continuous-bernoulli`` get no bits per dimension. D is the size
of what the likelihood scores (``likelihood.data_dim``: the output part of a conditional
model's rows). A module of your own declares ``discrete_dim = D`` to get them.
"""

from __future__ import annotations

import math

from pyrovae.runtime.registry import LIKELIHOODS

LN2 = math.log(2.0)


def bits_per_dim(nats: float, dim: int) -> float:
    """nats / (D ln 2): nats per data point -> bits per dimension."""
    return float(nats) / (int(dim) * LN2)


def discrete_dim(module) -> int | None:
    """D when ``module`` scores discrete data (a registered likelihood with ``discrete=True``,
    or a ``discrete_dim`` attribute), else None."""
    declared = getattr(module, "discrete_dim", None)
    if declared is not None:
        return int(declared)
    likelihood = getattr(module, "likelihood", None)
    name, dim = getattr(likelihood, "name", None), getattr(likelihood, "data_dim", None)
    if name in LIKELIHOODS and LIKELIHOODS.capability(name, "discrete") and dim:
        return int(dim)
    return None


def bpd_keys(module, **nats) -> dict:
    """{key: bits per dimension} of each ``key=nats`` (e.g. ``test_bpd=-elbo``) when
    ``module`` scores discrete data; {} when it does not."""
    dim = discrete_dim(module)
    if dim is None:
        return {}
    return {key: bits_per_dim(value, dim) for key, value in nats.items()}
