"""Which (bound, gradient estimator) pairs are defined: :func:`check_pair`, the one-line refusal
of a pair the estimator cannot serve, read off the capabilities the bounds and estimators
register (``BOUNDS``: the estimators a bound admits; ``GRADIENTS``: what an estimator needs).

This module imports only the registries and the errors, so the config layer may import it
(``pyrovae.config.check_pair`` is this function) and the objectives know no config module.
"""

from __future__ import annotations

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import BOUNDS, GRADIENTS


def check_pair(bound: str, gradient: str, num_particles: int = 1, where: str = "model.objective",
               biased: bool = False):
    """Refuse a (bound, gradient) pair the estimator cannot serve, in one line.

    An estimator that ``needs`` a bound capability refuses a bound without it, except where the
    estimator is ``exact_at_one_particle`` and K = 1 (every bound's coefficients are constant
    there), or it ``may_be_biased`` and ``biased`` asks for it by name."""
    if bound not in BOUNDS:
        raise ConfigError(f"{where}.bound = {bound!r} is not one of: {', '.join(BOUNDS)}")
    if gradient not in GRADIENTS:
        raise ConfigError(f"{where}.gradient = {gradient!r} is not one of: {', '.join(GRADIENTS)}")
    only = BOUNDS.capability(bound, "only")
    if only and gradient not in only:
        raise ConfigError(f"{where}.bound = \"{bound}\" takes gradient = "
                          f"{' or '.join(only)}, not \"{gradient}\"")
    needs = GRADIENTS.capability(gradient, "needs")
    if needs and not BOUNDS.capability(bound, needs) and not only:
        single = GRADIENTS.capability(gradient, "exact_at_one_particle") and num_particles == 1
        if GRADIENTS.capability(gradient, "may_be_biased") and not single and not biased:
            able = ", ".join(BOUNDS.where(**{needs: True}))
            raise ConfigError(f"{where}.gradient = \"{gradient}\" is biased for bound = "
                              f"\"{bound}\" with num_particles > 1 (unbiased: bound = {able}, or "
                              f"K = 1); use gradient = \"dreg\", or set {where}.biased = true "
                              f"to study the biased estimator")
        if not GRADIENTS.capability(gradient, "may_be_biased"):
            able = ", ".join(BOUNDS.where(**{needs: True}))
            raise ConfigError(f"{where}.gradient = \"{gradient}\" is not defined for bound = "
                              f"\"{bound}\"; it works with bound = {able}")
    least = GRADIENTS.capability(gradient, "min_particles", 1)
    if num_particles < least:
        raise ConfigError(f"{where}.gradient = \"{gradient}\" needs num_particles >= {least} "
                          f"(its baseline uses the other draws), got {num_particles}")


__all__ = ["check_pair"]
