"""The mixture of diagonal Gaussians that the ``mog`` and ``vamp`` priors are, with a log-density
computed as matrix products, so that z [S, L] against C components never makes [S, C, L].

    p(z) = sum_c pi_c N(z; mu_c, diag(s_c^2)),   pi = softmax(logits) [C], mu, s [C, L]

torch's ``MixtureSameFamily.log_prob`` pads z to [S, 1, L] and evaluates every component at
every draw: a [S, C, L] tensor (with S = K particles x B points in an importance-sampled
evaluation, 500 x 100 x 500 x 50 floats = 5 GB for a 500-component VampPrior). Expanding the
square instead, with z' = z - m and mu' = mu - m for a fixed centre m [L] (the mean of the
component means; the density does not depend on it):

    log N(z; mu_c, diag s_c^2) = const_c - 1/2 q_c(z),
    q_c(z) = sum_l (z'_l - mu'_cl)^2 / s_cl^2
           = [z'^2, z'] @ [1/s_c^2, -2 mu'_c / s_c^2]^T + sum_l mu'_cl^2 / s_cl^2
    const_c = log pi_c - sum_l log s_cl - L/2 log 2 pi

one [S, 2L] x [2L, C] product (plus the bias const_c - 1/2 sum_l mu'_cl^2 / s_cl^2), then a
log-sum-exp over C: [S, C] is the largest tensor, made in row blocks of at most
``BLOCK_ENTRIES`` entries. The expansion subtracts terms of size (z'/s)^2, so it is computed in
float64 (for float32 inputs too), and the dominant component c* of each row (the largest a_c,
a = the expanded log-densities) is recomputed exactly from its own difference z - mu_c* (a
gather of [S, L]):

    log p(z) = exact_c* + log sum_c exp(a_c - a_c*),   exact_c = const_c - 1/2 q_c(z)

The result has the input's dtype and equals ``MixtureSameFamily``'s up to float rounding,
gradients included (tests/components/test_mixture_log_prob.py).

Small problems (at most ``DIRECT_ENTRIES`` entries of [S, C, L]) take ``MixtureSameFamily``'s
own log_prob, so their numbers are unchanged bit for bit; a traced log_prob (the compiled
objectives) always takes the matrix product, in one block.

Everything else (sampling, ``mean``, ``variance``, ``expand``, ``component_distribution``)
is ``MixtureSameFamily``'s own, so draws are unchanged and code that checks
``isinstance(d, MixtureSameFamily)`` keeps working.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

#: the most entries of the [rows, C] log-density block made at once (float64: 2 MiB)
BLOCK_ENTRIES = 2 ** 18
#: up to this many entries of [S, C, L], MixtureSameFamily's own log_prob (the same numbers
#: bit for bit, e.g. a training step's KL term with a few components; float32: 1 MiB)
DIRECT_ENTRIES = 2 ** 18


def diagonal_normal(loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
    """Independent(Normal(loc, scale), 1): a diagonal Gaussian over the last dimension."""
    return dist.Independent(dist.Normal(loc, scale, validate_args=False), 1, validate_args=False)


class DiagonalGaussianMixture(dist.MixtureSameFamily):
    """sum_c softmax(logits)_c N(loc_c, diag(scale_c^2)): logits [C], loc and scale [C, L];
    batch shape [] (``expand`` as any distribution), event shape [L]. ``log_prob`` by matrix
    products (module docstring)."""

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 validate_args: bool | None = False):
        if logits.dim() != 1 or loc.dim() != 2 or loc.shape != scale.shape \
                or loc.shape[0] != logits.shape[0]:
            raise ValueError(f"DiagonalGaussianMixture takes logits [C] and loc, scale [C, L], "
                             f"got {tuple(logits.shape)}, {tuple(loc.shape)}, "
                             f"{tuple(scale.shape)}")
        super().__init__(dist.Categorical(logits=logits, validate_args=False),
                         diagonal_normal(loc, scale), validate_args=validate_args)
        self._params = (logits, loc, scale)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiagonalGaussianMixture, _instance)
        new = super().expand(batch_shape, _instance=new)
        new._params = self._params  # the same C components for every batch element
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p(z): [..., L] -> [...] broadcast with the batch shape."""
        if self._validate_args:
            self._validate_sample(value)
        logits, loc, scale = self._params
        size = loc.shape[-1]
        entries = 0 if torch.jit.is_tracing() else torch.broadcast_shapes(
            value.shape[:-1], self.batch_shape).numel() * loc.numel()
        if 0 < entries <= DIRECT_ENTRIES:
            return super().log_prob(value)  # small: MixtureSameFamily's own, bit for bit
        lp = mixture_log_prob(value.reshape(-1, size), logits, loc, scale)
        lp = lp.reshape(value.shape[:-1])
        if torch.jit.is_tracing() and lp.dim() >= len(self.batch_shape):
            return lp  # z carries the batch dims (a plate's): sizes stay as traced, no warning
        shape = torch.broadcast_shapes(lp.shape, self.batch_shape)
        return lp if lp.shape == shape else lp.expand(shape)


def mixture_log_prob(z: torch.Tensor, logits: torch.Tensor, loc: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """log sum_c softmax(logits)_c N(z; loc_c, diag(scale_c^2)) of the rows of z [S, L]
    against logits [C], loc and scale [C, L]: returns [S], in the promoted input dtype.
    Differentiable in every argument; never makes a [S, C, L] tensor (module docstring)."""
    out = torch.promote_types(torch.promote_types(z.dtype, loc.dtype), scale.dtype)
    work = torch.float64
    size = loc.shape[-1]
    centre = loc.detach().to(work).mean(0)                       # [L], the density ignores it
    zc = z.to(work) - centre                                     # [S, L]
    mu = loc.to(work) - centre                                   # [C, L]
    inv = scale.to(work).reciprocal()                            # [C, L], 1 / s
    prec = inv * inv                                             # [C, L], 1 / s^2
    const = (torch.log_softmax(logits.to(work), -1) - scale.to(work).log().sum(-1)
             - 0.5 * size * math.log(2 * math.pi))               # [C]
    right = torch.cat([prec, -2 * mu * prec], -1).T.mul(-0.5)   # [2L, C]
    bias = const - 0.5 * (mu * mu * prec).sum(-1)               # [C]
    table = torch.cat([mu, inv, const[:, None]], -1)             # [C, 2L + 1]: exact terms
    # one block when traced (a compiled objective replays the trace on other batch sizes)
    blocks = [zc] if torch.jit.is_tracing() else zc.split(max(1, BLOCK_ENTRIES // len(mu)))
    parts = []
    for block in blocks:
        approx = torch.addmm(bias, torch.cat([block * block, block], -1), right)  # [s, C]
        top, best = approx.max(-1)                               # the dominant component
        rest = approx.sub_(top[:, None]).exp_().sum(-1).log_()   # log sum_c e^(a_c - top)
        row = table.index_select(0, best)                        # [s, 2L + 1]
        exact = row[:, -1] - 0.5 * ((block - row[:, :size]) * row[:, size:-1]).pow(2).sum(-1)
        parts.append(torch.where(torch.isfinite(top), exact + rest, top))
    lp = torch.cat(parts) if len(parts) != 1 else parts[0]
    return lp.to(out)
