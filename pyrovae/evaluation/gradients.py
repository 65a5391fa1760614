"""Variance of an objective's gradient estimator, at fixed parameters and a fixed minibatch.

For parameters theta (P numbers, flattened) and a fixed minibatch x of B points, each call of a
stochastic objective draws fresh z and returns one gradient estimate

    g_s = grad_theta  -ELBO_hat_s(x) / B        s = 1..S   (nats per data point)

where ELBO_hat is the objective's estimator (Trace_ELBO, TraceMeanField_ELBO, IWAE, ...,
exactly as the run trains with it, without the N/B data-set scaling). From the S draws:

    mean_j    = (1/S) sum_s g_sj                             the average gradient, [P]
    var_j     = 1/(S-1) sum_s (g_sj - mean_j)^2              per-coordinate variance, [P]
    var_mean  = (1/P) sum_j var_j                            mean per-coordinate variance
    var_total = sum_j var_j = E ||g - E g||^2 (estimate)     trace of the covariance
    mean_sqnorm = ||mean||^2                                 squared norm of the mean gradient
    snr       = mean_sqnorm / var_total                      signal-to-noise ratio
    snr_param = (1/P') sum_j |mean_j| / sqrt(var_j)          per-parameter SNR, averaged over
                                                             the P' coordinates with var_j > 0
                                                             (Rainforth et al. 2018's measure)

(``mean_sqnorm`` over-estimates ||E g||^2 by var_total / S, so with S = 100 an snr below
~0.01 is noise-dominated.) The same numbers are reported per parameter group (the VAE's
top-level modules: ``encoder``, ``decoder``, and ``prior`` when it has parameters), since
objectives differ there: an analytic KL removes encoder noise only, and a tighter IWAE bound
(K > 1) raises the decoder's SNR but lowers the encoder's (Rainforth et al. 2018). Moments are
accumulated online in float64 (Welford), so memory is O(P) whatever S is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from pyrovae.runtime.interface import max_plate_nesting
from pyrovae.objectives import has_differentiable_loss, objective_for
from pyrovae.runtime.rng import seeded


@dataclass
class GradientMoments:
    """Mean and variance of S gradient draws: ``mean``, ``var`` [P]; ``groups``: name -> slice."""

    mean: torch.Tensor
    var: torch.Tensor
    draws: int
    groups: dict[str, slice]

    @staticmethod
    def _stats(mean: torch.Tensor, var: torch.Tensor) -> dict[str, float]:
        total, signal = float(var.sum()), float(mean.pow(2).sum())
        live = var > 0
        per_param = (mean[live].abs() / var[live].sqrt()).mean() if live.any() else None
        return {"var_mean": float(var.mean()) if var.numel() else 0.0, "var_total": total,
                "mean_sqnorm": signal, "snr": signal / total if total > 0 else float("inf"),
                "snr_param": float(per_param) if per_param is not None else float("inf")}

    def summary(self) -> dict:
        """The numbers of the module docstring, overall and as ``groups[name]``."""
        out = self._stats(self.mean, self.var)
        out.update(draws=self.draws, num_params=int(self.mean.numel()))
        out["groups"] = {name: self._stats(self.mean[s], self.var[s])
                         for name, s in self.groups.items()}
        return out


def gradient_moments(params: dict[str, torch.nn.Parameter], backward, draws: int = 100,
                     seed: int = 0, progress: bool = False) -> GradientMoments:
    """Mean and variance of the gradients that ``backward()`` leaves in ``params``' ``.grad``.

    ``params``: name -> parameter (the group of ``a.b.c`` is ``a``); ``backward()`` computes one
    stochastic estimate and back-propagates it (gradients are zeroed before each call and
    cleared after). Runs under ``seeded(seed)``: repeatable, the caller's random stream kept.
    """
    if draws < 2:
        raise ValueError(f"draws = {draws}: a variance needs at least 2 draws")
    order = {}
    for n in params:
        order.setdefault(n.split(".")[0], len(order))
    names = sorted(params, key=lambda n: order[n.split(".")[0]])  # each group contiguous
    params = {n: params[n] for n in names}
    sizes = [params[n].numel() for n in names]
    groups, start = {}, 0
    for name, size in zip(names, sizes):
        group = name.split(".")[0]
        first = groups.get(group, slice(start, start)).start
        groups[group] = slice(first, start + size)
        start += size
    mean = torch.zeros(start, dtype=torch.float64)
    m2 = torch.zeros(start, dtype=torch.float64)
    with seeded(seed):
        for s in tqdm(range(1, draws + 1), disable=not progress, desc="gradient draws"):
            for p in params.values():
                p.grad = None
            backward()
            g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                           for p in params.values()]).detach().double().cpu()
            delta = g - mean
            mean += delta / s
            m2 += delta * (g - mean)
    for p in params.values():
        p.grad = None
    return GradientMoments(mean, m2 / (draws - 1), draws, groups)


def estimator(model_config, elbo: str | None = None, num_particles: int | None = None,
              module=None):
    """The objective a run with ``model_config`` trains with (its Python form, not the JIT one),
    or another Pyro estimator ``elbo`` / ``num_particles`` on the same model (``module``: the
    model, for its ``max_plate_nesting``)."""
    changes = {}
    if elbo is not None or model_config.elbo.startswith("jit-"):
        changes["elbo"] = (elbo or model_config.elbo).removeprefix("jit-")
    if num_particles is not None:
        changes["num_particles"] = num_particles
    config = dataclasses.replace(model_config, **changes) if changes else model_config
    return objective_for(config, max_plate_nesting(module) if module is not None else 1)


def elbo_gradient_variance(vae, x: torch.Tensor, elbo=None, draws: int = 100, seed: int = 0,
                           progress: bool = False) -> dict:
    """:meth:`GradientMoments.summary` of the per-point -ELBO gradient of ``vae`` on x [B, D].

    ``elbo``: a Pyro ELBO (default: the one ``vae.config`` trains with, see :func:`estimator`).
    Parameter groups are ``vae``'s submodules (``encoder``, ``decoder``, ``prior``, ...).
    """
    if elbo is None:
        if not hasattr(vae, "config"):
            raise TypeError("elbo_gradient_variance needs elbo= for a module without .config")
        elbo = estimator(vae.config, module=vae)
    params = {n: p for n, p in vae.named_parameters() if p.requires_grad}
    b = x.shape[0]

    def backward():
        if has_differentiable_loss(elbo):
            (elbo.differentiable_loss(vae.model, vae.guide, x) / b).backward()
        else:  # TraceGraph_ELBO back-propagates itself; rescale to per point
            elbo.loss_and_grads(vae.model, vae.guide, x)
            for p in params.values():
                if p.grad is not None:
                    p.grad /= b

    return gradient_moments(params, backward, draws, seed, progress).summary()


def fixed_minibatch(data, size: int, seed: int = 0) -> torch.Tensor:
    """The first ``size`` training points as epoch 1 of seed ``seed`` sees them: [size, D],
    the same for every run that shares the data."""
    return data.train_data(1, seed)[:size]
