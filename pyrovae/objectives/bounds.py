"""Per-point bounds on log p(x), as functions of S log weights: log w [S, B] -> L [B].

With w_k = p(x, z_k) / q(z_k | x), z_k ~ q independently, and w~_k = w_k / sum_j w_j::

    elbo       (1/K) sum_k log w_k                                      E = ELBO
    iwae       log (1/K) sum_k w_k                     Burda et al. 2015; K = 1 is the ELBO
    renyi      1/(1-a) log (1/K) sum_k w_k^(1-a)       Li & Turner 2016 (VR bound): a -> 1 the
               ELBO, a = 0 IWAE; a lower bound in expectation for a >= 0, an upper one
               (as K grows) for a < 0
    miwae      (1/M) sum_m log (1/K) sum_k w_mk        Rainforth et al. 2018: M groups of K
    ciwae      b * ELBO + (1-b) * IWAE                 same S = K draws; b = ``ciwae_beta``
    piwae      IWAE over all M*K draws for the model, MIWAE(M, K) for the guide (Rainforth et
               al. 2018): the reported value is the IWAE one
    tmc        tensor Monte Carlo over several latent sites (tmc.py)

Each bound also gives the coefficients the gradient estimators need, as logs (so that ratios
of coefficients stay finite when a weight underflows), all [S, B] and without gradient:

    log_c    log dL/dlog w_k: the model's gradient is sum_k c_k grad_theta log w_k
    log_d    the guide's coefficients where they differ from c (PIWAE only)
    dlog_c   d log c_k / d log w_k (the diagonal; dlog_d likewise for d): what DReG needs

DReG for any bound and any KL weight (Tucker et al. 2018, generalised). With the KL weight
beta on the latents, log w_k = log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)), so the guide's
gradient has the score term -beta sum_k d_k d/dphi log q(z_k; phi)|_z. Reparameterising it
once more, E[d_k(z) d/dphi log q(z_k)] = E[(d d_k / d log w_k)(d log w_k / d z_k)(d z_k / d phi)],
gives the z-path coefficients

    e_k = d_k (1 - beta dlog_d_k)      IWAE: (1 - beta) w~_k + beta w~_k^2 (w~^2 at beta = 1)

ELBO: e = 1/K (DReG is STL); MIWAE per group; CIWAE b/K + (1-b)((1-beta) w~ + beta w~^2);
Renyi (c = softmax((1-a) log w)): c (1 - beta (1-a)(1 - c)). e may be negative for beta > 1.

Every bound registers itself in :data:`pyrovae.runtime.registry.BOUNDS` with the gradient estimators it
admits (capabilities dreg, rws, score, vimco: see ``gradients/``) and declares its own settings
(the registration's ``settings=`` capability, or a class attribute ``settings``: a dataclass of
:func:`pyrovae.runtime.settings.setting` fields), which are its keys of ``[model.objective]``::

    [model.objective]
    bound = "renyi"
    renyi_alpha = 0.3

It is built from them as ``BOUNDS.get(name)(num_particles=K, **settings)`` and names them in
the run's label (:meth:`Bound.label`: ``renyi/reparam a=0.3``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import BOUNDS
from pyrovae.runtime.settings import setting


@dataclass
class GroupSettings:
    """``[model.objective]`` of miwae and piwae: M groups of K draws."""

    groups: int = setting(1, "miwae, piwae: M groups of num_particles draws each", min=1)


@dataclass
class RenyiSettings:
    """``[model.objective]`` of renyi: the order alpha."""

    renyi_alpha: float = setting(0.5, "renyi: the order alpha != 1 (0 = iwae; -> 1 the elbo)")

    def check(self):
        where = getattr(self, "section", "model.objective")
        if self.renyi_alpha == 1:
            raise ConfigError(f"{where}.renyi_alpha = 1 is the ELBO's limit, where the Renyi "
                              "bound is undefined; use bound = \"elbo\" or renyi_alpha != 1")
        if self.renyi_alpha < 0:
            raise ConfigError(f"{where}.renyi_alpha = {self.renyi_alpha:g} < 0 is not a "
                              f"lower bound on log p(x) (it exceeds it as K grows); use "
                              f"renyi_alpha >= 0 (0 is IWAE)")


@dataclass
class CIWAESettings:
    """``[model.objective]`` of ciwae: the ELBO's share b."""

    ciwae_beta: float = setting(0.5, "ciwae: the ELBO's share b of b*ELBO + (1-b)*IWAE",
                                min=0.0, max=1.0)


@dataclass(frozen=True)
class BoundSettings:
    """Release 0.1's settings of every built-in bound in one object (still accepted by the
    bounds: ``IWAE(BoundSettings(5))``): K = ``num_particles`` draws per group, M = ``groups``,
    Renyi's order ``renyi_alpha``, CIWAE's ``ciwae_beta`` (the ELBO's share b)."""

    num_particles: int = 1
    groups: int = 1
    renyi_alpha: float = 0.5
    ciwae_beta: float = 0.5


def settings_label(settings) -> str:
    """`` key=value`` per field of a settings dataclass (floats as ``:g``); "" for none: the
    default :meth:`Bound.label` (and that of a gradient estimator)."""
    if not dataclasses.is_dataclass(settings):
        return ""
    shown = ((f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings))
    return "".join(f" {k}={v:g}" if isinstance(v, float) else f" {k}={v}" for k, v in shown)


def _log_normalized(log_w: torch.Tensor) -> torch.Tensor:
    """log w~_k over dim 0."""
    return log_w - torch.logsumexp(log_w, dim=0)


class Bound:
    """Base: a bound on S = ``particles`` draws per point (module docstring)."""

    separate_targets = False   # the guide's coefficients differ from the model's (log_d)

    def __init__(self, settings=None, /, *, num_particles: int = 1, **values):
        """``Bound(num_particles=K, **its settings)``; or one object holding ``num_particles``
        and the settings as attributes (:class:`BoundSettings`). ``self.settings`` is that
        object (K and the settings, read as attributes)."""
        if settings is None:
            settings = SimpleNamespace(num_particles=num_particles, **values)
        self.settings = settings

    @classmethod
    def label(cls, settings) -> str:
        """What the run's label (``objective_name``) adds for the bound's ``settings`` (its
        settings dataclass): by default `` key=value`` per setting; "" for a bound without."""
        return settings_label(settings)

    @property
    def particles(self) -> int:
        return self.settings.num_particles

    def value(self, log_w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_c(self, log_w: torch.Tensor) -> torch.Tensor:
        """Default: by autograd from :meth:`value` (exact for any bound)."""
        with torch.enable_grad():
            lw = log_w.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.value(lw).sum(), lw)
        return grad.log()

    def log_d(self, log_w: torch.Tensor) -> torch.Tensor:
        return self.log_c(log_w)

    def dlog_c(self, log_w: torch.Tensor) -> torch.Tensor:
        """d log c_k / d log w_k [S, B]. Default: by autograd, one backward pass per particle
        (c_k of point b depends on point b's log weights only); the bounds here override it
        with the closed form."""
        with torch.enable_grad():
            lw = log_w.detach().requires_grad_(True)
            log_c = self.log_c_differentiable(lw)
            if not log_c.requires_grad:          # constant coefficients (the ELBO)
                return torch.zeros_like(log_w)
            rows = []
            for k in range(lw.shape[0]):
                (row,) = torch.autograd.grad(log_c[k].sum(), lw, retain_graph=True,
                                             allow_unused=True)
                rows.append(torch.zeros_like(lw[k]) if row is None else row[k])
        return torch.stack(rows).detach()

    def log_c_differentiable(self, lw: torch.Tensor) -> torch.Tensor:
        """log c as a differentiable function of ``lw`` (for the default :meth:`dlog_c`)."""
        (grad,) = torch.autograd.grad(self.value(lw).sum(), lw, create_graph=True)
        return grad.log()

    def dlog_d(self, log_w: torch.Tensor) -> torch.Tensor:
        return self.dlog_c(log_w)


@BOUNDS.register("elbo", dreg=True, score=True, stl=True)
class ELBO(Bound):
    """(1/K) sum_k log w_k."""

    def value(self, log_w):
        return log_w.mean(0)

    def log_c(self, log_w):
        return torch.full_like(log_w, -math.log(log_w.shape[0]))

    def dlog_c(self, log_w):
        return torch.zeros_like(log_w)


@BOUNDS.register("iwae", dreg=True, rws=True, vimco=True)
class IWAE(Bound):
    """log (1/K) sum_k w_k."""

    def value(self, log_w):
        return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])

    def log_c(self, log_w):
        return _log_normalized(log_w.detach())

    def dlog_c(self, log_w):
        return 1 - _log_normalized(log_w.detach()).exp()


@BOUNDS.register("renyi", dreg=True, settings=RenyiSettings)
class Renyi(Bound):
    """1/(1-a) log (1/K) sum_k w_k^(1-a); c = softmax((1-a) log w)."""

    def __init__(self, settings=None, /, **values):
        super().__init__(settings, **values)
        settings = self.settings

        if settings.renyi_alpha == 1:
            raise ValueError("renyi: alpha = 1 is the ELBO's limit; use bound = \"elbo\"")
        if settings.renyi_alpha < 0:
            raise ValueError(f"renyi: alpha = {settings.renyi_alpha:g} < 0 is not a lower bound "
                             f"on log p(x); use alpha >= 0 (0 is IWAE)")
        self.a = 1.0 - settings.renyi_alpha

    @classmethod
    def label(cls, settings):
        return f" a={settings.renyi_alpha:g}"

    def value(self, log_w):
        return (torch.logsumexp(self.a * log_w, dim=0) - math.log(log_w.shape[0])) / self.a

    def log_c(self, log_w):
        return _log_normalized(self.a * log_w.detach())

    def dlog_c(self, log_w):
        return self.a * (1 - self.log_c(log_w).exp())


class _Grouped(Bound):
    """M groups of K consecutive particles: S = M * K."""

    @classmethod
    def label(cls, settings):
        return f" M={settings.groups}"

    @property
    def particles(self) -> int:
        return self.settings.groups * self.settings.num_particles

    def grouped(self, log_w):
        m = self.settings.groups
        return log_w.reshape(m, log_w.shape[0] // m, *log_w.shape[1:])

    def miwae(self, log_w):
        g = self.grouped(log_w)
        return (torch.logsumexp(g, dim=1) - math.log(g.shape[1])).mean(0)

    def miwae_log_c(self, log_w):
        """log (w~_mk / M), w~ normalised within each group."""
        g = self.grouped(log_w.detach())
        log_norm = g - torch.logsumexp(g, dim=1, keepdim=True)
        return log_norm.reshape(log_w.shape) - math.log(self.settings.groups)

    def miwae_dlog_c(self, log_w):
        """1 - w~_mk (within its group)."""
        return 1 - (self.miwae_log_c(log_w) + math.log(self.settings.groups)).exp()


@BOUNDS.register("miwae", dreg=True, settings=GroupSettings)
class MIWAE(_Grouped):
    """(1/M) sum_m log (1/K) sum_k w_mk."""

    def value(self, log_w):
        return self.miwae(log_w)

    def log_c(self, log_w):
        return self.miwae_log_c(log_w)

    def dlog_c(self, log_w):
        return self.miwae_dlog_c(log_w)


@BOUNDS.register("piwae", dreg=True, targets="piwae", settings=GroupSettings)
class PIWAE(_Grouped):
    """The model's target IWAE(M*K), the guide's MIWAE(M, K), on the same M*K draws."""

    separate_targets = True

    def value(self, log_w):
        return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])

    def log_c(self, log_w):
        return _log_normalized(log_w.detach())

    def dlog_c(self, log_w):
        return 1 - _log_normalized(log_w.detach()).exp()

    def log_d(self, log_w):
        return self.miwae_log_c(log_w)

    def dlog_d(self, log_w):
        return self.miwae_dlog_c(log_w)


@BOUNDS.register("ciwae", dreg=True, settings=CIWAESettings)
class CIWAE(Bound):
    """b * (1/K) sum_k log w_k + (1-b) * log (1/K) sum_k w_k."""

    @classmethod
    def label(cls, settings):
        return f" b={settings.ciwae_beta:g}"

    def log_c(self, log_w):
        """log(b/K + (1-b) w~_k)."""
        b, k = self.settings.ciwae_beta, log_w.shape[0]
        elbo_part = torch.full_like(log_w, math.log(b) - math.log(k) if b > 0 else -math.inf)
        iwae_part = (math.log1p(-b) if b < 1 else -math.inf) + _log_normalized(log_w.detach())
        return torch.logaddexp(elbo_part, iwae_part)

    def dlog_c(self, log_w):
        """(1-b) w~ (1 - w~) / c."""
        b = self.settings.ciwae_beta
        if b == 1:
            return torch.zeros_like(log_w)
        log_wn = _log_normalized(log_w.detach())
        return (math.log1p(-b) + log_wn - self.log_c(log_w)).exp() * (1 - log_wn.exp())

    def value(self, log_w):
        b = self.settings.ciwae_beta
        return b * log_w.mean(0) + (1 - b) * (torch.logsumexp(log_w, 0) - math.log(log_w.shape[0]))
