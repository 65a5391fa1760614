"""Pyro's compiled (torch.jit) ELBOs, fixed to compile once per model.

    jit-trace      JitTrace_ELBO: Trace_ELBO traced by torch.jit.
    jit-meanfield  JitTraceMeanField_ELBO, with Pyro 1.9's re-tracing bug fixed.

Same estimators as ``trace``/``meanfield``; each step then skips Pyro's Python-level tracing.
"""

from __future__ import annotations

import weakref

import pyro
import pyro.infer as infer

from pyrovae.runtime.registry import OBJECTIVES
from pyrovae.objectives.pyro_elbos import CheckedMeanField


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


class JitTraceMeanFieldELBO(_StableCallables, CheckedMeanField, infer.JitTraceMeanField_ELBO):
    """JitTraceMeanField_ELBO that compiles once.

    Pyro 1.9.2's ``differentiable_loss`` tests ``self._loss_and_surrogate_loss`` (never set)
    but caches the compiled function as ``self._differentiable_loss``, so it builds and
    re-traces a new compiled function on every step. This version tests what it caches.
    ``traces`` counts the times the Python loss runs for tracing (constant after the first
    call, whose compilation runs it twice). The guide is checked as for ``meanfield``
    (:class:`pyro_elbos.CheckedMeanField`).
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


OBJECTIVES.register("jit-trace", JitTraceELBO, jit=True)
OBJECTIVES.register("jit-meanfield", JitTraceMeanFieldELBO, jit=True, analytic_kl=True)
