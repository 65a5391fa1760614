"""A tensorized Hamiltonian Monte Carlo step for many independent chains at once.

Pyro's ``HMC`` kernel samples one model's latent state; AIS needs thousands of chains (C per
data point, B points) that move independently, each with its own step size. Here the state
is a tensor u [C, B, n] and the target a function

    log_density(u) -> (log gamma(u) [C, B], d log gamma / du [C, B, n])

whose entries are independent: entry (c, b) depends on u[c, b] only, so one autograd pass
over the sum gives every chain's gradient. One step with unit mass matrix, step sizes
eps [C, B] (or [1, B] shared by a point's chains) and L leapfrog steps:

    p ~ N(0, I);   p <- p + eps/2 grad(u);   L times { u <- u + eps p;  p <- p + eps grad(u) }
    (the last momentum update is a half step), H = -log gamma(u) + |p|^2 / 2,
    accept each chain's proposal with probability min(1, exp(H_0 - H_L)).

A proposal whose log gamma or H is not finite is rejected. Each chain's step leaves its own
gamma invariant, so any number of them are valid MCMC transitions inside AIS.
"""

from __future__ import annotations

from typing import Callable

import torch

State = tuple  # (log gamma [C, B], grad [C, B, n], *extras [C, B] or [C, B, n])


def leapfrog(u: torch.Tensor, p: torch.Tensor, state: State, log_density: Callable,
             step: torch.Tensor, n_steps: int) -> tuple[torch.Tensor, torch.Tensor, State]:
    """L leapfrog steps from (u, p) whose state (log gamma, grad, ...) is ``state``; returns
    the proposal (u', p', state')."""
    eps = step.unsqueeze(-1)
    p = p + 0.5 * eps * state[1]
    for i in range(n_steps):
        u = u + eps * p
        state = log_density(u)
        p = p + (eps if i < n_steps - 1 else 0.5 * eps) * state[1]
    return u, p, state


def hmc_step(u: torch.Tensor, state: State, log_density: Callable, step: torch.Tensor,
             n_leapfrog: int) -> tuple[torch.Tensor, State, torch.Tensor]:
    """One HMC transition of every chain (module docstring). Returns (u [C, B, n], its state,
    acceptance probabilities [C, B])."""
    p0 = torch.randn_like(u)
    u1, p1, new = leapfrog(u, p0, state, log_density, step, n_leapfrog)
    h0 = -state[0] + 0.5 * (p0 ** 2).sum(-1)
    h1 = -new[0] + 0.5 * (p1 ** 2).sum(-1)
    log_accept = torch.nan_to_num(h0 - h1, nan=-float("inf"), posinf=-float("inf")).clamp(max=0)
    finite = torch.isfinite(new[0]) & torch.isfinite(u1).all(-1)
    accept = finite & (torch.rand_like(log_accept).log() < log_accept)
    log_accept = torch.where(finite, log_accept, torch.full_like(log_accept, -float("inf")))

    def pick(a, b):
        keep = accept.reshape(accept.shape + (1,) * (a.dim() - accept.dim()))
        return torch.where(keep, a, b)

    out = tuple(pick(a, b) for a, b in zip(new, state))
    return pick(u1, u), out, log_accept.exp()


def adapt_step(step: torch.Tensor, accept: torch.Tensor, target: float = 0.65,
               rate: float = 0.5, per: str = "point") -> torch.Tensor:
    """log eps <- log eps + rate (a - target), a the acceptance probability of the last
    transition: larger steps while chains accept more often than ``target``, smaller ones
    while they accept less (a smooth form of Wu et al.'s x 1.02 / 0.98 rule, which settles
    within tens of transitions instead of hundreds). ``per = "point"``: one step size per data
    point [1, B], adapted on the mean acceptance of its chains; ``"chain"``: one per chain."""
    rate_now = accept.mean(0, keepdim=True) if per == "point" else accept
    return step * torch.exp(rate * (rate_now - target)).to(step.dtype)
