"""Bit-Swap (Kingma, Abbeel & Ho 2019): bits-back coding of a hierarchy of latent layers
z_1 .. z_L (the model's ``hierarchy`` capability) in an order whose initial clean bits are
those of z_1 alone, whatever the depth.

Each layer l has its own grid (``grids.py``): per dimension d, 2^k buckets of equal mass
under the layer's aggregate posterior, edges e_l [L_l, K+1] and centres c_l [L_l, K] (the
buckets' medians) standing for the values, estimated from training data and stored in the file.
For one batch of x [B, D] (a stack, last in first out)::

    encode: pop j_1 ~ Q(z_1 | x)                       (takes -log2 Q bits)
            push x under P(x | c_1(j_1))
            for l = 1 .. L-1:
                pop j_l+1 ~ Q(z_l+1 | c_l(j_l))         (from what was just pushed)
                push j_l under P(z_l | c_l+1(j_l+1))
            push j_L under P(j_L)                       (N(0, I)'s mass on the top buckets)
    decode: the same steps backwards

where Q and P are the Gaussians' masses on the layer's buckets (``bucket_probs``, per-dimension
edges). The bits popped for z_l+1 come from the push of z_l (and x), not from the initial words:
plain bits-back would pop all layers first and need their bits up front. The net cost of a
batch is -log2 P(x|c_1) - sum_l log2 P(j_l | c_l+1) - log2 P(j_L) + sum_l log2 Q(j_l | .), an
estimate of the hierarchy's negative ELBO in bits.

Without a grid (``grid=None``, files of format version 1) every layer uses the N(0, 1) buckets
of ``bbans`` and the top is pushed under P(j_L) = 1 / K: the codec files were first written
with, kept so that they decode.
"""

from __future__ import annotations

import numpy as np
import torch

from pyrovae.applications.compression.bbans import (CODER_PRECISION, BitsBack,
                                                   check_latent_bits, constriction,
                                                   discrete_likelihood)
from pyrovae.applications.compression import grids
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.interface import has


class BitSwap(BitsBack):
    """The Bit-Swap codec of a model with the ``hierarchy`` capability (kind hvae), on the
    per-layer ``grid`` (``grids.Grid``) or, with None, on the N(0, 1) buckets."""

    def __init__(self, model: torch.nn.Module, latent_bits: int = 8,
                 grid: grids.Grid | None = None):
        check_latent_bits(latent_bits)
        if not has(model, "hierarchy"):
            raise ConfigError(f"Bit-Swap needs a chain of Gaussian layers (the hierarchy "
                              f"capability), which {type(model).__name__} lacks; use an hvae "
                              f"run")
        lik, name = discrete_likelihood(model, "Bit-Swap")
        self.sizes = tuple(int(s) for s in model.latent_sizes)
        self._setup(model, lik, name, latent_bits)
        self.latent_grid = grid
        if grid is None:
            self.layer_edges = [self.edges.expand(s, -1) for s in self.sizes]
            self.layer_centres = [self.centres.expand(s, -1) for s in self.sizes]
            return
        if grid.sizes != self.sizes:
            raise DataError(f"the latent grid has layers of sizes {grid.sizes} but the run's "
                            f"hierarchy has {self.sizes}; decompress with the run that made "
                            f"the file")
        self.layer_edges = [grid.edges(i, self.K) for i in range(len(self.sizes))]
        self.layer_centres = [grid.centres(i, self.K) for i in range(len(self.sizes))]
        top = torch.zeros(1, self.sizes[-1])
        self.top_probs = self.bucket_probs(top, top + 1, self.layer_edges[-1])  # [L_L, K]

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

    def centres_of(self, j: np.ndarray, rows: int, layer: int) -> torch.Tensor:
        """Bucket indices [rows * L_l] of z_layer+1 (layer 0 = z_1) -> their centres
        [rows, L_l] float32."""
        c = self.layer_centres[layer]                                       # [L_l, K]
        jj = torch.from_numpy(j).long().reshape(rows, -1)
        return c[torch.arange(c.shape[0]), jj].float().to(self.device)

    def z_centres(self, z_idx: np.ndarray) -> torch.Tensor:
        """z_1's bucket indices [B, L_1] -> their centres on z_1's grid (``x_probs`` reads
        them)."""
        return self.centres_of(z_idx, len(z_idx), 0)

    @torch.no_grad()
    def q_layer(self, layer: int, h: torch.Tensor) -> np.ndarray:
        """Q(z_layer+1 | h) [B*L, K] for h = x (layer 0) or c(j_layer)."""
        return self.bucket_probs(*self.model.encode_layer(layer, h), self.layer_edges[layer])

    @torch.no_grad()
    def p_layer(self, layer: int, z_above: torch.Tensor) -> np.ndarray:
        """P(z_layer | z_layer+1) [B*L, K], 1 <= layer < L."""
        return self.bucket_probs(*self.model.prior_layer(layer, z_above),
                                 self.layer_edges[layer - 1])

    def _top(self, coder, j, rows: int, push: bool):
        """Push (or pop, j = None) the top layer's buckets under P(j_L); returns (j, bits)."""
        m = constriction().stream.model
        if self.latent_grid is None:                                 # format 1: 1 / K
            if not push:
                return coder.decode(m.Uniform(self.K), rows * self.sizes[-1]).astype(np.int32), 0
            coder.encode_reverse(j, m.Uniform(self.K))
            return j, j.size * self.latent_bits
        p = np.tile(self.top_probs, (rows, 1))
        cat = m.Categorical(perfect=False)
        if not push:
            return coder.decode(cat, p).astype(np.int32), 0
        coder.encode_reverse(j, cat, p)
        return j, -float(_log2(p[np.arange(j.size), j]).sum())

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
            q = self.q_layer(layer, self.centres_of(j, rows, layer - 1))
            above = coder.decode(cat, q).astype(np.int32)           # pop j_l+1 ~ Q(.|c_l)
            p = self.p_layer(layer, self.centres_of(above, rows, layer))
            coder.encode_reverse(j, cat, p)                         # push j_l | c_l+1
            bits += float(_log2(q[np.arange(above.size), above]).sum()
                          - _log2(p[np.arange(j.size), j]).sum())
            j = above
            popped.append(j.reshape(rows, -1))
        _, top_bits = self._top(coder, j, rows, push=True)         # push j_L under P(j_L)
        return {"z": popped, "bits": bits + top_bits}

    def decode_batch(self, coder, n: int) -> np.ndarray:
        """Pop a batch of n examples -> value indices [n, D] (encode_batch's inverse)."""
        m = constriction().stream.model
        cat, depth = m.Categorical(perfect=False), len(self.sizes)
        j, _ = self._top(coder, None, n, push=False)
        for layer in range(depth - 1, 0, -1):
            p = self.p_layer(layer, self.centres_of(j, n, layer))
            below = coder.decode(cat, p).astype(np.int32)
            coder.encode_reverse(j, cat, self.q_layer(layer, self.centres_of(below, n, layer - 1)))
            j = below
        idx = coder.decode(cat, self.x_probs(j.reshape(n, -1))).astype(np.int32).reshape(n, -1)
        x = self.levels[torch.from_numpy(idx).long()].to(self.device)
        coder.encode_reverse(j, cat, self.q_layer(0, x))            # give z_1's bits back
        return idx

    def grid_settings(self) -> dict:
        """What the file's fingerprint covers of the grid: its sha256 (none: the N(0, 1) one)."""
        if self.latent_grid is None:
            return {}
        return {"grid": "aggregate", "grid_sha256": self.latent_grid.sha256()}


def codec_for(model: torch.nn.Module, latent_bits: int = 8,
              grid: grids.Grid | None = None) -> BitsBack:
    """Bit-Swap (on ``grid``) for a model with the ``hierarchy`` capability, else one-latent
    bits-back (which takes no grid: one given is refused in one line)."""
    if has(model, "hierarchy"):
        return BitSwap(model, latent_bits, grid)
    if grid is not None:
        raise DataError(f"the file holds a Bit-Swap latent grid but the run's "
                        f"{type(model).__name__} is not a hierarchy; decompress with the run "
                        f"that made the file")
    return BitsBack(model, latent_bits)


def _log2(p: np.ndarray) -> np.ndarray:
    """log2 of coded probabilities, floored at the coder's resolution 2^-24 (a probability that
    underflows in float64 is coded at about that cost: bbans.CODER_PRECISION)."""
    return np.log2(np.maximum(p, 2.0 ** -CODER_PRECISION))
