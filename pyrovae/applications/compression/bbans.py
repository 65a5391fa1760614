"""Bits-back ANS (BB-ANS, Townsend et al. 2019): lossless coding of discrete data with a VAE.

A model qualifies when it has a diagonal-Gaussian encoder q(z|x) = N(mu(x), diag s(x)^2) for
one latent z [L] (``encode(x) -> (loc [B, L], scale [B, L])``), the prior p(z) = N(0, I_L), a
decoder ``decoder(z) -> out`` and a discrete likelihood ``likelihood(out)`` (registered with
``discrete=True``) whose per-pixel distribution enumerates its V values (Bernoulli: {0, 1},
V = 2; discretized logistic and beta-binomial: {k/255}, V = 256).

Latent discretisation, per dimension, K = 2^k buckets of equal mass 1/K under N(0, 1)
(k = ``latent_bits``)::

    edges   e_j = Phi^-1(j / K),  j = 0..K      (e_0 = -inf, e_K = +inf)
    centres c_j = Phi^-1((j + 1/2) / K)
    Q(j|x)  = Phi((e_{j+1} - mu) / s) - Phi((e_j - mu) / s)      float64, per dimension
    P(j)    = 1 / K                                              the prior's buckets
    P(x|j)  = prod_d softmax_v(log p(x_d = v | z = c_j))         [B, D, V] float64

One batch of B images x [B, D] (symbols, stack = last in, first out)::

    encode: pop j ~ Q(.|x) (decode from the stack; takes -log2 Q(j|x) bits)
            push x under P(x|c_j)   (adds -log2 P(x|c_j))
            push j under P(j)       (adds L k bits)
    decode: pop j under P(j); pop x under P(x|c_j); push j under Q(.|x)   (the reverse)

so a batch costs  -log2 P(x|c_j) - log2 P(j) + log2 Q(j|x)  bits net, an estimate of the
negative ELBO of the discretised model (its expectation over j ~ Q is -ELBO in bits).
Batch sizes ramp up slowly, 1, 2, 3, ... growing by at most a quarter a batch, to B
(:func:`batches`): a batch of m images pops about m H_q bits (H_q <= L k, the posterior
buckets' information per image) from what the n images before it left on the stack (about
n R bits, R the net rate per image), and n >= 4 m along the ramp, so the pops take real bits
whenever H_q <= 4 R; the stack starts with the clean bits of a few images (``RAMP_START``
images of L k bits), a cost that does not grow with B. (Batches of B from the start would need
B L k clean bits: 2.7 % of the file on MNIST.) Batches are encoded in order and decoded in
reverse order, with the same batch boundaries, so
the networks see the same inputs in the same shapes (eval mode, no_grad, float32) and give the
same probabilities bit for bit on the same machine and torch build. The stack starts with
``initial_words`` pseudo-random uint32 words (a seeded generator) for the first pops to take;
decoding ends on exactly these words, which is checked.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.interface import has
from pyrovae.runtime.registry import LIKELIHOODS

INSTALL = "pip install 'pyrovae[compress]'"
INITIAL_SEED = 20190131  # the clean bits' generator (BB-ANS, arXiv 1901.04866)


def constriction():
    """The ``constriction`` package, or a one-line ConfigError naming how to install it."""
    try:
        import constriction as cs
    except ImportError:
        raise ConfigError(f"compression needs the constriction package, which is not "
                          f"installed: {INSTALL}") from None
    return cs


def initial_words(count: int) -> np.ndarray:
    """The ``count`` clean uint32 words the stack starts with (nonzero, seeded)."""
    rng = np.random.default_rng(INITIAL_SEED)
    return rng.integers(1, 2**32, size=count, dtype=np.uint64).astype(np.uint32)


CODER_PRECISION = 24  # bits of constriction's Categorical(perfect=False) probabilities
RAMP_START = 4  # images' worth of clean bits the stack starts with (see the module docstring)


def default_initial_words(batch: int, latent_dim: int, latent_bits: int) -> int:
    """Clean words for the ramp's first pops: ``RAMP_START`` images of L k bits (at least the
    first batch's), in 32-bit words."""
    return max(16, math.ceil(max(batch, RAMP_START) * latent_dim * latent_bits / 32))


def _standard_normal(prior) -> bool:
    base = getattr(prior, "base_dist", prior)
    loc, scale = getattr(base, "loc", None), getattr(base, "scale", None)
    return (type(base).__name__ == "Normal" and loc is not None and scale is not None
            and bool((loc == 0).all()) and bool((scale == 1).all()))


def check_latent_bits(latent_bits: int) -> None:
    """Refuse k outside 1..16 (2^k buckets per latent dimension) in one line."""
    if not 1 <= latent_bits <= 16:
        raise ConfigError(f"latent_bits = {latent_bits} must be between 1 and 16 "
                          f"(2^k buckets per latent dimension; 8 is the usual)")


def discrete_likelihood(model, coding: str):
    """(the model's likelihood, its registered name), refused in one line unless discrete."""
    lik = getattr(model, "likelihood", None)
    name = getattr(lik, "name", "")
    if name not in LIKELIHOODS or not LIKELIHOODS.capability(name, "discrete"):
        discrete = ", ".join(LIKELIHOODS.where(discrete=True))
        raise ConfigError(f"{coding} needs a discrete likelihood ({discrete}), but the run's "
                          f"is {name or '?'!r}; train with one of those as model.likelihood")
    return lik, name


class BitsBack:
    """The codec of one model: ``encode_batch``/``decode_batch`` on a constriction AnsCoder.

    Symbols: x as value indices [B, D] int32 into ``levels`` [V] (the likelihood's own grid,
    float32, what the networks read); z as bucket indices [B, L] int32 in 0..K-1."""

    def __init__(self, model: torch.nn.Module, latent_bits: int = 8):
        check_latent_bits(latent_bits)
        what = type(model).__name__
        if not has(model, "encoder"):
            raise ConfigError(f"bits-back coding needs a Gaussian encoder encode(x) -> (loc, "
                              f"scale) for one latent, which {what} lacks; use a vae run")
        if has(model, "labels") or has(model, "condition"):
            raise ConfigError(f"bits-back coding needs a decoder of z alone, but {what} "
                              f"conditions it on more (labels or a condition); use a vae run")
        if (not callable(getattr(model, "decoder", None))
                or getattr(model, "likelihood", None) is None):
            raise ConfigError(f"bits-back coding needs model.decoder(z) and model.likelihood, "
                              f"which {what} lacks; use a vae run")
        lik, name = discrete_likelihood(model, "bits-back coding")
        if not has(model, "prior") or not _standard_normal(model.prior()):
            prior_name = type(getattr(model, "prior", None)).__name__
            raise ConfigError(f"bits-back coding needs the standard-normal prior N(0, I), but "
                              f"the run's prior is {prior_name}; train with model.prior = "
                              f"\"normal\"")
        self._setup(model, lik, name, latent_bits)

    def _setup(self, model, lik, name: str, latent_bits: int) -> None:
        """The buckets (2^k of equal N(0, 1) mass per dimension) and the likelihood's grid."""
        self.model, self.likelihood, self.name = model, lik, name
        self.latent_bits, self.K = latent_bits, 2 ** latent_bits
        self.device = next(model.parameters()).device
        j = torch.arange(self.K + 1, dtype=torch.float64)
        self.edges = torch.special.ndtri(j / self.K)                        # [K+1], +-inf ends
        self.centres = torch.special.ndtri((j[:-1] + 0.5) / self.K)         # [K]
        self.latent_dim = 0
        self.levels = self._levels()             # [V] float32; sets latent_dim L

    # ---- the model's probabilities ---------------------------------------------------------
    def _distribution(self, z: torch.Tensor):
        d = self.likelihood(self.model.decoder(z))
        return getattr(d, "base_dist", d)  # per pixel: batch shape [B, D]

    def _levels(self) -> torch.Tensor:
        with torch.no_grad():
            loc, _ = self.model.encode(torch.zeros(1, self.input_dim(), device=self.device))
            base = self._distribution(torch.zeros_like(loc))
        self.latent_dim = loc.shape[-1]
        if not getattr(base, "has_enumerate_support", False):
            raise ConfigError(f"likelihood {self.name!r} does not enumerate its values; "
                              f"bits-back coding needs a discrete one "
                              f"({', '.join(LIKELIHOODS.where(discrete=True))})")
        return base.enumerate_support(expand=False).reshape(-1).float().cpu()

    def input_dim(self) -> int:
        dim = getattr(self.model, "input_dim", None)
        if dim is None:
            raise ConfigError(f"{type(self.model).__name__} has no input_dim; bits-back coding "
                              f"needs the size D of an example")
        return int(dim)

    def grid(self, dtype) -> np.ndarray:
        """The V values in ``dtype``: k/(V-1) for a float dtype (rounded once, as numpy and
        torch divide), k itself for an integer or bool dtype."""
        dtype, top = np.dtype(dtype), len(self.levels) - 1
        if dtype.kind == "f":
            return np.arange(top + 1, dtype=dtype) / dtype.type(top)
        return np.arange(top + 1).astype(dtype)

    def symbols(self, x: np.ndarray, what: str = "data") -> np.ndarray:
        """x [N, D] (values of the likelihood's grid in x's dtype) -> indices [N, D] int32;
        values off the grid (non-binary data for bernoulli, off k/255 for 8-bit) are refused
        in one line. ``grid(x.dtype)[indices]`` gives x back bit for bit."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise DataError(f"{what} has dtype {x.dtype}; give numbers (float, int or bool)")
        top = len(self.levels) - 1
        scaled = x.astype(np.float64) * (top if x.dtype.kind == "f" else 1)
        idx = np.clip(np.nan_to_num(np.round(scaled)), 0, top).astype(np.int32)
        off = self.grid(x.dtype)[idx] != x
        if off.any():
            grid = "{0, 1}" if top == 1 else f"k/{top} (8-bit; k for integers)"
            raise DataError(f"{what} has values off the {self.name} likelihood's grid {grid} "
                            f"(e.g. {x[off].flat[0]!r}); give data of the kind the run was "
                            f"trained on")
        return idx

    @torch.no_grad()
    def q_probs(self, idx: np.ndarray) -> np.ndarray:
        """Q(j|x) [B*L, K] float64 for value indices idx [B, D]."""
        x = self.levels[torch.from_numpy(idx).long()].to(self.device)
        return self.bucket_probs(*self.model.encode(x))

    def bucket_probs(self, loc: torch.Tensor, scale: torch.Tensor,
                     edges: torch.Tensor | None = None) -> np.ndarray:
        """The mass of N(loc, scale^2) in each bucket: [B, L] each -> [B*L, K] float64;
        ``edges`` [K+1] (default: the N(0, 1) buckets) or per dimension [L, K+1]."""
        mu, s = loc.double().cpu().unsqueeze(-1), scale.double().cpu().unsqueeze(-1)
        t = ((self.edges if edges is None else edges) - mu) / s     # [B, L, K+1]
        lower = torch.special.ndtr(t).diff(dim=-1)                  # Phi(t_hi) - Phi(t_lo)
        upper = -torch.special.ndtr(-t).diff(dim=-1)                # the same, from the top
        p = torch.where(t[..., :-1] > 0, upper, lower).clamp(min=0)  # accurate in both tails
        return p.reshape(-1, self.K).numpy()

    def z_centres(self, z_idx: np.ndarray) -> torch.Tensor:
        """Bucket indices [B, L] of the latent the decoder reads -> its values c_j [B, L]."""
        return self.centres[torch.from_numpy(z_idx).long()].float().to(self.device)

    @torch.no_grad()
    def x_probs(self, z_idx: np.ndarray) -> np.ndarray:
        """P(x_d = v | c_j) [B*D, V] float64 for bucket indices z_idx [B, L]."""
        base = self._distribution(self.z_centres(z_idx))
        values = self.levels.to(self.device).reshape(-1, 1, 1)      # [V, 1, 1]
        lp = base.log_prob(values).double().cpu()                  # [V, B, D]
        return torch.softmax(lp.permute(1, 2, 0), dim=-1).reshape(-1, len(self.levels)).numpy()

    # ---- one batch on the stack ------------------------------------------------------------
    def encode_batch(self, coder, idx: np.ndarray) -> dict:
        """Push the batch idx [B, D] (value indices) onto ``coder``; returns the popped
        buckets z [B, L] and the batch's ideal net bits -log2 P(x|c) - log2 P(j) +
        log2 Q(j|x) from the float64 probabilities."""
        m = constriction().stream.model
        cat = m.Categorical(perfect=False)
        q = self.q_probs(idx)
        z = coder.decode(cat, q).astype(np.int32)                   # pop j ~ Q(.|x)
        px = self.x_probs(z.reshape(len(idx), -1))
        flat = idx.reshape(-1)
        coder.encode_reverse(flat, cat, px)                         # push x under P(x|c_j)
        coder.encode_reverse(z, m.Uniform(self.K))                  # push j under P(j)
        # (a probability below the coder's resolution, 2^-24 with perfect=False, is coded at
        # about that resolution: the floor keeps the ideal finite where float64 underflows)
        floor = 2.0 ** -CODER_PRECISION
        bits = (-np.log2(np.maximum(px[np.arange(flat.size), flat], floor)).sum()
                + z.size * self.latent_bits
                + np.log2(np.maximum(q[np.arange(z.size), z], floor)).sum())
        return {"z": z.reshape(len(idx), -1), "bits": float(bits)}

    def decode_batch(self, coder, n: int) -> np.ndarray:
        """Pop a batch of n examples -> value indices [n, D] (encode_batch's inverse)."""
        m = constriction().stream.model
        cat = m.Categorical(perfect=False)
        z = coder.decode(m.Uniform(self.K), n * self.latent_dim).astype(np.int32)
        px = self.x_probs(z.reshape(n, -1))
        idx = coder.decode(cat, px).astype(np.int32).reshape(n, -1)
        coder.encode_reverse(z, cat, self.q_probs(idx))             # give the bits back
        return idx


def batches(count: int, batch_size: int) -> list[tuple[int, int]]:
    """The [start, stop) of each batch, in encoding order (decoding goes backwards): sizes
    1, 2, 3, ..., each max(m + 1, floor(1.25 m)), up to ``batch_size``, then ``batch_size``."""
    out, start, size = [], 0, 1
    while start < count:
        stop = min(start + min(size, batch_size), count)
        out.append((start, stop))
        start, size = stop, max(size + 1, int(size * 1.25))
    return out


def encode(codec: BitsBack, idx: np.ndarray, batch_size: int, words: int, progress=None):
    """All of idx [N, D] -> (the coder's uint32 words, the summed ideal bits)."""
    cs = constriction()
    coder = cs.stream.stack.AnsCoder(initial_words(words))
    ideal = 0.0
    for start, stop in batches(len(idx), batch_size):
        ideal += codec.encode_batch(coder, idx[start:stop])["bits"]
        if progress is not None:
            progress.update(stop - start)
    return coder.get_compressed(), ideal


def decode(codec: BitsBack, payload: np.ndarray, count: int, batch_size: int, words: int,
           progress=None) -> np.ndarray:
    """The words of :func:`encode` -> idx [count, D]; refuses (one line) a stack that does
    not end on the initial words."""
    cs = constriction()
    coder = cs.stream.stack.AnsCoder(np.ascontiguousarray(payload, dtype=np.uint32))
    parts = []
    for start, stop in reversed(batches(count, batch_size)):
        parts.append(codec.decode_batch(coder, stop - start))
        if progress is not None:
            progress.update(stop - start)
    rest = coder.get_compressed()
    if not np.array_equal(rest, initial_words(words)):
        raise DataError("decoding did not end on the initial bits: the file was made by "
                        "another model, machine or torch build; decompress it where it was "
                        "compressed")
    dim = codec.input_dim()
    return np.concatenate(parts[::-1]) if parts else np.zeros((0, dim), np.int32)
