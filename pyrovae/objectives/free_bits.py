"""Free bits (Kingma et al. 2016): the mean-field objectives with a floor on each latent
dimension's KL,

    loss = -E_q[log p(x|z)] + sum_s sum_d max(lambda_s, KL_sd).

One floor for every latent site (``free_bits``), or one per site (``free_bits_per_site``, e.g.
a hierarchical VAE's ``{"z1": 1.0, "z2": 0.5}``; a site it does not name gets ``free_bits``).
"""

from __future__ import annotations

import pyro.infer as infer
import torch
from pyro.infer.util import torch_item
from torch.distributions import kl_divergence

from pyrovae.runtime.registry import OBJECTIVES

from pyrovae.objectives.jit import JitTraceMeanFieldELBO
from pyrovae.objectives.pyro_elbos import MeanFieldELBO


class _FreeBits:
    """Mixin for the mean-field objectives: the KL term becomes sum_d max(lambda, KL_d).

    KL_d is dimension d's analytic KL(q(z_d|x) || p(z_d)) averaged over the minibatch (and
    particles); a dimension whose average KL is below lambda contributes the constant lambda,
    so the loss gives it no gradient to push it further down (Kingma et al. 2016, "free bits").
    A site without a closed-form KL against its prior (``kl_divergence`` raises
    NotImplementedError, as TraceMeanField_ELBO then samples) uses the Monte Carlo term
    log q(z_d|.) - log p(z_d|.) per dimension instead. A site whose floor is 0 keeps its plain
    KL term. Only the latent sites' KL terms change; observed sites are as in
    TraceMeanField_ELBO.
    """

    free_bits = 0.0
    free_bits_per_site: dict = {}

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
            try:
                kl = kl_divergence(q.base_dist, p.base_dist)  # [..., B, L] per dimension
            except NotImplementedError:  # no closed form (e.g. a prior given a later draw):
                value = guide_site["value"]  # the Monte Carlo term, dimension by dimension
                kl = q.base_dist.log_prob(value) - p.base_dist.log_prob(value)
            floor = self.free_bits_per_site.get(name, self.free_bits)
            if floor > 0:
                per_dim = kl.reshape(-1, kl.shape[-1]).mean(0)  # [L]
                kl_sum = torch.clamp(per_dim, min=floor).sum() * (kl.numel() // kl.shape[-1])
            else:
                kl_sum = kl.sum()
            elbo_particle = elbo_particle - kl_sum * guide_site["scale"]
        surrogate = -elbo_particle
        loss = surrogate.detach() if torch._C._get_tracing_state() else torch_item(surrogate)
        return loss, surrogate  # as TraceMeanField_ELBO: a number, and the differentiable loss


class FreeBitsMeanFieldELBO(_FreeBits, MeanFieldELBO):
    """TraceMeanField_ELBO with a free-bits floor on each latent dimension's KL."""


class JitFreeBitsMeanFieldELBO(_FreeBits, JitTraceMeanFieldELBO):
    """The compiled form of :class:`FreeBitsMeanFieldELBO`."""


# the free-bits variants of the mean-field objectives (``model.kl.free_bits > 0``)
for _name, _cls in (("meanfield", FreeBitsMeanFieldELBO), ("jit-meanfield", JitFreeBitsMeanFieldELBO)):
    _entry = OBJECTIVES.entry(_name)
    OBJECTIVES.register(_name, _entry.obj, replace=True,
                        **{**_entry.capabilities, "free_bits": _cls})
