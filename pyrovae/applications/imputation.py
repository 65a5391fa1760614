"""Imputation: fill in the hidden pixels of x from the posterior given the visible ones.

The conditioning is done on the model, the probabilistic-programming way: under
:func:`observe_only` the likelihood site ``x`` observes only the visible pixels,

    log p(x_obs | z) = sum_d m_d log p(x_d | z),      m [B, D] the observation mask (1 = seen)

(a per-pixel ``MaskedDistribution`` inside the likelihood's event; hidden values never enter,
not even as NaN). The guide q(z | x~) sees the masked image x~ = m x + (1 - m) fill. Then:

  1. x~_0 = the visible pixels, the mean training image elsewhere (also the baseline)
  2. pseudo-Gibbs (Rezende et al. 2014), s = 1..S-1 (S - 1 = ``gibbs_steps``):
         z_s ~ q(z | x~_{s-1}),  x~_s = E[x | z_s] on the hidden pixels
  3. importance sampling with the chain's guides as one mixture proposal
         r(z) = (1/S) sum_s q(z | x~_s),   z_k ~ r (K/S draws from each),
         log w_k = log p(x_obs | z_k) + log p(z_k) - log r(z_k)      (masked model trace)
     imputation = sum_k w~_k E[x_hidden | z_k]   (self-normalised, -> E[x_hidden | x_obs]
     under the model as K grows), and one importance-resampled draw z_j, j ~ Cat(w~).
     Any one q(z | x~_s) alone is a narrow proposal (effective sample size ~3 of 100 on
     MNIST); the mixture over the chain covers more of the posterior.

Errors are squared errors per hidden pixel against the data the model sees and, for
binarized data, against the grey levels the binary pixels were drawn from (which removes the
Bernoulli noise no imputation can predict).
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import distributions as dist
from pyro import poutine
from pyro.poutine.messenger import Messenger
from tqdm.auto import tqdm

from pyrovae.runtime import memory
from pyrovae.config.fields import COUNT, SEED, SIZE, check_number
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.traces import eval_mode
from pyrovae.runtime.files import write_json
from pyrovae.runtime.interface import CapabilityError, refuse_condition, require
from pyrovae.reports.applications import save_labelled_grid
from pyrovae.runtime.rng import seeded
from pyrovae.applications.runs import as_run, grey_levels, output_dir, read_data

MASKS = ("center", "left-half", "right-half", "top-half", "bottom-half", "random:P")
METHODS = ("baseline", "one_pass", "gibbs", "importance", "resampled")


def mask_pixels(fn, visible: torch.Tensor):
    """The likelihood ``fn`` (event [D]) with only the pixels where ``visible`` [.., D] is
    True observed: Independent(base, 1) -> Independent(base.mask(visible), 1)."""
    if not isinstance(fn, dist.Independent) or fn.reinterpreted_batch_ndims != 1:
        raise TypeError(f"expected a likelihood with one event dimension, got {fn}")
    return fn.base_dist.mask(visible).to_event(1)


class ObserveVisible(Messenger):
    """Effect handler: the sample site ``site`` observes only the ``visible`` pixels."""

    def __init__(self, visible: torch.Tensor, site: str = "x"):
        super().__init__()
        self.visible, self.site = visible, site

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == self.site:
            msg["fn"] = mask_pixels(msg["fn"], self.visible)


def observe_only(visible: torch.Tensor, site: str = "x") -> ObserveVisible:
    """``with observe_only(mask): vae.model(x)`` -- the model conditioned on x's visible
    pixels only (mask [B, D] bool, True = observed)."""
    return ObserveVisible(visible.bool(), site)


class MaskedVAE:
    """The VAE's guide and its model under :func:`observe_only` (for ``paired_traces``)."""

    def __init__(self, vae, visible: torch.Tensor):
        self.vae, self.visible = vae, visible

    def guide(self, x):
        return self.vae.guide(x)

    def model(self, x):
        with observe_only(self.visible):
            return self.vae.model(x)


def make_mask(spec: str, n: int, shape, seed: int = 0) -> torch.Tensor:
    """Observation masks [n, D] (True = visible) for images of ``shape`` (C, H, W)."""
    shape = tuple(shape)
    if spec.startswith("random:"):
        try:
            p = float(spec.split(":", 1)[1])
        except ValueError:
            p = -1.0
        if not 0 < p < 1:
            raise ConfigError(f"mask '{spec}': random:P needs a hidden fraction 0 < P < 1, e.g. "
                              f"random:0.5")
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(n, int(torch.tensor(shape).prod()), generator=gen) >= p
    if spec not in MASKS:
        raise ConfigError(f"mask '{spec}' is not one of: {', '.join(MASKS)}")
    if len(shape) != 3:
        raise DataError(f"mask '{spec}' needs images (C, H, W), but the data are vectors of "
                        f"shape {shape}; use random:P")
    c, h, w = shape
    hidden = torch.zeros(c, h, w, dtype=torch.bool)
    if spec == "center":
        hidden[:, h // 4:h - h // 4, w // 4:w - w // 4] = True
    elif spec == "left-half":
        hidden[:, :, :w // 2] = True
    elif spec == "right-half":
        hidden[:, :, w // 2:] = True
    elif spec == "top-half":
        hidden[:, :h // 2] = True
    else:
        hidden[:, h // 2:] = True
    return (~hidden).reshape(1, -1).expand(n, -1).clone()


@torch.no_grad()
def impute_missing(vae, x: torch.Tensor, visible: torch.Tensor, fill: torch.Tensor,
                   gibbs_steps: int = 9, num_samples: int = 200) -> dict:
    """Imputations of the hidden pixels of x [B, D] (``visible`` [B, D] bool), each [B, D]
    with the visible pixels kept: ``one_pass`` (E[x | z = mu(x~_0)]), ``gibbs`` (the chain
    average of E[x | z_t]), ``importance`` and ``resampled`` (see the module docstring), and
    ``ess`` [B] (effective sample size 1 / sum_k w~_k^2 of the importance weights)."""
    keep = lambda guess: torch.where(visible, x, guess)  # noqa: E731
    current = keep(fill.expand_as(x))
    result = {"one_pass": keep(vae.reconstruct(current))}
    proposals, chain = [], []
    for step in range(gibbs_steps + 1):
        loc, scale = vae.encode(current)                              # q(z | x~_s)
        proposals.append((loc, scale))
        if step < gibbs_steps:
            current = keep(vae.decode(loc + scale * torch.randn_like(loc)))
            chain.append(current)
    result["gibbs"] = torch.stack(chain).mean(0) if chain else result["one_pass"]
    z, log_q = _mixture_draws(proposals, num_samples)                 # [K, B, L], [K, B]
    with pyro.plate("particles", z.shape[0], dim=-2), pyro.validation_enabled(False):
        model = poutine.trace(poutine.condition(MaskedVAE(vae, visible).model,
                                                data={"z": z})).get_trace(current)
    obs, prior = model.nodes["x"], model.nodes["z"]
    log_w = obs["fn"].log_prob(obs["value"]) + prior["fn"].log_prob(z) - log_q
    w = torch.softmax(log_w.double(), dim=0).to(x.dtype)              # [K, B]
    means = vae.decode(z)                                             # [K, B, D]
    result["importance"] = keep((w[..., None] * means).sum(0))
    pick = torch.multinomial(w.T, 1).squeeze(1)                       # [B]
    result["resampled"] = keep(means[pick, torch.arange(x.shape[0], device=x.device)])
    result["ess"] = 1.0 / (w ** 2).sum(0)
    return result


def _check_sites(vae, x1: torch.Tensor) -> None:
    """Refuse a model whose sites are not the VAE's: one latent 'z' and one observed 'x'."""
    from pyrovae.runtime.traces import point_traces

    t = point_traces(vae, x1, enumerate="none")
    if t.observed != ["x"] or t.sampled != ["z"] or t.prior_only:
        raise CapabilityError(f"impute conditions a model with one latent site 'z' and one "
                              f"observed site 'x'; {type(vae).__name__} has latent "
                              f"{t.sampled + t.prior_only} and observed {t.observed}")


def _mixture_draws(proposals, num_samples: int):
    """K = num_samples draws from (1/S) sum_s q(z | x~_s), the same number from each of the
    S proposals (stratified), and their mixture log-density: ([K, B, L], [K, B])."""
    loc = torch.stack([p[0] for p in proposals])                      # [S, B, L]
    scale = torch.stack([p[1] for p in proposals])
    s = loc.shape[0]
    per = max(1, num_samples // s)
    q = dist.Normal(loc, scale).to_event(1)                           # batch [S, B]
    z = q.sample((per,)).reshape(per * s, *loc.shape[1:])             # [K, B, L]
    log_each = q.log_prob(z[:, None])                                 # [K, S, B]
    return z, torch.logsumexp(log_each, dim=1) - math.log(s)


def check_imputation_memory(vae, gibbs_steps: int, num_samples: int, batch: int) -> None:
    """Refuse a batch whose draws cannot fit in memory: the S = gibbs_steps + 1 proposals
    [S, B, L] (twice), and K' = max(1, K // S) * S draws decoded [K', B, D] with their mixture
    densities [K', S, B]."""
    s = gibbs_steps + 1
    k = max(1, num_samples // s) * s
    latent = 2 * max(int(getattr(getattr(vae, "config", None), "latent_dim", 1) or 1), 1)
    extra = memory.FLOAT * (k * s * batch + 2 * s * batch * latent)
    memory.check_points(vae, 2 * k * batch, f"imputing with num_samples = {num_samples} "
                        f"(--samples) and gibbs_steps = {gibbs_steps}",
                        "lower --samples (num_samples) or --gibbs-steps", extra_bytes=extra)


def impute(run, out=None, mask: str = "left-half", n: int = 16, eval_n: int = 0,
           gibbs_steps: int = 9, num_samples: int = 200, seed: int = 0, data: str = "test",
           batch_size: int = 100, progress: bool = False) -> dict:
    """Impute the hidden pixels of the first ``eval_n`` (0 = all) examples of ``data``.

    Writes impute.png (first n: original, masked, imputed, one resampled draw) and
    impute.json (squared error per hidden pixel of each method and of the mean-image
    baseline). Returns the numbers."""
    n, eval_n = check_number(n, "n", COUNT), check_number(eval_n, "eval_n", SIZE)
    gibbs_steps = check_number(gibbs_steps, "gibbs_steps", SIZE)
    num_samples = check_number(num_samples, "num_samples", COUNT)
    seed, batch_size = check_number(seed, "seed", SEED), check_number(batch_size, "batch_size",
                                                                      COUNT)
    run = as_run(run)
    vae = run.vae
    require(vae, "encoder", "decoder", command="impute")
    refuse_condition(vae, "impute", "impute one from the class the classifier predicts with "
                     "the Python API (decode(z, y=...)), or use a VAE run")
    folder = output_dir(run, out)
    x, _, dataset, record = read_data(run, data)
    _check_sites(vae, x[:1])
    grey = grey_levels(dataset, data)
    x = x[:eval_n] if eval_n else x
    check_imputation_memory(vae, gibbs_steps, num_samples, min(batch_size, len(x)))
    grey = None if grey is None else grey[:len(x)].to(x.device)
    visible = make_mask(mask, len(x), vae.input_shape, seed).to(x.device)
    if visible.all() or not visible.any(dim=1).all():
        raise DataError(f"mask '{mask}' hides nothing or everything of some images")
    fill = dataset.train_x.mean(0).to(x.device)                       # mean image [D]
    sq = {m: 0.0 for m in METHODS}
    sq_grey = {m: 0.0 for m in METHODS}
    ess, shown = [], None
    with seeded(seed), eval_mode(vae):
        for start in tqdm(range(0, len(x), batch_size), disable=not progress, desc="impute"):
            xb, vb = x[start:start + batch_size], visible[start:start + batch_size]
            got = impute_missing(vae, xb, vb, fill, gibbs_steps, num_samples)
            got["baseline"] = torch.where(vb, xb, fill.expand_as(xb))
            for m in METHODS:
                sq[m] += float(((got[m] - xb) ** 2)[~vb].double().sum())
                if grey is not None:
                    gb = grey[start:start + batch_size]
                    sq_grey[m] += float(((got[m] - gb) ** 2)[~vb].double().sum())
            ess.append(got["ess"])
            if shown is None:
                shown = (xb, vb, got)
    hidden = int((~visible).sum())
    mse = {m: sq[m] / hidden for m in METHODS}
    xs, vs, got = shown
    k = min(n, len(xs))
    masked = torch.where(vs[:k], xs[:k], torch.full_like(xs[:k], 0.5))
    pictures = torch.cat([xs[:k], masked, got["importance"][:k], got["resampled"][:k]])
    save_labelled_grid(pictures, vae.input_shape, k,
                       ["original", "masked", "imputed", "resampled"], folder / "impute.png",
                       f"mask {mask}: hidden-pixel MSE {mse['importance']:.4f} "
                       f"(mean-image baseline {mse['baseline']:.4f})")
    ess = torch.cat(ess)
    result = {**record, "mask": mask, "n": len(x), "hidden_fraction": hidden / x.numel(),
              "gibbs_steps": gibbs_steps, "num_samples": num_samples, "seed": seed,
              "mse_hidden": mse, "mse_hidden_baseline": mse["baseline"],
              "mse_hidden_imputed": mse["importance"],
              "improvement": 1 - mse["importance"] / mse["baseline"],
              "mse_hidden_grey": None if grey is None else
              {m: sq_grey[m] / hidden for m in METHODS},
              "ess_mean": float(ess.mean()), "png": str(folder / "impute.png")}
    write_json(folder / "impute.json", result)
    return result


__all__ = ["observe_only", "mask_pixels", "make_mask", "impute_missing", "impute",
           "MaskedVAE", "ObserveVisible"]
