"""Bit-Swap (Kingma, Abbeel & Ho 2019): bits-back coding of a hierarchy of latent layers
z_1 .. z_L (the model's ``hierarchy`` capability) in an order whose initial clean bits are
those of z_1 alone, whatever the depth.

Every layer uses the buckets of ``bbans``: 2^k of equal N(0, 1) mass per dimension, the bucket
centres c(j) standing for the values. For one batch of x [B, D] (a stack, last in first out)::

    encode: pop j_1 ~ Q(z_1 | x)                       (takes -log2 Q bits)
            push x under P(x | c(j_1))
            for l = 1 .. L-1:
                pop j_l+1 ~ Q(z_l+1 | c(j_l))           (from what was just pushed)
                push j_l under P(z_l | c(j_l+1))
            push j_L under P(j_L) = 1 / K               (the top prior N(0, I))
    decode: the same steps backwards

so the bits popped for z_l+1 come from the push of z_l (and x), not from the initial words:
plain bits-back would pop all layers first and need their bits up front. The net cost of a
batch is -log2 P(x|c_1) - sum_l log2 P(j_l | c_l+1) + L_L k + sum_l log2 Q(j_l | .), an
estimate of the hierarchy's negative ELBO in bits.
"""

from __future__ import annotations

import numpy as np
import torch

from pyrovae.applications.compression.bbans import (CODER_PRECISION, BitsBack,
                                                   check_latent_bits, constriction,
                                                   discrete_likelihood)
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.interface import has


class BitSwap(BitsBack):
    """The Bit-Swap codec of a model with the ``hierarchy`` capability (kind hvae)."""

    def __init__(self, model: torch.nn.Module, latent_bits: int = 8):
        check_latent_bits(latent_bits)
        if not has(model, "hierarchy"):
            raise ConfigError(f"Bit-Swap needs a chain of Gaussian layers (the hierarchy "
                              f"capability), which {type(model).__name__} lacks; use an hvae "
                              f"run")
        lik, name = discrete_likelihood(model, "Bit-Swap")
        self.sizes = tuple(int(s) for s in model.latent_sizes)
        self._setup(model, lik, name, latent_bits)

    # ---- the model's probabilities ---------------------------------------------------------
    def _distribution(self, z1: torch.Tensor):
        d = self.likelihood(self.model.decode_layer0(z1))
        return getattr(d, "base_dist", d)

    def _levels(self) -> torch.Tensor:
        with torch.no_grad():
            base = self._distribution(torch.zeros(1, self.sizes[0], device=self.device))
        self.latent_dim = self.sizes[0]  # the initial words pay for z_1's pops only
        if not getattr(base, "has_enumerate_support", False):
            raise ConfigError(f"likelihood {self.name!r} does not enumerate its values; "
                              f"Bit-Swap needs a discrete one")
        return base.enumerate_support(expand=False).reshape(-1).float().cpu()

    def centres_of(self, j: np.ndarray, rows: int) -> torch.Tensor:
        """Bucket indices [rows * L_l] -> their centres [rows, L_l] float32."""
        return self.centres[torch.from_numpy(j).long()].float().to(self.device).reshape(rows, -1)

    @torch.no_grad()
    def q_layer(self, layer: int, h: torch.Tensor) -> np.ndarray:
        """Q(z_layer+1 | h) [B*L, K] for h = x (layer 0) or c(j_layer)."""
        return self.bucket_probs(*self.model.encode_layer(layer, h))

    @torch.no_grad()
    def p_layer(self, layer: int, z_above: torch.Tensor) -> np.ndarray:
        """P(z_layer | z_layer+1) [B*L, K], 1 <= layer < L."""
        return self.bucket_probs(*self.model.prior_layer(layer, z_above))

    # ---- one batch on the stack ------------------------------------------------------------
    def encode_batch(self, coder, idx: np.ndarray) -> dict:
        """Push the batch idx [B, D] (value indices) in Bit-Swap's order; returns the popped
        buckets of each layer [j_1 [B, L_1], ..., j_L] and the batch's ideal net bits."""
        m = constriction().stream.model
        cat, rows, depth = m.Categorical(perfect=False), len(idx), len(self.sizes)
        x = self.levels[torch.from_numpy(idx).long()].to(self.device)
        q = self.q_layer(0, x)
        j = coder.decode(cat, q).astype(np.int32)                   # pop j_1 ~ Q(z_1|x)
        popped = [j.reshape(rows, -1)]
        bits = float(_log2(q[np.arange(j.size), j]).sum())
        px = self.x_probs(j.reshape(rows, -1))
        flat = idx.reshape(-1)
        coder.encode_reverse(flat, cat, px)                         # push x under P(x|c_1)
        bits -= float(_log2(px[np.arange(flat.size), flat]).sum())
        for layer in range(1, depth):
            below = self.centres_of(j, rows)
            q = self.q_layer(layer, below)
            above = coder.decode(cat, q).astype(np.int32)           # pop j_l+1 ~ Q(.|c_l)
            p = self.p_layer(layer, self.centres_of(above, rows))
            coder.encode_reverse(j, cat, p)                         # push j_l | c_l+1
            bits += float(_log2(q[np.arange(above.size), above]).sum()
                          - _log2(p[np.arange(j.size), j]).sum())
            j = above
            popped.append(j.reshape(rows, -1))
        coder.encode_reverse(j, m.Uniform(self.K))                  # push j_L under P(j_L)
        return {"z": popped, "bits": bits + j.size * self.latent_bits}

    def decode_batch(self, coder, n: int) -> np.ndarray:
        """Pop a batch of n examples -> value indices [n, D] (encode_batch's inverse)."""
        m = constriction().stream.model
        cat, depth = m.Categorical(perfect=False), len(self.sizes)
        j = coder.decode(m.Uniform(self.K), n * self.sizes[-1]).astype(np.int32)
        for layer in range(depth - 1, 0, -1):
            below = coder.decode(cat, self.p_layer(layer, self.centres_of(j, n))).astype(np.int32)
            coder.encode_reverse(j, cat, self.q_layer(layer, self.centres_of(below, n)))
            j = below
        idx = coder.decode(cat, self.x_probs(j.reshape(n, -1))).astype(np.int32).reshape(n, -1)
        x = self.levels[torch.from_numpy(idx).long()].to(self.device)
        coder.encode_reverse(j, cat, self.q_layer(0, x))            # give z_1's bits back
        return idx


def codec_for(model: torch.nn.Module, latent_bits: int = 8) -> BitsBack:
    """Bit-Swap for a model with the ``hierarchy`` capability, else one-latent bits-back."""
    if has(model, "hierarchy"):
        return BitSwap(model, latent_bits)
    return BitsBack(model, latent_bits)


def _log2(p: np.ndarray) -> np.ndarray:
    """log2 of coded probabilities, floored at the coder's resolution 2^-24 (a probability that
    underflows in float64 is coded at about that cost: bbans.CODER_PRECISION)."""
    return np.log2(np.maximum(p, 2.0 ** -CODER_PRECISION))
