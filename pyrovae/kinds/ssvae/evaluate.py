"""Evaluation of a trained SSVAE: classification accuracy, and the unlabelled ELBO per point.

The ELBO is the generic one (``pyrovae.evaluation.evaluate_elbo``, read off the traces): the
guide enumerates y, so for x_i treated as unlabelled, with one draw z_ic ~ q(z|x_i, c) per class
(the classes sharing the noise when ``common_noise``)::

    log_px_z_i = sum_c q(c|x_i) log p(x_i | c, z_ic)
    kl_i       = sum_c q(c|x_i) KL(q(z|x_i,c) || N(0, I)) + KL(q(y|x_i) || Cat(1/C))
    elbo_i     = log_px_z_i - kl_i                        (= U(x_i), a bound on log p(x_i))

The sum over classes is exact and the Gaussian KL analytic, so only log p(x|c,z) is sampled.
Shapes: x [B, D] -> terms [B].
"""

from __future__ import annotations

import torch

from pyrovae.evaluation.classification import accuracy
from pyrovae.evaluation.elbo import evaluate_elbo

__all__ = ["accuracy", "evaluate_ssvae"]


@torch.no_grad()
def evaluate_ssvae(ssvae, x: torch.Tensor, y: torch.Tensor | None = None,
                   batch_size: int = 1000, seed: int = 0) -> dict:
    """Unlabelled ELBO terms averaged over x [N, D] (nats per point, as
    :func:`pyrovae.evaluate_elbo` reports them) and, given labels y [N], the ``accuracy``.
    Repeatable for a ``seed``; leaves the caller's random stream untouched."""
    out = evaluate_elbo(ssvae, x, batch_size, seed=seed)
    if y is not None:
        out["accuracy"] = accuracy(ssvae, x, y, batch_size)
    return out
