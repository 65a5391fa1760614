"""What a gradient estimator is: a surrogate per data point whose gradient is the estimator.

For a bound L (``bounds.py``) and a draw of S particles (``particles.py``), an estimator returns
a surrogate s [B] per point; the objective's loss is

    loss = -(N/B) sum_b [ s_b + stop(L_b - s_b) ]

so its value is the bound and its gradient the estimator's. An estimator registers in GRADIENTS what it
asks of the bound (``needs``: a capability in BOUNDS, e.g. ``dreg``), whether every guide site
must be reparameterised (``reparameterised``) and its least number of particles
(``min_particles``); the class says which gradient paths the draw keeps (``plan``: values
"sample" / "detach" / "scaled", and whether log q at fixed values is needed).

An estimator with settings declares them as a bound does (the registration's ``settings=``
capability or a class attribute ``settings``: a dataclass of
:func:`pyrovae.runtime.settings.setting` fields); they are its keys of ``[model.objective]``
and it is built as ``GRADIENTS.get(name)(**settings)`` (read back as ``self.settings.key``).
The built-in estimators have none.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from pyrovae.runtime.interface import InterfaceError
from pyrovae.runtime.registry import GRADIENTS
from pyrovae.objectives.bounds import settings_label


class GradientEstimator:
    """Base class (module docstring)."""

    def __init__(self, **settings):
        self.settings = SimpleNamespace(**settings)

    @classmethod
    def label(cls, settings) -> str:
        """What the run's label adds for the estimator's ``settings`` (its settings
        dataclass): by default `` key=value`` per setting; "" for an estimator without."""
        return settings_label(settings)

    def plan(self, bound) -> tuple[str, bool]:
        """(values, fixed) for :func:`pyrovae.objectives.particles.draw`."""
        return "sample", False

    def surrogate(self, bound, draw) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def check(name: str, draw) -> None:
        """Refuse a draw the estimator cannot serve: sampled discrete sites for one that needs
        pathwise ones, only reparameterised sites for one whose purpose is the score function
        (it would silently be the reparameterization gradient)."""
        if GRADIENTS.capability(name, "reparameterised", True) and draw.score_sites:
            raise InterfaceError(
                f"gradient = \"{name}\" needs reparameterised guide sites, but "
                f"'{draw.score_sites[0]}' is not; use gradient = \"score\" (bound elbo), "
                f"\"vimco\" (bound iwae) or \"rws\" (or sum it out with elbo = \"enum\" and "
                f"no [model.objective])")
        if GRADIENTS.capability(name, "sampled_sites", False) and not draw.score_sites:
            raise InterfaceError(
                f"gradient = \"{name}\" is a score-function estimator for sampled, "
                f"non-reparameterised guide sites, and every site of this guide is "
                f"reparameterised (it would be the plain reparam gradient); use gradient = "
                f"\"reparam\" or \"dreg\"")


def weighted(log_c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_k c_k x_k over the particles: [S, B] -> [B] (c = exp(log_c), no gradient)."""
    return (log_c.detach().exp() * x).sum(0)


def ratio_of(log_num: torch.Tensor, log_den: torch.Tensor) -> torch.Tensor:
    """exp(log_num - log_den) [S, B], 0 where both coefficients are 0 (no gradient)."""
    ratio = torch.exp(log_num.detach() - log_den.detach())
    return torch.where(torch.isfinite(ratio), ratio, 0.0)


def set_ratio(draw, ratio: torch.Tensor) -> None:
    """The z-path coefficient of a "scaled" draw (its gradient is multiplied by it)."""
    draw.ratio.value = ratio.detach()


def kl_weight(name: str, draw) -> torch.Tensor:
    """The KL weight beta shared by every latent site of the draw (1 without a KL weight);
    refused in one line when the sites carry different weights (hvae's kl_weights), where the
    z-path coefficients of one site would not be those of another."""
    if draw.kl_weight is None:
        raise InterfaceError(
            f"gradient = \"{name}\" needs one KL weight on every latent site, but this "
            f"model's sites carry different ones (per-layer kl_weights); use gradient = "
            f"\"reparam\" or equal kl_weights")
    return draw.kl_weight


def pathwise(bound, draw, ratio: torch.Tensor) -> torch.Tensor:
    """The surrogate of a "scaled" draw that gives the model sum_k c_k grad log w_k and the
    guide's z-path the coefficients e_k = c_k ratio_k, the parameter path of log q none:

        s = sum_k c_k log w_k + sum_k c_k log q(z_k fixed; phi)

    (log q_fixed carries each site's KL weight, as log w does, so the two parameter paths
    cancel exactly)."""
    log_c = bound.log_c(draw.log_w)
    set_ratio(draw, ratio)
    return weighted(log_c, draw.log_w) + weighted(log_c, draw.log_q_fixed)


def with_score_terms(bound, draw, signal) -> torch.Tensor:
    """The bound's pathwise surrogate plus sum_k signal_k log q(y_k | x) for the sampled,
    non-reparameterised sites; ``signal(log w)`` [S, B] is each draw's learning signal."""
    s = bound.value(draw.log_w)
    if draw.log_q_score is None:
        return s
    return s + (signal(draw.log_w.detach()) * draw.log_q_score).sum(0)
