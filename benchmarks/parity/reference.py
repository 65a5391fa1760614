"""An independent plain-PyTorch VAE / IWAE with one or two stochastic layers (Burda et al.
2015), to check pyrovae's ``burda-*`` recipes against at an equal budget
(benchmarks/parity/run.py).

It shares nothing with pyrovae but the data loading (``load_data``): no Pyro, no pyrovae
model, objective, optimizer, schedule, averaging or evaluator. The math, for x [B, D] in
{0, 1}^D and L stochastic layers z_1 (next to x) .. z_L of sizes n_1 .. n_L (z_0 = x)::

    q(z_l | z_l-1) = N(m_l, diag s_l^2),  (m_l, r_l) = enc_l(z_l-1),  s_l = softplus(r_l) + 1e-4
    p(z_L)         = N(0, I)
    p(z_l | z_l+1) = N(mu_l, diag t_l^2), (mu_l, u_l) = dec_l(z_l+1), t_l = softplus(u_l) + 1e-4
    p(x | z_1)     = prod_d Bernoulli(x_d; sigmoid(l_d)),  l = dec_0(z_1)
    enc_l: n_l-1 -> hidden_l -> 2 n_l,  dec_l: n_l+1 -> reversed(hidden_l+1) -> 2 n_l (dec_0:
         n_1 -> reversed(hidden_1) -> D), tanh between layers (not after the last),
         Glorot-uniform weights W ~ U(+-sqrt(6 / (fan_in + fan_out))), zero biases

    KL_l,k  = log q(z_l,k | z_l-1,k) - log p(z_l,k | z_l+1,k)   (p(z_L | .) = N(0, I))
    log w_k = log p(x|z_1,k) - beta sum_l KL_l,k,   z_l,k = m_l + s_l eps  drawn bottom-up
    ELBO_k  = (1/k) sum_k log w_k              (bound = "elbo", k draws averaged)
    IWAE_k  = log (1/k) sum_k exp(log w_k)     (bound = "iwae")
    loss    = -N mean_b bound_b                (the data set's bound from a minibatch of B)

beta is 1, or with ``warmup`` = W > 0 steps the linear warm-up beta_t = min(1, t / W) at step
t = 0, 1, ... (beta_0 = 0 taken as 1e-20). Training: Adam(lr, betas (0.9, 0.999), eps 1e-8);
the rate at step t = 0..T-1 of T = epochs * (N // B) steps is lr_min + (lr - lr_min)(1 +
cos(pi t / T)) / 2 (``cosine``) or lr (``constant``); the training images are binarized afresh
each epoch (x ~ Bernoulli(grey level)) and shuffled, the last partial batch dropped; with
``ema`` > 0 the kept weights are the average theta_bar_t = d_t theta_bar_{t-1} + (1 - d_t)
theta_t, d_t = min(ema, (1 + t) / (10 + t)), theta_bar_0 the initial weights. The per-epoch
test ELBO (one draw; for one layer with the closed-form KL) and its per-layer KL terms, and
the final model, are those of the kept weights.

Evaluation (:func:`log_px`): log p(x) ~= logsumexp_k log w_k - log K (beta = 1), K draws
from q(z|x).
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

MIN_STD = 1e-4  # floor on every standard deviation, as the recipe's networks
MIN_BETA = 1e-20  # a warm-up's beta_0 = 0, taken as this (no effect at float32 resolution)
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

    hidden: tuple[tuple[int, ...], ...] = ((200, 200),)   # one tuple per stochastic layer
    stochastic: tuple[int, ...] = (50,)                     # n_1 (next to x) .. n_L
    bound: str = "elbo"        # "elbo" or "iwae"
    k: int = 1                 # draws per point in the training bound
    batch_size: int = 32
    lr: float = 1e-3
    lr_min: float = 1e-4
    schedule: str = "cosine"   # "cosine" or "constant"
    ema: float = 0.9995        # 0: keep the last weights
    eval_batch: int = 1000
    warmup: int = 0            # steps of the linear KL warm-up (0: beta = 1 throughout)

    def __post_init__(self):
        if self.bound not in ("elbo", "iwae"):
            raise ValueError(f"bound = {self.bound!r}; choose 'elbo' or 'iwae'")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule = {self.schedule!r}; choose 'cosine' or 'constant'")
        if self.k < 1 or not 0.0 <= self.ema < 1.0 or self.warmup < 0:
            raise ValueError(f"k = {self.k} must be >= 1, ema = {self.ema} in [0, 1) and "
                             f"warmup = {self.warmup} >= 0")
        if len(self.hidden) != len(self.stochastic) or not 1 <= len(self.stochastic) <= 2:
            raise ValueError(f"one or two stochastic layers, with one hidden tuple each: got "
                             f"stochastic = {self.stochastic}, hidden = {self.hidden}")

    def beta(self, step: int) -> float:
        """The KL weight at training step ``step`` (0-based)."""
        if not self.warmup:
            return 1.0
        return max(min(1.0, step / self.warmup), MIN_BETA)


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


def _gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, softplus(raw) + 1e-4) from a network's output [..., 2n]."""
    loc, raw = out.chunk(2, dim=-1)
    return loc, F.softplus(raw) + MIN_STD


def _log_normal(z, loc, scale) -> torch.Tensor:
    """log N(z; loc, diag scale^2) summed over the last dimension."""
    return (-0.5 * ((z - loc) / scale).pow(2) - scale.log() - 0.5 * LOG_2PI).sum(-1)


class BurdaVAE(nn.Module):
    """``encoders[l]``: q(z_l+1 | z_l) (z_0 = x); ``decoders[0]``: the logits of p(x | z_1),
    ``decoders[l]`` (l >= 1): p(z_l | z_l+1). Sizes as the module docstring."""

    def __init__(self, dim: int, hidden=((200, 200),), stochastic=(50,)):
        super().__init__()
        hidden, stochastic = tuple(map(tuple, hidden)), tuple(stochastic)
        self.dim, self.stochastic = dim, stochastic
        sizes = (dim, *stochastic)
        outs = (dim, *(2 * n for n in stochastic[:-1]))
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for l in range(len(stochastic)):  # encoder then decoder of each layer, bottom up
            self.encoders.append(_mlp([sizes[l], *hidden[l], 2 * sizes[l + 1]]))
            self.decoders.append(_mlp([sizes[l + 1], *reversed(hidden[l]), outs[l]]))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """loc and scale of q(z_1 | x): x [B, D] -> [B, n_1] each."""
        return _gaussian(self.encoders[0](x))

    def terms(self, x: torch.Tensor, k: int, generator=None):
        """k draws z_1..z_L ~ q(.|x) per row of x [B, D] (reparameterised, bottom-up) and
        their log-densities: (log p(x|z_1) [k, B], [log p(z_l | z_l+1)], [log q(z_l | z_l-1)],
        l = 1..L, each [k, B])."""
        h, zs, log_q = x, [], []
        for l, enc in enumerate(self.encoders):
            loc, scale = _gaussian(enc(h))
            shape = (k, *loc.shape) if l == 0 else loc.shape
            eps = torch.randn(shape, generator=generator, dtype=loc.dtype)
            h = loc + scale * eps                                         # [k, B, n_l]
            log_q.append((-0.5 * eps.pow(2) - scale.log() - 0.5 * LOG_2PI).sum(-1))
            zs.append(h)
        log_p = [None] * len(zs)
        log_p[-1] = (-0.5 * zs[-1].pow(2) - 0.5 * LOG_2PI).sum(-1)        # p(z_L) = N(0, I)
        for l in range(len(zs) - 1):
            log_p[l] = _log_normal(zs[l], *_gaussian(self.decoders[l + 1](zs[l + 1])))
        logits = self.decoders[0](zs[0])                                   # [k, B, D]
        log_px_z = (x * logits - F.softplus(logits)).sum(-1)
        return log_px_z, log_p, log_q

    def log_weights(self, x: torch.Tensor, k: int, generator=None,
                    beta: float = 1.0) -> torch.Tensor:
        """log w [k, B] = log p(x|z_1) + beta (log p(z) - log q(z|x)) of k draws per row of
        x [B, D]."""
        log_px_z, log_p, log_q = self.terms(x, k, generator)
        if beta == 1.0:
            return log_px_z + sum(log_p) - sum(log_q)
        return log_px_z + beta * (sum(log_p) - sum(log_q))

    def elbo_terms(self, x: torch.Tensor, generator=None) -> tuple[torch.Tensor, ...]:
        """(ELBO, log p(x|z), KL_1, .., KL_L) [B] each from one draw; with one layer KL_1 is
        KL(q || N(0, I)) in closed form, sum_l (m^2 + s^2 - 1) / 2 - log s."""
        if len(self.stochastic) == 1:
            m, s = self.encode(x)
            z = m + s * torch.randn(m.shape, generator=generator, dtype=m.dtype)
            logits = self.decoders[0](z)
            rec = (x * logits - F.softplus(logits)).sum(-1)
            kls = [(0.5 * (m.pow(2) + s.pow(2) - 1.0) - s.log()).sum(-1)]
        else:
            rec, log_p, log_q = self.terms(x, 1, generator)
            rec, kls = rec[0], [(q - p)[0] for p, q in zip(log_p, log_q)]
        return (rec - sum(kls), rec, *kls)


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
def test_elbo(model: BurdaVAE, x: torch.Tensor, batch: int = 1000, seed: int = 0) -> dict:
    """Mean one-draw ELBO and KL of each layer (``kl_z1``, ..) per point over x [M, D]."""
    gen = torch.Generator().manual_seed(seed)
    sums = None
    for i in range(0, len(x), batch):
        parts = [float(t.sum()) for t in model.elbo_terms(x[i:i + batch], gen)]
        sums = parts if sums is None else [a + b for a, b in zip(sums, parts)]
    names = ["test_elbo", "test_log_px_z", *(f"test_kl_z{l + 1}"
                                             for l in range(len(model.stochastic)))]
    return {name: total / len(x) for name, total in zip(names, sums)}


@torch.no_grad()
def log_px(model: BurdaVAE, x: torch.Tensor, samples: int, seed: int = 0,
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
    model = BurdaVAE(dim, settings.hidden, settings.stochastic)
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
            value = bound(model.log_weights(xb, settings.k, gen, settings.beta(step)))
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
               **test_elbo(kept, x_test, settings.eval_batch, seed), "seconds": seconds}
        history.append(row)
        if progress is not None:
            progress(f"reference epoch {epoch}/{epochs}: train bound {row['train_bound']:.2f}"
                     f", test ELBO {row['test_elbo']:.2f}, {seconds:.1f} s")
    return kept, history
