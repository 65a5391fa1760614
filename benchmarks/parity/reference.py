"""An independent plain-PyTorch VAE / IWAE with one stochastic layer (Burda et al. 2015), to
check pyrovae's ``burda-*-1`` recipes against at an equal budget (benchmarks/parity/run.py).

It shares nothing with pyrovae but the data loading (``load_data``): no Pyro, no pyrovae
model, objective, optimizer, schedule, averaging or evaluator. The math, for x [B, D] in
{0, 1}^D and z [L]::

    q(z|x)  = N(z; m(x), diag s(x)^2),  (m, r) = enc(x),  s = softplus(r) + 1e-4
    p(z)    = N(0, I)
    p(x|z)  = prod_d Bernoulli(x_d; sigmoid(l_d)),  l = dec(z)
    enc: D -> H1 -> H2 -> 2L,  dec: L -> H2 -> H1 -> D,  tanh between layers (not after
         the last), Glorot-uniform weights W ~ U(+-sqrt(6 / (fan_in + fan_out))), zero biases

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),  z_k = m + s eps_k, eps_k ~ N(0, I)
    ELBO_k  = (1/k) sum_k log w_k              (bound = "elbo", k draws averaged)
    IWAE_k  = log (1/k) sum_k exp(log w_k)     (bound = "iwae")
    loss    = -N mean_b bound_b                (the data set's bound from a minibatch of B)

Training: Adam(lr, betas (0.9, 0.999), eps 1e-8); the rate at step t = 0..T-1 of
T = epochs * (N // B) steps is lr_min + (lr - lr_min)(1 + cos(pi t / T)) / 2 (``cosine``) or
lr (``constant``); the training images are binarized afresh each epoch (x ~ Bernoulli(grey
level)) and shuffled, the last partial batch dropped; with ``ema`` > 0 the kept weights are
the average theta_bar_t = d_t theta_bar_{t-1} + (1 - d_t) theta_t, d_t = min(ema,
(1 + t) / (10 + t)), theta_bar_0 the initial weights. The per-epoch test ELBO (one draw, the
closed-form KL) and the final model are those of the kept weights.

Evaluation (:func:`log_px`): log p(x) ~= logsumexp_k log w_k - log K, K draws from q(z|x).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.data import load_dataset  # the data: the one thing shared with pyrovae

MIN_STD = 1e-4  # floor on q's standard deviation, as the recipe's encoder
LOG_2PI = math.log(2 * math.pi)


def load_data(source="mnist", **options):
    """The data set both sides train on (``source``: a data set name with pyrovae's
    ``load_dataset`` keywords, or a ``DataConfig``): grey levels ``train_x`` [N, D] and the
    fixed binarized test set ``test_data()`` [M, D]. Only ``train_x`` and ``test_data()`` are
    read here; the training binarization is this module's own."""
    return load_dataset(source, **options)


@dataclass(frozen=True)
class Settings:
    """What the reference trains: sizes, bound, particles and the optimisation."""

    hidden: tuple[int, ...] = (200, 200)
    latent: int = 50
    bound: str = "elbo"        # "elbo" or "iwae"
    k: int = 1                 # draws per point in the training bound
    batch_size: int = 32
    lr: float = 1e-3
    lr_min: float = 1e-4
    schedule: str = "cosine"   # "cosine" or "constant"
    ema: float = 0.9995        # 0: keep the last weights
    eval_batch: int = 1000

    def __post_init__(self):
        if self.bound not in ("elbo", "iwae"):
            raise ValueError(f"bound = {self.bound!r}; choose 'elbo' or 'iwae'")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule = {self.schedule!r}; choose 'cosine' or 'constant'")
        if self.k < 1 or not 0.0 <= self.ema < 1.0:
            raise ValueError(f"k = {self.k} must be >= 1 and ema = {self.ema} in [0, 1)")


def _mlp(sizes) -> nn.Sequential:
    """Linear layers between consecutive sizes, tanh between them, Glorot-uniform weights and
    zero biases."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        bound = math.sqrt(6.0 / (n_in + n_out))
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound)
            linear.bias.zero_()
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class OneLayerVAE(nn.Module):
    """enc: D -> hidden -> 2L (m, r), dec: L -> reversed(hidden) -> D (logits)."""

    def __init__(self, dim: int, hidden=(200, 200), latent: int = 50):
        super().__init__()
        self.dim, self.latent = dim, latent
        self.encoder = _mlp([dim, *hidden, 2 * latent])
        self.decoder = _mlp([latent, *reversed(tuple(hidden)), dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, D] -> m, s [B, L]."""
        m, r = self.encoder(x).chunk(2, dim=-1)
        return m, F.softplus(r) + MIN_STD

    def log_weights(self, x: torch.Tensor, k: int, generator=None) -> torch.Tensor:
        """log w [k, B] of k reparameterised draws z = m + s eps per row of x [B, D]."""
        m, s = self.encode(x)
        eps = torch.randn((k, *m.shape), generator=generator, dtype=m.dtype)
        z = m + s * eps                                                       # [k, B, L]
        log_q = (-0.5 * eps.pow(2) - s.log() - 0.5 * LOG_2PI).sum(-1)          # [k, B]
        log_pz = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)
        logits = self.decoder(z)                                              # [k, B, D]
        log_px_z = (x * logits - F.softplus(logits)).sum(-1)
        return log_px_z + log_pz - log_q

    def elbo_analytic(self, x: torch.Tensor, generator=None) -> tuple[torch.Tensor, ...]:
        """(ELBO, log p(x|z), KL) [B] each, one draw and KL(q || N(0, I)) in closed form:
        KL = sum_l (m^2 + s^2 - 1) / 2 - log s."""
        m, s = self.encode(x)
        z = m + s * torch.randn(m.shape, generator=generator, dtype=m.dtype)
        logits = self.decoder(z)
        rec = (x * logits - F.softplus(logits)).sum(-1)
        kl = (0.5 * (m.pow(2) + s.pow(2) - 1.0) - s.log()).sum(-1)
        return rec - kl, rec, kl


def elbo(log_w: torch.Tensor) -> torch.Tensor:
    """The k-draw ELBO estimate [B] from log w [k, B]: the mean over draws."""
    return log_w.mean(0)


def iwae(log_w: torch.Tensor) -> torch.Tensor:
    """The IWAE bound [B] from log w [k, B]: logsumexp_k log w - log k."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


BOUNDS = {"elbo": elbo, "iwae": iwae}


def cosine_lr(lr: float, lr_min: float, step: int, total: int) -> float:
    """lr_min + (lr - lr_min)(1 + cos(pi t / T)) / 2 at step t of T."""
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * min(step / total, 1.0)))


@torch.no_grad()
def test_elbo(model: OneLayerVAE, x: torch.Tensor, batch: int = 1000, seed: int = 0) -> float:
    """Mean one-draw ELBO (closed-form KL) per point over x [M, D], in nats."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(float(model.elbo_analytic(x[i:i + batch], gen)[0].sum())
                for i in range(0, len(x), batch))
    return total / len(x)


@torch.no_grad()
def log_px(model: OneLayerVAE, x: torch.Tensor, samples: int, seed: int = 0,
           rows: int = 20_000) -> torch.Tensor:
    """Importance-sampled log p(x) [M] of x [M, D] with K = ``samples`` draws from q(z|x):
    logsumexp_k log w_k - log K, the draws taken in chunks of at most ``rows`` (points x
    draws) at a time."""
    gen = torch.Generator().manual_seed(seed)
    points = max(1, rows // samples)
    out = []
    for i in range(0, len(x), points):
        xb = x[i:i + points]
        per_chunk = max(1, rows // len(xb))
        chunks = [model.log_weights(xb, min(per_chunk, samples - j), gen)
                  for j in range(0, samples, per_chunk)]
        out.append(torch.logsumexp(torch.cat(chunks, 0).double(), 0) - math.log(samples))
    return torch.cat(out)


def train(data, settings: Settings, epochs: int, seed: int = 0, progress=None):
    """Train on ``data`` (``train_x`` grey levels [N, D], ``test_data()`` [M, D]) for
    ``epochs``; returns (the kept model, history: one dict per epoch with ``epoch``, ``step``,
    ``train_bound``, ``test_elbo``, ``seconds``). ``progress(str)`` is told each epoch."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the initial weights
    grey, x_test = data.train_x, data.test_data()
    n, dim = grey.shape
    model = OneLayerVAE(dim, settings.hidden, settings.latent)
    kept = copy.deepcopy(model) if settings.ema > 0 else model
    live, avg = list(model.parameters()), list(kept.parameters())
    opt = torch.optim.Adam(live, lr=settings.lr, betas=(0.9, 0.999), eps=1e-8)
    bsz, bound = settings.batch_size, BOUNDS[settings.bound]
    steps = n // bsz
    if steps == 0:
        raise ValueError(f"batch_size = {bsz} is larger than the {n} training points")
    total, step, history = epochs * steps, 0, []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        x_epoch = torch.bernoulli(grey, generator=gen)   # dynamic binarization
        order = torch.randperm(n, generator=gen)
        bound_sum = 0.0
        for i in range(steps):
            if settings.schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(settings.lr, settings.lr_min, step, total)
            xb = x_epoch[order[i * bsz:(i + 1) * bsz]]
            value = bound(model.log_weights(xb, settings.k, gen))
            loss = -n * value.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if settings.ema > 0:
                with torch.no_grad():
                    d = min(settings.ema, (1.0 + step) / (10.0 + step))
                    for a, p in zip(avg, live):
                        a.mul_(d).add_(p.detach(), alpha=1.0 - d)
            bound_sum += float(value.detach().sum())
        seconds = time.perf_counter() - start
        row = {"epoch": epoch, "step": step, "train_bound": bound_sum / (steps * bsz),
               "test_elbo": test_elbo(kept, x_test, settings.eval_batch, seed),
               "seconds": seconds}
        history.append(row)
        if progress is not None:
            progress(f"reference epoch {epoch}/{epochs}: train bound {row['train_bound']:.2f}"
                     f", test ELBO {row['test_elbo']:.2f}, {seconds:.1f} s")
    return kept, history
