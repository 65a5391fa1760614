"""Pyro's own ELBO estimators, registered as pyrovae objectives.

    trace       Trace_ELBO: E_q[log p(x, z) - log q(z|x)] by Monte Carlo (KL term sampled).
    meanfield   TraceMeanField_ELBO: E_q[log p(x|z)] by sampling, KL(q || p) in closed form;
                the same expectation with less variance (needs a closed-form KL).
    tracegraph  TraceGraph_ELBO: Rao-Blackwellised score-function terms for non-reparameterised
                sites; with only reparameterised sites it equals Trace_ELBO.
    enum        TraceEnum_ELBO: sums out the discrete sites the guide marks with
                ``infer={"enumerate": ...}`` exactly, E_q over the rest as Trace_ELBO.
"""

from __future__ import annotations

import pyro.infer as infer

from ..registry import OBJECTIVES

OBJECTIVES.register("trace", infer.Trace_ELBO, compiled="jit-trace")
OBJECTIVES.register("meanfield", infer.TraceMeanField_ELBO, analytic_kl=True,
                    compiled="jit-meanfield")
OBJECTIVES.register("tracegraph", infer.TraceGraph_ELBO, differentiable=False)
OBJECTIVES.register("enum", infer.TraceEnum_ELBO, enumerates=True)
