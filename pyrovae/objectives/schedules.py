"""The KL weight beta_t of each training step, from ``[model.kl]`` (a KLConfig).

    constant   beta_t = beta
    linear     beta_t = beta * min(1, t / warmup)                  (warm-up; beta_0 = 0)
    cyclical   beta_t = beta * min(1, tau_t / ramp),  tau_t = (t mod period) / period
               (Fu et al. 2019: each cycle rises linearly for ``ramp`` of it, then stays)

t is the 0-based step count of the run. The loss is -(E_q[log p(x|z)] - beta_t * KL); with
``free_bits`` = lambda > 0 the KL term is sum_d max(lambda, KL_d), KL_d the minibatch mean of
dimension d's KL (Kingma et al. 2016), see ``objectives.FreeBitsMeanFieldELBO``.
"""

from __future__ import annotations


def beta_at(kl, step: int) -> float:
    """beta_t for the 0-based ``step`` under the schedule of ``kl`` (a KLConfig)."""
    if kl.schedule == "linear" and kl.warmup > 0:
        return kl.beta * min(1.0, step / kl.warmup)
    if kl.schedule == "cyclical":
        tau = (step % kl.period) / kl.period
        return kl.beta * min(1.0, tau / kl.ramp)
    return kl.beta
