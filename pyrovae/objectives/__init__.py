"""Objectives: what training maximises, chosen on two axes.

``model.elbo`` names a Pyro ELBO estimator (the default pair of ``[model.objective]``):

    trace          Trace_ELBO: single-sample (or K-particle) Monte Carlo estimate of
                   E_q[log p(x|z) + log p(z) - log q(z|x)], KL term estimated by sampling.
    meanfield      TraceMeanField_ELBO: E_q[log p(x|z)] by sampling, KL(q || p) analytically;
                   same expectation, lower variance (needs a closed-form KL for guide/prior).
    jit-trace      JitTrace_ELBO: Trace_ELBO compiled with torch.jit.trace.
    jit-meanfield  JitTraceMeanField_ELBO, with Pyro 1.9's re-tracing bug fixed (jit.py).
    tracegraph     TraceGraph_ELBO: Rao-Blackwellised score-function terms.
    iwae           the importance-weighted bound, K = num_particles (iwae.py).
    enum           TraceEnum_ELBO: discrete sites the guide marks are summed out exactly.

``[model.objective]`` chooses a bound and its gradient estimator independently, computed per
data point with the data plate's N/B outside every log-sum-exp (bound_objective.py):

    bounds (bounds.py, tmc.py)       elbo, iwae, renyi, miwae, ciwae, piwae, tmc
    gradients (gradients/)           reparam, stl, dreg, rws, rws-dreg, score, vimco

``[model.kl] decomposition`` (decompositions.py: tc = beta-TCVAE, dip-i / dip-ii = DIP-VAE)
rewrites the KL term of ``meanfield``; the objective registers its decomposed form as the
capability ``decomposition``, as it does its free-bits form.

Each component registers itself with its capabilities: Pyro's estimators in
:data:`pyrovae.runtime.registry.OBJECTIVES` (``analytic_kl``, ``compiled``, ``free_bits``, ...), the
bounds in ``BOUNDS`` (which estimators they admit: ``dreg``, ``rws``, ``score``, ``vimco``) and
the estimators in ``GRADIENTS`` (what they need). A new one is one new file that registers
itself. :func:`objective_for` builds what a ``[model]`` config trains with.

``num_particles`` > 1 draws that many z per data point, vectorised over a particle plate left
of the model's plates (so the networks see z of shape [K, B, L]).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import pyro.infer as infer

from pyrovae.runtime.registry import OBJECTIVES
from pyrovae.objectives import pyro_elbos  # noqa: F401  (registers trace, meanfield, tracegraph, enum)
from pyrovae.objectives import bounds, tmc  # noqa: F401  (register the bounds)
from pyrovae.objectives.pairs import check_pair
from pyrovae.objectives.bound_objective import BoundObjective, chosen_settings, label_of
from pyrovae.runtime.registry import BOUNDS, GRADIENTS
from pyrovae.objectives.free_bits import FreeBitsMeanFieldELBO, JitFreeBitsMeanFieldELBO
from pyrovae.objectives.decompositions import (DecomposedMeanFieldELBO, JitDecomposedMeanFieldELBO,
                                               decomposition_for)
from pyrovae.objectives.iwae import IWAE_ELBO
from pyrovae.objectives.jit import JitTraceELBO, JitTraceMeanFieldELBO

__all__ = ["make_elbo", "objective_for", "objective_name", "BoundObjective", "check_pair", "has_differentiable_loss", "compiled_form", "OBJECTIVES", "IWAE_ELBO",
           "JitTraceELBO", "JitTraceMeanFieldELBO", "FreeBitsMeanFieldELBO",
           "JitFreeBitsMeanFieldELBO", "DecomposedMeanFieldELBO", "JitDecomposedMeanFieldELBO",
           "decomposition_for"]

# torch 2.x deprecates torch.jit.trace, which Pyro's JIT objectives are built on.
warnings.filterwarnings("ignore", message=r".*torch.jit.trace.*deprecated", category=FutureWarning)


def compiled_form(name: str) -> str:
    """The registered compiled (torch.jit) form of objective ``name``, or ``name`` itself: the
    same estimator, traced once so each step skips Pyro's Python-level tracing."""
    return OBJECTIVES.capability(name, "compiled") or name


def make_elbo(name: str, num_particles: int = 1, free_bits: float | Mapping[str, float] = 0.0,
              max_plate_nesting: int = 1, decomposition=None) -> infer.ELBO:
    """The objective registered as ``name`` with ``num_particles`` vectorised particles and, for
    the objectives with the ``free_bits`` capability, a floor of ``free_bits`` nats per latent
    dimension: one number for every latent site, or a mapping site -> floor (a hierarchical
    model's layers). ``max_plate_nesting``: the model's plates (the particle plate goes left of
    them). ``decomposition``: a KL decomposition (``objectives.decompositions``: beta-TCVAE,
    DIP-VAE) for the objectives with the ``decomposition`` capability."""
    entry = OBJECTIVES.entry(name)
    cls = entry.obj
    per_site = {k: float(v) for k, v in free_bits.items()} if isinstance(free_bits, Mapping) else {}
    free_bits = 0.0 if isinstance(free_bits, Mapping) else float(free_bits)
    floored = free_bits > 0 or any(v > 0 for v in per_site.values())
    if floored:
        cls = entry.capabilities.get("free_bits")
        if cls is None:
            raise ValueError(f"free bits need an analytic per-dimension KL: "
                             f"{list(OBJECTIVES.where(free_bits=True))}")
    if decomposition is not None:
        if floored:
            raise ValueError("free bits and a KL decomposition both change the KL term; use one")
        cls = entry.capabilities.get("decomposition")
        if cls is None:
            raise ValueError(f"a KL decomposition needs one of the objectives "
                             f"{list(OBJECTIVES.where(decomposition=True))}, not {name!r}")
    kwargs = dict(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
    if entry.capabilities.get("vectorize", True):  # (IWAE always uses its own particle plate)
        kwargs["vectorize_particles"] = num_particles > 1
    if entry.capabilities.get("jit", False):
        kwargs["ignore_jit_warnings"] = True
    elbo = cls(**kwargs)
    if floored:
        elbo.free_bits, elbo.free_bits_per_site = free_bits, per_site
    if decomposition is not None:
        elbo.decomposition = decomposition
    return elbo


def has_differentiable_loss(elbo: infer.ELBO) -> bool:
    """Whether ``elbo`` returns a differentiable loss tensor (else use ``loss_and_grads``)."""
    return not isinstance(elbo, infer.TraceGraph_ELBO)


def objective_for(model_config, max_plate_nesting: int = 1, compiled: bool = False) -> infer.ELBO:
    """The objective a ``[model]`` config trains with: ``model.elbo``'s Pyro estimator (its
    compiled form if ``compiled`` and one exists) for the default (elbo, reparam) pair of
    ``[model.objective]``, else the per-point :class:`BoundObjective` of that pair."""
    objective = getattr(model_config, "objective", None)
    if objective is None or objective.default:
        name = compiled_form(model_config.elbo) if compiled else model_config.elbo
        kl = getattr(model_config, "kl", None)
        per_site = getattr(model_config, "free_bits_per_site", None)  # floors by latent site
        return make_elbo(name, model_config.num_particles,
                         per_site if per_site else (kl.free_bits if kl else 0.0),
                         max_plate_nesting, decomposition_for(kl) if kl else None)
    return BoundObjective(objective.bound, objective.gradient, model_config.num_particles,
                          max_plate_nesting=max_plate_nesting, biased=objective.biased,
                          **_settings(objective))


def _settings(objective) -> dict:
    """The settings of the chosen bound and estimator a ``[model.objective]`` section holds."""
    settings = getattr(objective, "settings", None)
    return dict(settings()) if callable(settings) else {}


def objective_name(model_config, particles: bool = True) -> str:
    """A short label: ``meanfield``, ``iwae K=5``, ``iwae/dreg K=5``, ``miwae/reparam M=4 K=8``
    (without `` K=..`` if not ``particles``); the bound's and the estimator's settings as
    their ``label`` shows them."""
    objective = getattr(model_config, "objective", None)
    k = model_config.num_particles if particles else 1
    if objective is None or objective.default:
        return model_config.elbo if k == 1 else f"{model_config.elbo} K={k}"
    label = f"{objective.bound}/{objective.gradient}"
    bound, gradient = chosen_settings(objective.bound, objective.gradient, _settings(objective))
    label += label_of(BOUNDS, objective.bound, bound)        # renyi: " a=0.5", miwae: " M=2"
    label += label_of(GRADIENTS, objective.gradient, gradient)
    if objective.biased:
        label += " (biased)"
    return label if k == 1 else f"{label} K={k}"
