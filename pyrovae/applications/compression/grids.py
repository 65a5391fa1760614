"""Per-layer latent grids for Bit-Swap: buckets of equal mass under each layer's aggregate
posterior (Kingma, Abbeel & Ho 2019, section 3.3), estimated from training data and stored in
the compressed file.

The aggregate posterior of layer l, dimension d, is the mixture over N training examples

    A_ld(z) = 1/N sum_n N(z; m_nld, s_nld^2),   (m_n, s_n) of q(z_l | z_l-1^(n)), z_0 = x_n,

with z_l-1^(n) drawn from the posterior chain (seeded). A grid stores, per layer, the knots
[L_l, M] float32: the quantiles of A_ld at the M probabilities Phi(t_i), t_i evenly spaced on
[-RANGE, RANGE] (found by bisection on the mixture CDF in float64). Between the knots the
quantile function is taken piecewise linear in t (beyond them, linear with the end slopes), a
strictly increasing map f_ld with f_ld(Phi^-1(u)) = the u-quantile of A_ld at every knot, so
with K = 2^k buckets::

    edges   e_ldj = f_ld(Phi^-1(j / K)),          j = 0..K  (e_0 = -inf, e_K = +inf)
    centres c_ldj = f_ld(Phi^-1((j + 1/2) / K))   (the median of A_ld's mass in bucket j)

Each bucket holds 1/K of A_ld's mass (exactly at the knots, to interpolation in between).
Knots t_i themselves (f = identity) give the N(0, 1) grid of ``bbans``. The file stores the
knots, not the K + 1 edges: L_l M float32 per layer whatever k is (M = 17: 4 KB for 40 + 20
latents, where the edges at k = 12 would take 1 MB).
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import torch

from pyrovae.runtime.errors import DataError

KNOTS = 17           # quantiles stored per latent dimension
RANGE = 3.0          # the knots sit at Phi(t), t evenly spaced on [-RANGE, RANGE]
EXAMPLES = 2000      # training examples whose posteriors make the aggregate
SEED = 20190508      # the examples' choice and the chain's draws (Bit-Swap, arXiv 1905.06845)


def knot_points(count: int = KNOTS) -> torch.Tensor:
    """t_i [M] float64, evenly spaced on [-RANGE, RANGE]."""
    return torch.linspace(-RANGE, RANGE, count, dtype=torch.float64)


def mixture_quantiles(loc: torch.Tensor, scale: torch.Tensor, u: torch.Tensor,
                      steps: int = 64) -> torch.Tensor:
    """The u-quantiles of the per-dimension mixtures 1/N sum_n N(m_nd, s_nd^2): loc, scale
    [N, L], u [M] in (0, 1) -> [L, M] float64, by ``steps`` bisections of the mixture CDF
    (to 2^-steps of the bracket [min m - 40 max s, max m + 40 max s])."""
    m, s = loc.double(), scale.double()
    lo = (m.min(0).values - 40 * s.max(0).values).unsqueeze(-1).expand(-1, len(u)).clone()
    hi = (m.max(0).values + 40 * s.max(0).values).unsqueeze(-1).expand(-1, len(u)).clone()
    for _ in range(steps):
        mid = (lo + hi) / 2
        cdf = torch.special.ndtr((mid - m.unsqueeze(-1)) / s.unsqueeze(-1)).mean(0)  # [L, M]
        below = cdf < u
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def _increasing(knots: np.ndarray) -> np.ndarray:
    """float32 knots [L, M], each row made strictly increasing (a tie moves up one ulp)."""
    out = knots.astype(np.float32).copy()
    for i in range(1, out.shape[1]):
        out[:, i] = np.maximum(out[:, i], np.nextafter(out[:, i - 1], np.float32(np.inf)))
    return out


class Grid:
    """The knots of each layer, bottom (z_1) to top: a list of [L_l, M] float32 arrays."""

    def __init__(self, knots: list[np.ndarray]):
        self.knots = [np.ascontiguousarray(k, dtype=np.float32) for k in knots]
        self.sizes = tuple(k.shape[0] for k in self.knots)
        self._t = knot_points(self.knots[0].shape[1])

    def _map(self, layer: int, t: torch.Tensor) -> torch.Tensor:
        """f_l(t) [L_l, T] float64 for t [T]: piecewise linear through (t_i, knots), linear
        with the end segments' slopes beyond them."""
        k = torch.from_numpy(self.knots[layer]).double()                      # [L, M]
        i = (torch.searchsorted(self._t, t) - 1).clamp(0, len(self._t) - 2)  # [T]
        t0, t1 = self._t[i], self._t[i + 1]
        return k[:, i] + (t - t0) * (k[:, i + 1] - k[:, i]) / (t1 - t0)

    def edges(self, layer: int, buckets: int) -> torch.Tensor:
        """e [L_l, K+1] float64 of layer ``layer`` (0 = z_1), -inf and +inf at the ends."""
        j = torch.arange(1, buckets, dtype=torch.float64)
        inner = self._map(layer, torch.special.ndtri(j / buckets))
        inf = torch.full((inner.shape[0], 1), torch.inf, dtype=torch.float64)
        return torch.cat([-inf, inner, inf], dim=1)

    def centres(self, layer: int, buckets: int) -> torch.Tensor:
        """c [L_l, K] float64: each bucket's median under the grid's aggregate."""
        j = torch.arange(buckets, dtype=torch.float64)
        return self._map(layer, torch.special.ndtri((j + 0.5) / buckets))

    def sha256(self) -> str:
        """sha256 over each layer's shape and float32 bytes (little-endian)."""
        h = hashlib.sha256()
        for k in self.knots:
            h.update(f"{k.shape}|".encode())
            h.update(k.astype("<f4").tobytes())
        return h.hexdigest()

    def to_header(self) -> dict:
        """JSON-able: {"knots": M, "range": RANGE, "layers": [[L_l, base64 of <f4], ...]}."""
        return {"knots": int(self.knots[0].shape[1]), "range": RANGE,
                "layers": [[int(k.shape[0]), base64.b64encode(k.astype("<f4").tobytes())
                            .decode("ascii")] for k in self.knots]}

    @classmethod
    def from_header(cls, entry, what: str = "the file") -> "Grid":
        """The grid of :meth:`to_header`; a grid that is not whole (wrong sizes, not finite,
        not strictly increasing, another knot range) is refused in one line."""
        bad = DataError(f"{what} has a damaged latent grid; compress the data again")
        try:
            count, layers = int(entry["knots"]), entry["layers"]
            if float(entry["range"]) != RANGE or count < 2 or not layers:
                raise bad
            knots = []
            for size, text in layers:
                raw = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4")
                if raw.size != int(size) * count or int(size) < 1:
                    raise bad
                knots.append(raw.reshape(int(size), count).astype(np.float32))
        except (KeyError, TypeError, ValueError):
            raise bad from None
        if any(not np.isfinite(k).all() or not (np.diff(k, axis=1) > 0).all() for k in knots):
            raise bad
        return cls(knots)


def standard(sizes, count: int = KNOTS) -> Grid:
    """The N(0, 1) grid of every layer in this representation (knots t_i, f = identity)."""
    t = knot_points(count).numpy().astype(np.float32)
    return Grid([np.tile(t, (int(s), 1)) for s in sizes])


@torch.no_grad()
def estimate(model, x: torch.Tensor, examples: int = EXAMPLES, seed: int = SEED,
             count: int = KNOTS) -> Grid:
    """The aggregate-posterior grid of a hierarchy (``encode_layer``) from data x [N, D]:
    ``examples`` rows chosen by a seeded permutation, the chain z_l ~ q(z_l | z_l-1) drawn
    with the same generator, each layer's knots the mixture quantiles at Phi(t_i)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    pick = torch.randperm(len(x), generator=gen)[:examples]
    h = x[pick.to(x.device)].reshape(len(pick), -1).float().to(device)
    u = torch.special.ndtr(knot_points(count))
    knots = []
    for layer in range(len(model.latent_sizes)):
        loc, scale = model.encode_layer(layer, h)
        knots.append(_increasing(mixture_quantiles(loc.cpu(), scale.cpu(), u).numpy()))
        eps = torch.randn(loc.shape, generator=gen, dtype=loc.dtype)
        h = loc + scale * eps.to(device)
    return Grid(knots)
