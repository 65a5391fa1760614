"""Pyro's own ELBO estimators, registered as pyrovae objectives.

    trace       Trace_ELBO: E_q[log p(x, z) - log q(z|x)] by Monte Carlo (KL term sampled).
    meanfield   TraceMeanField_ELBO: E_q[log p(x|z)] by sampling, KL(q || p) in closed form;
                the same expectation with less variance (needs a closed-form KL). Each site's
                KL(q(z_i|.) || p(z_i|parents)) is taken analytically (where one exists) with its
                model parents at the guide's values, which is the ELBO only if the guide draws
                them before z_i: a closed-form site whose model predecessors the guide draws
                after it (q(z1|x) q(z2|z1) for p(z2) p(z1|z2) with Normal p(z1|z2)), or a
                non-reparameterised site, is refused at the first step in one line (Pyro only
                warns, and the gradient is biased).
    tracegraph  TraceGraph_ELBO: Rao-Blackwellised score-function terms for non-reparameterised
                sites; with only reparameterised sites it equals Trace_ELBO.
    enum        TraceEnum_ELBO: sums out the discrete sites the guide marks with
                ``infer={"enumerate": ...}`` exactly, E_q over the rest as Trace_ELBO.
"""

from __future__ import annotations

import warnings

import pyro.infer as infer
from torch.distributions import kl_divergence

from pyrovae.runtime.interface import InterfaceError
from pyrovae.runtime.registry import OBJECTIVES


def check_mean_field(model_trace, guide_trace) -> None:
    """Refuse in one line a guide the analytic KL terms do not serve (module docstring): a
    non-reparameterised site, or a site whose KL is taken in closed form (``kl_divergence`` of
    its guide and model distributions exists) while a latent before it in the model is drawn
    after it in the guide (its model parents may then depend on it). A site without a closed
    form is estimated by sampling, which is right in any order."""
    def latents(trace):
        return [name for name, site in trace.nodes.items() if site["type"] == "sample"
                and not site["is_observed"] and name in guide_trace.nodes
                and guide_trace.nodes[name]["type"] == "sample"]
    in_model, in_guide = latents(model_trace), latents(guide_trace)
    for name in in_guide:
        if not guide_trace.nodes[name]["fn"].has_rsample:
            raise InterfaceError(f"elbo = \"meanfield\" needs reparameterised guide sites, but "
                                 f"'{name}' is not; use elbo = \"trace\" (or \"enum\" to sum "
                                 f"it out)")
    for i, name in enumerate(in_model):
        later = [other for other in in_model[:i] if name in in_guide and other in in_guide
                 and in_guide.index(other) > in_guide.index(name)]
        if later and _closed_form(guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]):
            raise InterfaceError(
                f"elbo = \"meanfield\" takes the KL of '{name}' in closed form given its model "
                f"parents, but the guide draws {later} after it (model order {in_model}, guide "
                f"order {in_guide}); use elbo = \"trace\" or draw them in the model's order")


def _closed_form(q, p) -> bool:
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


class CheckedMeanField:
    """Mixin for TraceMeanField_ELBO and its compiled form: refuses a guide whose analytic KL
    would be wrong (:func:`check_mean_field`) instead of Pyro's warning of a sufficient
    condition; checked once per (model, guide) pair."""

    def _get_trace(self, model, guide, args, kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Failed to verify mean field")
            model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        checked = self.__dict__.setdefault("_mean_field_checked", set())
        if (id(model), id(guide)) not in checked:
            check_mean_field(model_trace, guide_trace)
            checked.add((id(model), id(guide)))
        return model_trace, guide_trace


class MeanFieldELBO(CheckedMeanField, infer.TraceMeanField_ELBO):
    """TraceMeanField_ELBO with :class:`CheckedMeanField`'s check."""


OBJECTIVES.register("trace", infer.Trace_ELBO, compiled="jit-trace")
OBJECTIVES.register("meanfield", MeanFieldELBO, analytic_kl=True, compiled="jit-meanfield")
OBJECTIVES.register("tracegraph", infer.TraceGraph_ELBO, differentiable=False)
OBJECTIVES.register("enum", infer.TraceEnum_ELBO, enumerates=True)
