"""The KL weight beta_t of each training step, from ``[model.kl]`` (a KLConfig).

    constant   beta_t = beta
    linear     beta_t = beta * min(1, t / warmup)                  (warm-up; beta_0 = 0)
    cyclical   beta_t = beta * min(1, tau_t / ramp),  tau_t = (t mod period) / period
               (Fu et al. 2019: each cycle rises linearly for ``ramp`` of it, then stays)

t is the 0-based step count of the run. The loss is -(E_q[log p(x|z)] - beta_t * KL); with
``free_bits`` = lambda > 0 the KL term is sum_d max(lambda, KL_d), KL_d the minibatch mean of
dimension d's KL (Kingma et al. 2016), see ``objectives.FreeBitsMeanFieldELBO``.

A schedule is a function ``beta_t(kl, step)`` registered in ``KL_SCHEDULES`` under the name
``model.kl.schedule`` chooses; a plug-in registers its own the same way.
"""

from __future__ import annotations

from pyrovae.runtime.registry import KL_SCHEDULES


@KL_SCHEDULES.register("constant")
def constant(kl, step: int) -> float:
    """beta_t = beta."""
    return kl.beta


@KL_SCHEDULES.register("linear")
def linear(kl, step: int) -> float:
    """beta_t = beta * min(1, t / warmup) (beta when warmup = 0)."""
    if kl.warmup > 0:
        return kl.beta * min(1.0, step / kl.warmup)
    return kl.beta


@KL_SCHEDULES.register("cyclical")
def cyclical(kl, step: int) -> float:
    """beta_t = beta * min(1, tau_t / ramp), tau_t = (t mod period) / period."""
    tau = (step % kl.period) / kl.period
    return kl.beta * min(1.0, tau / kl.ramp)


def beta_at(kl, step: int) -> float:
    """beta_t for the 0-based ``step`` under the schedule of ``kl`` (a KLConfig)."""
    return KL_SCHEDULES.get(kl.schedule)(kl, step)
