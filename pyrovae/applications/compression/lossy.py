"""Lossy compression with a trained VAE: quantise the posterior mean, entropy-code it under
the prior discretised to the same grid, decode the grid point.

For data x [N, D] and a step S > 0, with a diagonal Gaussian prior p(z) = N(m, diag(s^2))
(the "normal" prior: m = 0, s = 1; "learnable-normal": learned m, s)::

    encode:  mu = E_q[z | x]                       [N, L]  (the encoder's mean)
             k  = round(mu / S)                    [N, L]  int32 symbols
             P(k_l) = Phi((k_l + 1/2) S; m_l, s_l) - Phi((k_l - 1/2) S; m_l, s_l)
                    = mass of N(m_l / S, (s_l / S)^2) on [k_l - 1/2, k_l + 1/2]
             words = ANS(k under P)                        uint32 [W]
    decode:  k = ANS^-1(words),  z_hat = k S,  x_hat = E[x | z_hat]   [N, D]

P is constriction's ``QuantizedGaussian`` on the integer grid with mean m / S and std s / S,
restricted to the symbol range [-R, R], R = ceil((max_l |m_l| + CLIP * max_l s_l) / S) with
CLIP = 16 prior standard deviations. The coder is "leaky": every symbol of the range keeps a
probability of at least 2^-24, so the range costs at most (2R + 1) 2^-24 of the mass (for S =
0.01: 0.02 %) and any k in it is coded; |k| > R (a latent 16 sd from the prior's mean) is
refused in one line rather than escaped. The rate is the coded size, ~ sum -log2 P(k) bits
plus the coder's final state (<= 64 bits for the whole stream); R must stay below 2^23
(so S >= ~2e-6 for the normal prior).

The decoder (the model's weights) is shared by sender and receiver and is not counted; the
step S, the count N and L are side information a container would carry (a few bytes).

Batched: the encoder runs on ``batch_size`` rows at a time, and the stream is written batch by
batch in reverse (ANS is a stack), so decoding reads the batches forward and decodes each one
before reading the next: memory is O(batch_size * D) beside the int32 symbols [N, L] and the
output. Both directions run in eval mode under no_grad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Independent, Normal

from pyrovae.applications.compression.bbans import constriction
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.interface import require
from pyrovae.runtime.traces import eval_mode

COMMAND = "lossy compression"
CLIP = 16.0          # the symbol range: prior mean +- CLIP prior standard deviations
MAX_RANGE = 2 ** 23  # constriction's 24-bit probabilities: fewer symbols than 2^24


@dataclass
class LossyStats:
    """What :func:`encode_latents` coded: N points of D pixels, L latents each."""

    count: int
    input_dim: int
    latent_dim: int
    step: float
    symbol_range: int          # R: symbols in [-R, R]
    bits: int                  # coded size, 32 * len(words)
    ideal_bits: float          # sum over points and latents of -log2 P(k)
    symbols: np.ndarray        # k, int32 [N, L]

    @property
    def bits_per_pixel(self) -> float:
        return self.bits / (self.count * self.input_dim)

    @property
    def bits_per_point(self) -> float:
        return self.bits / self.count

    def as_dict(self) -> dict:
        return {"count": self.count, "input_dim": self.input_dim, "latent_dim": self.latent_dim,
                "step": self.step, "symbol_range": self.symbol_range, "bits": self.bits,
                "ideal_bits": self.ideal_bits, "bits_per_pixel": self.bits_per_pixel,
                "bits_per_point": self.bits_per_point}


def gaussian_prior(model) -> tuple[torch.Tensor, torch.Tensor]:
    """(m [L], s [L]) of the model's diagonal Gaussian prior; a one-line ConfigError naming
    what is missing for a model without an encoder, a decoder or a prior, or whose prior is
    not a diagonal Gaussian (a mixture, a VampPrior, a flow)."""
    require(model, "encoder", "decoder", "prior", command=COMMAND)
    prior = model.prior()
    base = prior.base_dist if isinstance(prior, Independent) else prior
    if not isinstance(base, Normal) or len(prior.event_shape) != 1:
        raise ConfigError(f"{COMMAND} needs a diagonal Gaussian prior p(z) (prior \"normal\" or "
                          f"\"learnable-normal\") to discretise, but this model's prior is "
                          f"{type(prior).__name__}; train with prior = \"normal\"")
    size = prior.event_shape[0]
    loc = base.loc.detach().double().cpu().expand(size)
    scale = base.scale.detach().double().cpu().expand(size)
    return loc, scale


def symbol_range(loc: torch.Tensor, scale: torch.Tensor, step: float) -> int:
    """R = ceil((max |m| + CLIP max s) / S); refuses a step too small for the coder."""
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise ConfigError(f"the quantisation step must be a positive number, got {step!r}")
    r = math.ceil((float(loc.abs().max()) + CLIP * float(scale.max())) / step)
    if r >= MAX_RANGE:
        raise ConfigError(f"step {step:g} needs {2 * r + 1} symbols per latent, more than the "
                          f"coder's 2^24; use a step >= {2 * (r * step) / MAX_RANGE:.2g}")
    return r


def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _check_batch(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _prior_model(loc, scale, step, r, rows: int):
    """constriction's model and the flat (means, stds) for ``rows`` points, row-major."""
    c = constriction()
    means = np.tile((loc / step).numpy(), rows)
    stds = np.tile((scale / step).numpy(), rows)
    return c.stream.model.QuantizedGaussian(-r, r), means, stds


def ideal_bits(symbols: np.ndarray, loc, scale, step: float) -> float:
    """sum -log2 P(k) of the symbols [N, L] under the prior discretised to the grid, from the
    Gaussian CDF in float64 (the known answer the coder approaches from above)."""
    k = torch.as_tensor(symbols, dtype=torch.float64)
    prior = Normal(loc, scale)
    mass = prior.cdf((k + 0.5) * step) - prior.cdf((k - 0.5) * step)
    return float(-torch.log2(mass).sum())


def quantize(model, x: torch.Tensor, step: float, batch_size: int = 1024) -> np.ndarray:
    """k = round(E_q[z|x] / S): x [N, D] -> int32 [N, L], the encoder run in batches."""
    _check_batch(batch_size)
    device = _device(model)
    x = torch.as_tensor(x)
    out = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(device, torch.float32)
            mu, _ = model.encode(xb.reshape(xb.shape[0], -1))
            out.append(torch.round(mu.double() / step).cpu())
    if not out:
        raise DataError("no data to compress: x has 0 rows")
    return torch.cat(out).numpy()  # float64 until the range check


def encode_latents(model, x: torch.Tensor, step: float, batch_size: int = 1024
                   ) -> tuple[np.ndarray, LossyStats]:
    """Compress x [N, D] (D = the model's input size) to uint32 words [W] and the stats of
    the code (:class:`LossyStats`: bits, ideal bits, the symbols k [N, L])."""
    loc, scale = gaussian_prior(model)
    r = symbol_range(loc, scale, step)
    k = quantize(model, x, step, batch_size)
    n, latent = k.shape
    if not np.isfinite(k).all() or np.abs(k).max() > r:
        bad = int(np.argmax(~np.isfinite(k).all(1) | (np.abs(np.nan_to_num(k, nan=np.inf))
                                                      > r).any(1)))
        raise DataError(f"point {bad}'s latent mean lies beyond the coded range (|z| <= "
                        f"{r * step:g}, {CLIP:g} prior sd); {COMMAND} refuses it rather than "
                        f"escape it: check that the data match the model's training data")
    k = k.astype(np.int32)
    coder = constriction().stream.stack.AnsCoder()
    starts = list(range(0, n, batch_size))
    for start in reversed(starts):  # a stack: the last batch first, so decoding reads forward
        rows = k[start:start + batch_size]
        prior, means, stds = _prior_model(loc, scale, step, r, rows.shape[0])
        coder.encode_reverse(rows.reshape(-1), prior, means, stds)
    words = coder.get_compressed()
    stats = LossyStats(count=n, input_dim=int(np.prod(x.shape[1:])), latent_dim=latent,
                       step=float(step), symbol_range=r, bits=32 * int(words.size),
                       ideal_bits=ideal_bits(k, loc, scale, step), symbols=k)
    return words, stats


def decode_symbols(model, words: np.ndarray, step: float, count: int, latent_dim: int,
                   batch_size: int = 1024):
    """Yield the symbols k of ``count`` points, [b, L] int32 per batch, in order."""
    _check_batch(batch_size)
    loc, scale = gaussian_prior(model)
    if loc.numel() != latent_dim:
        raise ConfigError(f"the stream has {latent_dim} latents per point but the model has "
                          f"{loc.numel()}; decode with the model that encoded it")
    r = symbol_range(loc, scale, step)
    coder = constriction().stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    for start in range(0, count, batch_size):
        rows = min(batch_size, count - start)
        prior, means, stds = _prior_model(loc, scale, step, r, rows)
        yield np.asarray(coder.decode(prior, means, stds), dtype=np.int32).reshape(rows,
                                                                                  latent_dim)


def decode_latents(model, words: np.ndarray, step: float, count: int, latent_dim: int,
                   batch_size: int = 1024) -> torch.Tensor:
    """x_hat = E[x | z = k S] [count, D] (float32, cpu) from the words of
    :func:`encode_latents`; decodes ``batch_size`` points at a time."""
    device = _device(model)
    out = []
    with eval_mode(model), torch.no_grad():
        for k in decode_symbols(model, words, step, count, latent_dim, batch_size):
            z = torch.as_tensor(k, dtype=torch.float32, device=device) * step
            out.append(model.decode(z).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
