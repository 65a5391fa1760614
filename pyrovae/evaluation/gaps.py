"""The inference gap split into its two parts (Cremer, Li and Duvenaud 2018), per data point.

For a point x with amortized guide q_phi(z|x) and log-likelihood log p(x) (AIS or IS):

    amortized ELBO   L[q_phi]   = E_q_phi [log p(x, z) - log q_phi(z|x)]
    local ELBO       L[q*]      = max over q in the family F of E_q [log p(x, z) - log q(z)]
    approximation gap           = log p(x) - L[q*]     (what the family F cannot express)
    amortization gap            = L[q*] - L[q_phi]     (what the encoder misses for this x)

so log p(x) - L[q_phi] = approximation gap + amortization gap, each >= 0 (up to Monte Carlo
error; the second when q_phi(.|x) is in F). q* is found by Adam on the ELBO (``samples`` K
reparameterized draws, ``steps`` S steps, learning rate ``lr`` decayed to 0 on a cosine, so
the last steps average out the gradient noise) with one set of parameters per point, the
loss summed over points so they do not interact, started from the encoder's output:

    guide      the guide's own family: the output of ``module.encoder`` on x (e.g. the
               diagonal's loc and scale, an IAF's base and context) becomes a free tensor per
               point ([B, ...], a positive output kept positive through its log); the guide
               itself is unchanged, so q_phi(.|x) is in F and the start is L[q_phi] exactly
    diagonal   N(m, diag s^2) over all latents (target.py's flat unconstrained u [B, n]),
               started at the mean and sd of guide draws
    gaussian   N(m, S S^T), S lower triangular [B, n, n], started at the guide draws' mean
               and covariance: the exact posterior family of a linear-Gaussian model

Both ELBOs at the end are estimated with ``eval_samples`` fresh draws per point (se =
sd / sqrt(K)). Shapes: x [N, D] -> every per-point number [N].
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Independent, MultivariateNormal, Normal
from tqdm.auto import tqdm

from pyrovae.runtime import memory
from pyrovae.config.fields import COUNT, POSITIVE, Rule, check_number
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.rng import seeded
from pyrovae.evaluation.ais import check_choice
from pyrovae.evaluation.target import LatentSpace, log_weight_traced, no_param_grads
from pyrovae.runtime.traces import eval_mode

FAMILIES = ("guide", "diagonal", "gaussian")
EVAL_SAMPLES = Rule(int, 2, note="the standard errors need at least 2 draws per point")


@dataclass(frozen=True)
class GapOptions:
    """Local optimisation settings (module docstring); checked when made, in one line."""

    steps: int = 500
    samples: int = 10
    lr: float = 0.01
    family: str = "guide"
    eval_samples: int = 1000

    def __post_init__(self):
        for name, rule in (("steps", COUNT), ("samples", COUNT), ("lr", POSITIVE),
                           ("eval_samples", EVAL_SAMPLES)):
            object.__setattr__(self, name, check_number(getattr(self, name), f"gap_{name}",
                                                        rule))
        check_choice(self.family, "gap_family", FAMILIES)

    def as_dict(self) -> dict:
        return dict(vars(self))


class FreeEncoder:
    """The ``guide`` family: ``module.encoder``'s output on x as free per-point tensors,
    put in place of the encoder's output by a forward hook while installed."""

    def __init__(self, module, x: torch.Tensor):
        enc = getattr(module, "encoder", None)
        if not isinstance(enc, torch.nn.Module):
            raise ConfigError(f"gap_family = 'guide' starts from the encoder's output, but "
                              f"{type(module).__name__} has no 'encoder' network; use "
                              f"gap_family = 'diagonal' or 'gaussian' (--gap-family)")
        try:
            with torch.no_grad():
                out = enc(x)
        except (NotImplementedError, TypeError, RuntimeError, ValueError):
            out = None  # e.g. a list of per-layer encoders, not one network of x
        self.is_tuple = isinstance(out, (tuple, list))
        leaves = list(out) if self.is_tuple else [out]
        if not all(torch.is_tensor(t) and t.dim() and t.shape[0] == x.shape[0] for t in leaves):
            raise ConfigError(f"gap_family = 'guide' needs {type(module).__name__}.encoder(x) "
                              f"to give tensors with one row per point; use gap_family = "
                              f"'diagonal' or 'gaussian' (--gap-family)")
        self.positive = [bool((t > 0).all()) for t in leaves]
        self.params = [(t.log() if pos else t).detach().clone().requires_grad_()
                       for t, pos in zip(leaves, self.positive)]
        self.enc, self.x, self.calls = enc, x, 0

    def output(self):
        vals = [p.exp() if pos else p for p, pos in zip(self.params, self.positive)]
        return tuple(vals) if self.is_tuple else vals[0]

    @contextlib.contextmanager
    def installed(self):
        def hook(_, inputs, _out):
            if inputs and inputs[0] is self.x:
                self.calls += 1
                return self.output()
            return None
        handle = self.enc.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def log_weight(self, module, k: int) -> torch.Tensor:
        with self.installed():
            lw = log_weight_traced(module, self.x, k)
        if not self.calls:
            raise ConfigError(f"gap_family = 'guide': {type(module).__name__}.guide never calls "
                              f"its encoder on x itself; use gap_family = 'diagonal' or "
                              f"'gaussian' (--gap-family)")
        return lw


class _LocalGaussian:
    """The ``diagonal`` / ``gaussian`` families over target.py's flat u [B, n]."""

    def __init__(self, module, x: torch.Tensor, full: bool, draws: int = 256):
        self.space, self.full = LatentSpace(module, x), full
        u = self.space.guide_draws(max(draws, 4 * self.space.size))       # [M, B, n]
        loc, centred = u.mean(0), u - u.mean(0)
        if full:
            cov = torch.einsum("mbi,mbj->bij", centred, centred) / (u.shape[0] - 1)
            eye = torch.eye(cov.shape[-1], dtype=u.dtype, device=u.device)
            tril = torch.linalg.cholesky(cov + 1e-6 * eye)
            self.params = [loc.clone().requires_grad_(),
                           tril.tril(-1).clone().requires_grad_(),
                           tril.diagonal(dim1=-2, dim2=-1).log().clone().requires_grad_()]
        else:
            self.params = [loc.clone().requires_grad_(),
                           (centred.std(0) + 1e-6).log().clone().requires_grad_()]

    def dist(self):
        if self.full:
            loc, low, log_diag = self.params
            return MultivariateNormal(loc, scale_tril=low.tril(-1) + torch.diag_embed(
                log_diag.exp()))
        loc, log_scale = self.params
        return Independent(Normal(loc, log_scale.exp()), 1)

    def log_weight(self, module, k: int) -> torch.Tensor:
        q = self.dist()
        u = q.rsample((k,))                                                # [K, B, n]
        values, ladj = self.space.unflatten(u)
        log_prior, log_lik = self.space.log_joint(values)
        return log_prior + log_lik + ladj - q.log_prob(u)


def _mean_se(log_w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    lw = log_w.double()
    return lw.mean(0).cpu().numpy(), (lw.std(0) / math.sqrt(lw.shape[0])).cpu().numpy()


def _estimate(fn, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and se over k draws of fn(draws) [draws, B], in chunks."""
    with torch.no_grad():
        return _mean_se(torch.cat([fn(min(chunk, k - d)) for d in range(0, k, chunk)]))


def local_elbos(module, x: torch.Tensor, options: GapOptions, memory_mb: int = 512,
                bar=None) -> dict:
    """Amortized and locally optimized ELBO of every row of x [B, D], each with its se."""
    budget = memory_mb * 2**20
    chunk = max(1, budget // max(memory.inference_bytes(module, x.shape[0]), 1))
    amortized = _estimate(lambda k: log_weight_traced(module, x, k), options.eval_samples,
                          chunk)
    local = (FreeEncoder(module, x) if options.family == "guide"
             else _LocalGaussian(module, x, full=options.family == "gaussian"))
    opt = torch.optim.Adam(local.params, lr=options.lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, options.steps)
    for _ in range(options.steps):
        opt.zero_grad()
        with torch.enable_grad():
            loss = -local.log_weight(module, options.samples).mean(0).sum()
            loss.backward()
        opt.step()
        decay.step()
        if bar is not None:
            bar.update(1)
    optimized = _estimate(lambda k: local.log_weight(module, k), options.eval_samples, chunk)
    return {"amortized": amortized, "local": optimized}


def inference_gaps(module, x: torch.Tensor, log_px, log_px_se=None,
                   options: GapOptions | None = None, batch_size: int = 100,
                   memory_mb: int = 512, seed: int = 0, progress: bool = False) -> dict:
    """The gaps of every row of x [N, D] given its log p(x) [N] (and that estimate's se):
    per-point arrays (``per_point``) and their means over points with standard errors."""
    options = options or GapOptions()
    batch_size = check_number(batch_size, "batch_size", COUNT)
    n, start = x.shape[0], time.perf_counter()
    # points per batch so that a step's forward and backward (3 x inference) fit memory_mb
    per_point = 3 * memory.inference_bytes(module, options.samples)
    batch = max(1, min(batch_size, memory_mb * 2**20 // max(per_point, 1)))
    cols = {k: [] for k in ("amortized_elbo", "amortized_elbo_se", "local_elbo",
                            "local_elbo_se")}
    with seeded(seed), eval_mode(module), no_param_grads(module), \
            tqdm(total=math.ceil(n / batch) * options.steps, disable=not progress,
                 desc=f"local ELBO, {options.family}", unit="step") as bar:
        for b0 in range(0, n, batch):
            r = local_elbos(module, x[b0:b0 + batch], options, memory_mb, bar)
            for name, (mean, se) in (("amortized_elbo", r["amortized"]),
                                     ("local_elbo", r["local"])):
                cols[name].append(mean)
                cols[name + "_se"].append(se)
    pp = {k: np.concatenate(v) for k, v in cols.items()}
    pp["log_px"] = np.asarray(log_px, dtype=np.float64)
    pp["approximation_gap"] = pp["log_px"] - pp["local_elbo"]
    pp["amortization_gap"] = pp["local_elbo"] - pp["amortized_elbo"]
    lp_se = np.zeros(n) if log_px_se is None else np.nan_to_num(np.asarray(log_px_se))
    pp["approximation_gap_se"] = np.sqrt(lp_se ** 2 + pp["local_elbo_se"] ** 2)
    pp["amortization_gap_se"] = np.sqrt(pp["local_elbo_se"] ** 2 + pp["amortized_elbo_se"] ** 2)
    summary = {"points": n, **options.as_dict()}
    for key in ("log_px", "amortized_elbo", "local_elbo", "approximation_gap",
                "amortization_gap"):
        summary[key] = float(pp[key].mean())
        summary[key + "_se"] = float(pp[key].std(ddof=1) / math.sqrt(n)) if n > 1 else None
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return {"summary": summary, "per_point": pp}
