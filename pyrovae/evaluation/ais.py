"""Annealed importance sampling (Neal 2001) of log p(x) per data point, for any interface model
whose latents are continuous (Wu et al. 2017 use it for decoder-based models).

With f_0 the initial density (the prior p(z), or the guide q(z|x)) and f_T(z) = p(x, z), the
geometric path gamma_t(z) = f_0(z)^(1 - beta_t) f_T(z)^beta_t, 0 = beta_0 < ... < beta_T = 1,
runs C chains per point:

    z_0 ~ f_0;   for t = 1..T:  log w += (beta_t - beta_t-1) (log f_T(z_t-1) - log f_0(z_t-1))
                                z_t ~ HMC transition leaving gamma_t invariant (t < T)

E[w] = Z_T / Z_0 = p(x) since f_0 is normalized, so log p(x) ~ log (1/C) sum_c w_c, a
stochastic lower bound (Jensen) that tends to log p(x) as T grows. Its Monte Carlo standard
error by the delta method over the chains: se = sd(w) / (sqrt(C) mean(w)).

The chains move in the unconstrained flat space of target.py (u [C, B, n], all latent sites
joined) by the tensorized HMC of hmc.py: L leapfrog steps, a step size per point (shared by
its chains) or per chain, adapted after every transition towards an acceptance rate of 0.65
(log eps += 0.5 (a - 0.65), hmc.adapt_step). Adapting on the chains' past keeps every weight
valid: each transition still leaves its gamma_t invariant given everything drawn before it.
beta_t follows the sigmoid schedule of Grosse et al. / Wu et al., sigmoid(delta (2 t / T - 1))
rescaled to [0, 1] (delta = 4), or a linear one.
Points are taken ``batch_size`` at a time and each batch's chains in chunks that fit
``memory_mb``, so memory stays bounded whatever C is. Shapes: x [N, D] -> log p(x) [N].

The work, N x C x T x L gradient evaluations of one point, is refused in one line above
``memory.MAX_WORK`` (per point when the options are made, for all N points when they run),
as are a schedule or log weights [C, N] that would not fit in memory
(:meth:`AISOptions.check_size`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from pyrovae.runtime import memory
from pyrovae.config.fields import COUNT, POSITIVE, Rule, check_number
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.rng import seeded
from pyrovae.evaluation.hmc import adapt_step, hmc_step
from pyrovae.evaluation.target import LatentSpace, no_param_grads
from pyrovae.runtime.traces import eval_mode

INITS = ("guide", "prior")
SCHEDULES = ("sigmoid", "linear")
ADAPT = ("point", "chain")
AIS_STEPS = Rule(int, 1, note="the number of intermediate distributions T; try 100 to 10000")
ACCEPT = Rule(float, 0.0, exclusive_min=True, max=0.99)
#: bytes per step of making the schedule: its float64 arrays and the list of Python floats
SCHEDULE_BYTES = 64


def check_choice(value, where: str, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{where} = {value!r} is not one of: {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class AISOptions:
    """AIS settings (module docstring); each is checked when made, in one line."""

    steps: int = 300          # T, annealing steps
    chains: int = 8           # C, independent chains per point
    init: str = "guide"       # f_0: "guide" q(z|x) or "prior" p(z)
    leapfrog: int = 5         # L, leapfrog steps per HMC transition
    schedule: str = "sigmoid"
    step_size: float = 0.05   # initial HMC step size
    target_accept: float = 0.65
    adapt: str = "point"      # step size per "point" or per "chain"

    def __post_init__(self):
        for name, rule in (("steps", AIS_STEPS), ("chains", COUNT), ("leapfrog", COUNT),
                           ("step_size", POSITIVE), ("target_accept", ACCEPT)):
            object.__setattr__(self, name, check_number(getattr(self, name), f"ais_{name}",
                                                        rule))
        for name, choices in (("init", INITS), ("schedule", SCHEDULES), ("adapt", ADAPT)):
            check_choice(getattr(self, name), f"ais_{name}", choices)
        self.check_size()

    def check_size(self, points: int | None = None, device=None) -> None:
        """Refuse, in one line, AIS on ``points`` points (None: per point) whose work (points
        x chains x steps x leapfrog gradient evaluations) is beyond ``memory.max_work()``, or
        whose schedule or log weights [C, N] (float64, held about 3 times while they are
        joined) would not fit in memory (on ``device``)."""
        sizes = (f"--ais-chains {self.chains} x --ais-steps {self.steps} x --ais-leapfrog "
                 f"{self.leapfrog}")
        if points is None:
            memory.check_work(self.chains * self.steps * self.leapfrog,
                              f"AIS with {sizes} for each point",
                              "lower --ais-chains, --ais-steps or --ais-leapfrog")
            memory.check_bytes(SCHEDULE_BYTES * (self.steps + 1),
                               f"the AIS schedule of --ais-steps {self.steps}",
                               "lower --ais-steps")
            return
        memory.check_work(points * self.chains * self.steps * self.leapfrog,
                          f"AIS of {points} points x {sizes}",
                          "lower --ais-chains, --ais-steps or --ais-leapfrog, or evaluate "
                          "fewer --points")
        memory.check_bytes(3 * 8 * self.chains * points,
                           f"the AIS log weights of --ais-chains {self.chains} x {points} "
                           f"points", "lower --ais-chains (or evaluate fewer --points)",
                           device=device)

    def as_dict(self) -> dict:
        return dict(vars(self))


def schedule(steps: int, kind: str = "sigmoid", radius: float = 4.0) -> list[float]:
    """beta_0 = 0 < ... < beta_T = 1 (T + 1 values): sigmoid (module docstring) or linear."""
    check_choice(kind, "ais_schedule", SCHEDULES)
    if kind == "linear":
        return [t / steps for t in range(steps + 1)]
    s = 1.0 / (1.0 + np.exp(-np.linspace(-radius, radius, steps + 1)))
    return [float(b) for b in (s - s[0]) / (s[-1] - s[0])]


def _pieces(space: LatentSpace, init: str):
    """u -> (log f_0 + log|J|, log f_T - log f_0, and their gradients in u), each [C, B](, n)."""
    def pieces(u):
        u = u.detach().requires_grad_()
        with torch.enable_grad():
            values, ladj = space.unflatten(u)
            log_prior, log_lik = space.log_joint(values)
            if init == "prior":
                base, delta = log_prior + ladj, log_lik
            else:
                log_q = space.log_guide(values)
                base, delta = log_q + ladj, log_prior + log_lik - log_q
            g_delta, = torch.autograd.grad(delta.sum(), u, retain_graph=True)
            g_base, = torch.autograd.grad(base.sum(), u)
        return base.detach(), delta.detach(), g_base, g_delta
    return pieces


def _at(p, beta: float):
    """The HMC state of pieces p at beta: (log gamma, its gradient, *p)."""
    base, delta, g_base, g_delta = p
    return (base + beta * delta, g_base + beta * g_delta, base, delta, g_base, g_delta)


def anneal(space: LatentSpace, u: torch.Tensor, betas, options: AISOptions,
           bar=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the chains u [C, B, n] along ``betas`` (increasing: forward AIS; decreasing:
    reverse AIS); returns (log w [C, B], mean acceptance per point [B]), where
    log w = sum_t (beta_t - beta_t-1) (log f_T - log f_0)(z_t-1)."""
    pieces = _pieces(space, options.init)
    state = pieces(u)
    chains, points = u.shape[:2]
    step = torch.full((1 if options.adapt == "point" else chains, points), options.step_size,
                      dtype=u.dtype, device=u.device)
    log_w = torch.zeros(chains, points, dtype=torch.float64, device=u.device)
    accepted = torch.zeros(points, dtype=torch.float64, device=u.device)
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]) * state[1].double()
        if t < len(betas) - 1:
            beta = betas[t]
            u, full, accept = hmc_step(u, _at(state, beta), lambda v: _at(pieces(v), beta),
                                       step, options.leapfrog)
            state = full[2:]
            step = adapt_step(step, accept, options.target_accept, per=options.adapt)
            accepted += accept.double().mean(0)
        if bar is not None:
            bar.update(1)
    return log_w, accepted / max(len(betas) - 2, 1)


def initial_draws(space: LatentSpace, chains: int, init: str) -> torch.Tensor:
    """u [C, B, n]: C draws per point from f_0 (the prior or the guide)."""
    return space.prior_draws(chains) if init == "prior" else space.guide_draws(chains)


def chain_chunk(module, points: int, chains: int, memory_mb: int) -> int:
    """Chains per chunk for ``points`` points so that a chunk's forward and backward pass (3
    times the inference memory) fits ``memory_mb``."""
    per_chain = 3 * memory.inference_bytes(module, points)
    return max(1, min(chains, memory_mb * 2**20 // max(per_chain, 1)))


def log_mean_exp_se(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log mean_c w_c, its delta-method standard error) over dim 0: [C, B] -> ([B], [B])."""
    chains = log_w.shape[0]
    est = torch.logsumexp(log_w, 0) - math.log(chains)
    if chains < 2:
        return est, torch.full_like(est, float("nan"))
    w = torch.exp(log_w - log_w.max(0).values)
    return est, w.std(0) / (math.sqrt(chains) * w.mean(0))


def ais_log_likelihood(module, x: torch.Tensor, options: AISOptions | None = None,
                       batch_size: int = 100, memory_mb: int = 512, seed: int = 0,
                       progress: bool = False, reverse_from: torch.Tensor | None = None) -> dict:
    """AIS log p(x) of every row of x [N, D] (module docstring): a dict of ``log_px`` [N]
    (float64), ``se`` [N] (each point's Monte Carlo error), ``log_w`` [C, N], ``accept`` [N]
    and ``seconds``. Repeatable for a ``seed``; leaves the caller's random stream alone.

    ``reverse_from`` u [N, n] (flat unconstrained exact posterior draws, bdmc.py) runs reverse
    AIS from them instead (``log_w`` are then the reverse weights, E[w] = 1 / p(x)):
    ``log_px`` is -log mean_c w_c, a stochastic upper bound."""
    options = options or AISOptions()
    batch_size = check_number(batch_size, "batch_size", COUNT)
    memory_mb = check_number(memory_mb, "memory_mb", COUNT)
    options.check_size(x.shape[0], memory.model_device(module))
    betas = schedule(options.steps, options.schedule)
    if reverse_from is not None:
        betas = betas[::-1]
    chunk = chain_chunk(module, min(batch_size, x.shape[0]), options.chains, memory_mb)
    n_chunks = math.ceil(options.chains / chunk)
    start, logs, accepts = time.perf_counter(), [], []
    desc = f"{'reverse ' if reverse_from is not None else ''}AIS, T={options.steps}"
    with seeded(seed), eval_mode(module), no_param_grads(module), \
            tqdm(total=math.ceil(x.shape[0] / batch_size) * n_chunks * options.steps,
                 disable=not progress, desc=desc, unit="step") as bar:
        for b0 in range(0, x.shape[0], batch_size):
            space = LatentSpace(module, x[b0:b0 + batch_size])
            parts, acc = [], 0.0
            for c0 in range(0, options.chains, chunk):
                c = min(chunk, options.chains - c0)
                if reverse_from is None:
                    u = initial_draws(space, c, options.init)
                else:
                    u = reverse_from[b0:b0 + batch_size].unsqueeze(0).expand(c, -1, -1)
                log_w, accept = anneal(space, u, betas, options, bar)
                parts.append(log_w)
                acc = acc + accept * c / options.chains
            logs.append(torch.cat(parts))
            accepts.append(acc)
    log_w = torch.cat(logs, dim=1)
    est, se = log_mean_exp_se(log_w)
    if reverse_from is not None:  # E[w_rev] = 1 / p(x): -log mean_c w_rev is an upper bound
        est = -est
    return {"log_px": est, "se": se, "log_w": log_w, "accept": torch.cat(accepts),
            "seconds": time.perf_counter() - start}


def summarize(log_px: np.ndarray, se: np.ndarray, prefix: str) -> dict:
    """Mean log p(x) over points with its standard error across points (``_se``) and the
    Monte Carlo part sqrt(sum se_i^2) / N (``_mc_se``)."""
    n = len(log_px)
    return {f"{prefix}": float(np.mean(log_px)),
            f"{prefix}_se": float(np.std(log_px, ddof=1) / math.sqrt(n)) if n > 1 else None,
            f"{prefix}_mc_se": (float(np.sqrt(np.nansum(se ** 2)) / n)
                                if np.isfinite(se).any() else None)}
