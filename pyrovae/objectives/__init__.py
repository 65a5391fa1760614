"""Objectives: Pyro ELBO estimators selected by name.

    trace          Trace_ELBO: single-sample (or K-particle) Monte Carlo estimate of
                   E_q[log p(x|z) + log p(z) - log q(z|x)], KL term estimated by sampling.
    meanfield      TraceMeanField_ELBO: E_q[log p(x|z)] by sampling, KL(q || p) analytically;
                   same expectation, lower variance (needs a closed-form KL for guide/prior).
    jit-trace      JitTrace_ELBO: Trace_ELBO compiled with torch.jit.trace.
    jit-meanfield  JitTraceMeanField_ELBO, with Pyro 1.9's re-tracing bug fixed (below).
    tracegraph     TraceGraph_ELBO: Rao-Blackwellised score-function terms; with only
                   reparameterised sites it equals Trace_ELBO.
    iwae           the importance-weighted bound with K = num_particles draws, combined per
                   data point (iwae.py); K = 1 is the ELBO of ``trace``.

One estimator per file: the compiled forms in jit.py, free bits in free_bits.py, IWAE in
iwae.py.

``num_particles`` > 1 averages that many draws of z per data point, vectorised over an extra
particle plate (so the networks see z of shape [P, B, L]).
"""

from __future__ import annotations

import warnings

import pyro.infer as infer

from .free_bits import FreeBitsMeanFieldELBO, JitFreeBitsMeanFieldELBO
from .iwae import IWAE_ELBO
from .jit import JitTraceELBO, JitTraceMeanFieldELBO

__all__ = ["make_elbo", "has_differentiable_loss", "COMPILED", "ANALYTIC_KL", "IWAE_ELBO",
           "JitTraceELBO", "JitTraceMeanFieldELBO", "FreeBitsMeanFieldELBO",
           "JitFreeBitsMeanFieldELBO"]


_FREE_BITS = {"meanfield": FreeBitsMeanFieldELBO, "jit-meanfield": JitFreeBitsMeanFieldELBO}

_ESTIMATORS = {
    "trace": infer.Trace_ELBO,
    "meanfield": infer.TraceMeanField_ELBO,
    "jit-trace": JitTraceELBO,
    "jit-meanfield": JitTraceMeanFieldELBO,
    "tracegraph": infer.TraceGraph_ELBO,
    "iwae": IWAE_ELBO,
}

# torch 2.x deprecates torch.jit.trace, which Pyro's JIT objectives are built on.
warnings.filterwarnings("ignore", message=r".*torch.jit.trace.*deprecated", category=FutureWarning)

# The compiled form of each objective, used by the trainer's fast path: the same estimator,
# traced once by torch.jit so each step skips Pyro's Python-level tracing.
COMPILED = {"trace": "jit-trace", "meanfield": "jit-meanfield"}

ANALYTIC_KL = {"meanfield", "jit-meanfield"}


def make_elbo(name: str, num_particles: int = 1, free_bits: float = 0.0) -> infer.ELBO:
    """The Pyro ELBO called ``name`` with ``num_particles`` vectorised particles and, for the
    mean-field objectives, a free-bits floor of ``free_bits`` nats per latent dimension."""
    if free_bits > 0 and name not in _FREE_BITS:
        raise ValueError(f"free bits need an analytic per-dimension KL: {sorted(_FREE_BITS)}")
    cls = _FREE_BITS[name] if free_bits > 0 else _ESTIMATORS[name]
    kwargs = dict(num_particles=num_particles, max_plate_nesting=1)
    if name != "iwae":  # IWAE always draws its K particles in one vectorised plate
        kwargs["vectorize_particles"] = num_particles > 1
    if name.startswith("jit-"):
        kwargs["ignore_jit_warnings"] = True
    elbo = cls(**kwargs)
    if free_bits > 0:
        elbo.free_bits = float(free_bits)
    return elbo


def has_differentiable_loss(elbo: infer.ELBO) -> bool:
    """Whether ``elbo`` returns a differentiable loss tensor (else use ``loss_and_grads``)."""
    return not isinstance(elbo, infer.TraceGraph_ELBO)
