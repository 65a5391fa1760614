"""Bidirectional Monte Carlo (Grosse et al. 2015; Wu et al. 2017): sandwich log p(x) between
two AIS runs on data simulated from the model, which bounds AIS's own error.

For n points (x_i, z_i) drawn from the model, z_i ~ p(z), x_i ~ p(x | z_i) (the model run
with its observed site sampled, ``poutine.uncondition``), z_i is an exact draw from the
posterior p(z | x_i). Then

    forward AIS   f_0 -> p(z|x), chains from f_0:     E[w] = p(x)      log mean w      <= log p(x)
    reverse AIS   p(z|x) -> f_0, chains from z_i:     E[w] = 1 / p(x)  -log mean w     >= log p(x)

(each in expectation, by Jensen), with the same schedule and transitions run backwards (every
reverse chain of a point starts at its z_i). The gap upper - lower bounds the error of the
forward estimate on such data; as T grows both tend to log p(x) and the gap to 0.
Shapes: n points -> lower [n], upper [n].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyro import poutine

from pyrovae.config.fields import COUNT, check_number
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.rng import seeded
from pyrovae.evaluation.ais import AISOptions, ais_log_likelihood
from pyrovae.evaluation.target import LatentSpace, run_program
from pyrovae.runtime.traces import _sample_sites, eval_mode


@torch.no_grad()
def simulate(module, template: torch.Tensor, n: int, seed: int = 0):
    """n points from the model: (x [n, ...] shaped like the rows of ``template``, the flat
    unconstrained latents u [n, n_z] that generated them, target.py's layout)."""
    shape = (n, *template.shape[1:])
    with seeded(seed), eval_mode(module):
        fake = torch.zeros(shape, dtype=template.dtype, device=template.device)
        trace = run_program(poutine.uncondition(module.model), module, fake, 1)
        observed = [(name, s) for name, s in _sample_sites(trace)
                    if s["is_observed"] or s["infer"].get("was_observed")]
        if len(observed) != 1 or observed[0][1]["value"].reshape(-1).numel() != fake.numel():
            raise ConfigError(f"BDMC simulates x from the model, which needs one observed site "
                              f"holding x itself; {type(module).__name__}.model observes "
                              f"{', '.join(n for n, _ in observed) or 'none'}: leave out --bdmc "
                              f"for this model")
        x = observed[0][1]["value"].reshape(shape)
        space = LatentSpace(module, x)
        u = space.flatten({name: trace.nodes[name]["value"] for name in space.names})
    return x, u[0]


def bdmc(module, template: torch.Tensor, n: int, options: AISOptions | None = None,
         batch_size: int = 100, memory_mb: int = 512, seed: int = 0,
         progress: bool = False) -> dict:
    """Forward and reverse AIS on n simulated points (module docstring). Returns per point
    ``lower``, ``upper`` [n] (float64) and ``x`` [n, ...], and the summary numbers
    ``bdmc_lower``, ``bdmc_upper`` (means), ``bdmc_gap`` (upper - lower, with ``_se``),
    ``bdmc_points`` and ``bdmc_seconds``."""
    n = check_number(n, "bdmc_points", COUNT)
    options = options or AISOptions()
    x, u = simulate(module, template, n, seed)
    common = dict(options=options, batch_size=batch_size, memory_mb=memory_mb, seed=seed + 1,
                  progress=progress)
    fwd = ais_log_likelihood(module, x, **common)
    rev = ais_log_likelihood(module, x, reverse_from=u, **common)
    lower, upper = fwd["log_px"].cpu().numpy(), rev["log_px"].cpu().numpy()
    gap = upper - lower
    se = float(np.std(gap, ddof=1) / math.sqrt(n)) if n > 1 else None
    return {"lower": lower, "upper": upper, "x": x,
            "bdmc_points": n, "bdmc_lower": float(lower.mean()),
            "bdmc_upper": float(upper.mean()), "bdmc_gap": float(gap.mean()),
            "bdmc_gap_se": se, "bdmc_seconds": round(fwd["seconds"] + rev["seconds"], 3)}
