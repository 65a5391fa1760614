"""Objectives: Pyro ELBO estimators selected by name.

    trace          Trace_ELBO: single-sample (or K-particle) Monte Carlo estimate of
                   E_q[log p(x|z) + log p(z) - log q(z|x)], KL term estimated by sampling.
    meanfield      TraceMeanField_ELBO: E_q[log p(x|z)] by sampling, KL(q || p) analytically;
                   same expectation, lower variance (needs a closed-form KL for guide/prior).
    jit-trace      JitTrace_ELBO: Trace_ELBO compiled with torch.jit.trace.
    jit-meanfield  JitTraceMeanField_ELBO, with Pyro 1.9's re-tracing bug fixed (below).
    tracegraph     TraceGraph_ELBO: Rao-Blackwellised score-function terms; with only
                   reparameterised sites it equals Trace_ELBO.

``num_particles`` > 1 averages that many draws of z per data point, vectorised over an extra
particle plate (so the networks see z of shape [P, B, L]).
"""

from __future__ import annotations

import warnings
import weakref

import pyro
import pyro.infer as infer
import torch
from pyro.infer.util import torch_item
from torch.distributions import kl_divergence


class _StableCallables:
    """Pyro's JIT objectives key their compiled graphs on ``id(model)``. A bound method such as
    ``vae.model`` is a new object at every attribute access, so its id can change from step to
    step and force a re-trace. This mixin hands Pyro one canonical bound method per
    (object, function) pair, so the id is stable."""

    def _canonical(self, fn):
        if not hasattr(fn, "__self__"):
            return fn
        cache = self.__dict__.setdefault("_callables", {})
        return cache.setdefault((id(fn.__self__), fn.__func__), fn)


class JitTraceELBO(_StableCallables, infer.JitTrace_ELBO):
    """JitTrace_ELBO that compiles once per model (see :class:`_StableCallables`)."""

    def loss_and_surrogate_loss(self, model, guide, *args, **kwargs):
        return super().loss_and_surrogate_loss(self._canonical(model), self._canonical(guide),
                                               *args, **kwargs)

    @property
    def traces(self) -> int:
        """Number of compiled graphs (one per distinct non-tensor kwargs)."""
        compiled = getattr(self, "_loss_and_surrogate_loss", None)
        return 0 if compiled is None else len(compiled.compiled)


class JitTraceMeanFieldELBO(_StableCallables, infer.JitTraceMeanField_ELBO):
    """JitTraceMeanField_ELBO that compiles once.

    Pyro 1.9.2's ``differentiable_loss`` tests ``self._loss_and_surrogate_loss`` (never set)
    but caches the compiled function as ``self._differentiable_loss``, so it builds and
    re-traces a new compiled function on every step. This version tests what it caches.
    ``traces`` counts the times the Python loss runs for tracing (constant after the first
    call, whose compilation runs it twice).
    """

    traces = 0

    def differentiable_loss(self, model, guide, *args, **kwargs):
        model, guide = self._canonical(model), self._canonical(guide)
        kwargs["_pyro_model_id"] = id(model)
        kwargs["_pyro_guide_id"] = id(guide)
        if getattr(self, "_differentiable_loss", None) is None:
            weakself = weakref.ref(self)

            @pyro.ops.jit.trace(ignore_warnings=self.ignore_jit_warnings,
                                jit_options=self.jit_options)
            def differentiable_loss(*args, **kwargs):
                kwargs.pop("_pyro_model_id")
                kwargs.pop("_pyro_guide_id")
                self = weakself()
                self.traces += 1
                loss = 0.0
                for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
                    _, loss_particle = self._differentiable_loss_particle(model_trace,
                                                                          guide_trace)
                    loss = loss + loss_particle / self.num_particles
                return loss

            self._differentiable_loss = differentiable_loss
        return self._differentiable_loss(*args, **kwargs)


class _FreeBits:
    """Mixin for the mean-field objectives: the KL term becomes sum_d max(lambda, KL_d).

    KL_d is dimension d's analytic KL(q(z_d|x) || p(z_d)) averaged over the minibatch (and
    particles); a dimension whose average KL is below lambda contributes the constant lambda,
    so the loss gives it no gradient to push it further down (Kingma et al. 2016, "free bits").
    Only the latent site's KL term changes; observed sites are as in TraceMeanField_ELBO.
    """

    free_bits = 0.0

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        elbo_particle = 0.0
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                elbo_particle = elbo_particle + model_site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            q, p = guide_site["fn"], model_site["fn"]
            kl = kl_divergence(q.base_dist, p.base_dist)  # [..., B, L] per dimension
            per_dim = kl.reshape(-1, kl.shape[-1]).mean(0)  # [L]
            floored = torch.clamp(per_dim, min=self.free_bits).sum() * (kl.numel() // kl.shape[-1])
            elbo_particle = elbo_particle - floored * guide_site["scale"]
        surrogate = -elbo_particle
        loss = surrogate.detach() if torch._C._get_tracing_state() else torch_item(surrogate)
        return loss, surrogate  # as TraceMeanField_ELBO: a number, and the differentiable loss


class FreeBitsMeanFieldELBO(_FreeBits, infer.TraceMeanField_ELBO):
    """TraceMeanField_ELBO with a free-bits floor on each latent dimension's KL."""


class JitFreeBitsMeanFieldELBO(_FreeBits, JitTraceMeanFieldELBO):
    """The compiled form of :class:`FreeBitsMeanFieldELBO`."""


_FREE_BITS = {"meanfield": FreeBitsMeanFieldELBO, "jit-meanfield": JitFreeBitsMeanFieldELBO}

_ESTIMATORS = {
    "trace": infer.Trace_ELBO,
    "meanfield": infer.TraceMeanField_ELBO,
    "jit-trace": JitTraceELBO,
    "jit-meanfield": JitTraceMeanFieldELBO,
    "tracegraph": infer.TraceGraph_ELBO,
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
    kwargs = dict(num_particles=num_particles, vectorize_particles=num_particles > 1,
                  max_plate_nesting=1)
    if name.startswith("jit-"):
        kwargs["ignore_jit_warnings"] = True
    elbo = cls(**kwargs)
    if free_bits > 0:
        elbo.free_bits = float(free_bits)
    return elbo


def has_differentiable_loss(elbo: infer.ELBO) -> bool:
    """Whether ``elbo`` returns a differentiable loss tensor (else use ``loss_and_grads``)."""
    return not isinstance(elbo, infer.TraceGraph_ELBO)
