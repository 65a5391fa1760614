"""The M2 objective: Kingma et al.'s J^alpha as Pyro ELBO losses on two minibatches.

For N_u unlabelled and N_l labelled training points, a step draws an unlabelled batch x_u [B_u, D]
and a labelled batch (x_l [B_l, D], y_l [B_l]) and minimises the unbiased estimate

    loss = -(N_u/B_u) sum_u U(x)  -  (N_l/B_l) sum_l L(x, y)  -  alpha (N_l/B_l) sum_l log q(y|x)

(the first two terms are the ELBO estimator's losses, scaled by each batch's data plate; the
last is :meth:`SSVAE.aux_loss`). ``enum`` runs TraceEnum_ELBO, which sums y out of U(x) exactly
(parallel or sequential enumeration, as the model's guide marks y); ``trace`` runs Trace_ELBO,
which samples y ~ q(y|x) and gives the classifier a score-function (REINFORCE) gradient.
"""

from __future__ import annotations

import pyro.infer as infer
import torch

ESTIMATORS = {"enum": infer.TraceEnum_ELBO, "trace": infer.Trace_ELBO}


def make_ss_elbo(name: str) -> infer.ELBO:
    """The ELBO estimator called ``name`` ("enum" or "trace"), one plate deep."""
    return ESTIMATORS[name](max_plate_nesting=1)


_LABELLED = infer.Trace_ELBO(max_plate_nesting=1)  # labelled data: no discrete latent left


def ss_loss(elbo: infer.ELBO, ssvae, x_u: torch.Tensor, x_l: torch.Tensor, y_l: torch.Tensor,
            n_unlabelled: int, n_labelled: int, alpha: float):
    """(loss, unlabelled part): the differentiable J^alpha estimate above and -(N_u/B_u) sum U.
    ``elbo`` estimates U(x); L(x, y), whose only latent is z, is Trace_ELBO's."""
    unlabelled = elbo.differentiable_loss(ssvae.model, ssvae.guide, x_u, n_data=n_unlabelled)
    labelled = _LABELLED.differentiable_loss(ssvae.model, ssvae.guide, x_l, y_l,
                                             n_data=n_labelled)
    loss = unlabelled + labelled
    if alpha > 0:
        loss = loss + alpha * ssvae.aux_loss(x_l, y_l, n_data=n_labelled)
    return loss, unlabelled
