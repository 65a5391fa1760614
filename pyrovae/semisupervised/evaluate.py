"""Evaluation of a trained SSVAE: classification accuracy and the unlabelled ELBO per point.

For x_i treated as unlabelled, with one draw z_ic ~ q(z|x_i, c) per class c::

    log_px_z_i = sum_c q(c|x_i) log p(x_i | c, z_ic)
    kl_i       = sum_c q(c|x_i) KL(q(z|x_i,c) || N(0, I)) + KL(q(y|x_i) || Cat(1/C))
    elbo_i     = log_px_z_i - kl_i                        (= U(x_i), a bound on log p(x_i))

The sum over classes is exact and the Gaussian KL analytic, so only log p(x|c,z) is sampled.
Shapes: x [B, D] -> terms [B].
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Normal, kl_divergence

from ..evaluation.traces import eval_mode
from ..rng import seeded


@torch.no_grad()
def unlabelled_terms(ssvae, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``log_px_z``, ``kl`` and ``elbo`` [B] of each row of x [B, D], y summed out."""
    c = ssvae.num_classes
    logits = ssvae.classifier(x)                                  # [B, C]
    q_y = torch.softmax(logits, -1).T                             # [C, B]
    ys = torch.arange(c, device=x.device)[:, None]                # [C, 1]
    loc, scale = ssvae.encode(x, ys)                              # [C, B, L]
    z = loc + scale * torch.randn_like(loc)
    log_px = ssvae.likelihood(ssvae.decoder(z, ys)).log_prob(x)   # [C, B]
    kl_z = kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).sum(-1)
    kl_y = kl_divergence(Categorical(logits=logits),
                         Categorical(logits=ssvae.prior_logits.expand_as(logits)))
    log_px_z = (q_y * log_px).sum(0)
    kl = (q_y * kl_z).sum(0) + kl_y
    return {"log_px_z": log_px_z, "kl": kl, "elbo": log_px_z - kl}


@torch.no_grad()
def accuracy(ssvae, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of rows of x [N, D] whose most probable class under q(y|x) is y [N]."""
    with eval_mode(ssvae):
        right = sum(int((ssvae.classify(x[i:i + batch_size]) == y[i:i + batch_size]).sum())
                    for i in range(0, x.shape[0], batch_size))
    return right / max(x.shape[0], 1)


@torch.no_grad()
def evaluate_ssvae(ssvae, x: torch.Tensor, y: torch.Tensor | None = None,
                   batch_size: int = 1000, seed: int = 0) -> dict:
    """Unlabelled ELBO terms averaged over x [N, D] (nats per point, as
    :func:`pyrovae.evaluate_elbo` reports them) and, given labels y [N], the ``accuracy``.
    Repeatable for a ``seed``; leaves the caller's random stream untouched."""
    parts = []
    with seeded(seed), eval_mode(ssvae):
        for start in range(0, x.shape[0], batch_size):
            parts.append(unlabelled_terms(ssvae, x[start:start + batch_size]))
    terms = {k: torch.cat([p[k] for p in parts]).double() for k in parts[0]}
    n = terms["elbo"].numel()
    out = {"elbo": float(terms["elbo"].mean()),
           "elbo_se": float(terms["elbo"].std() / math.sqrt(n)) if n > 1 else float("nan"),
           "log_px_z": float(terms["log_px_z"].mean()), "kl": float(terms["kl"].mean()),
           "kl_estimator": "analytic"}
    if y is not None:
        out["accuracy"] = accuracy(ssvae, x, y, batch_size)
    return out
