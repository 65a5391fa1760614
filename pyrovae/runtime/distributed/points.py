"""Evaluations that are sums over data points, shared out by batches and gathered in order.

A slow per-point evaluation (the importance-sampled log-likelihood with K = 5000, AIS) maps each
batch of points to per-point results; with R processes rank r computes batches r, r+R, r+2R, ...
and every rank gets all results back in the original order (one ``all_gather_object``). The
results equal one process's as long as a batch's draws depend only on the batch (seed each batch
by its index, e.g. ``with seeded(batch_seed(seed, i))``), never on the batches before it.
"""

from __future__ import annotations

import torch

from pyrovae.runtime.distributed.context import current

__all__ = ["map_batches", "per_point", "batch_seed"]

_BATCH_SEED_STRIDE = 1_000_003


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index`` of an evaluation seeded by ``seed``."""
    return seed * _BATCH_SEED_STRIDE + index


def _to(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def map_batches(fn, n: int, batch_size: int, device=None) -> list:
    """``[fn(start, stop, index) for each batch]`` over the ``n`` points in batches of
    ``batch_size`` (batch ``index`` holds points start..stop-1), in order. In a data-parallel
    run each rank calls ``fn`` on its own batches only and the results are gathered (tensors
    travel through the CPU and come back on ``device``, default the CPU). ``fn`` may return
    tensors, arrays, or tuples/lists/dicts of them."""
    context = current()
    mine = context.own_batches(n, batch_size)
    results = [fn(s, min(s + batch_size, n), s // batch_size) for s in mine]
    if not context.active:
        return results
    gathered = context.gather_objects(_to(results, "cpu"), "an evaluation (gathering results)")
    ordered = [None] * len(range(0, n, batch_size))
    for rank, part in enumerate(gathered):
        ordered[rank::context.world] = part
    return _to(ordered, device or "cpu")


def per_point(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``fn(x[start:stop], index)`` -> per-point results [stop - start, ...], joined over all
    points of x [N, ...] in order: [N, ...] (shared out over the ranks as :func:`map_batches`)."""
    parts = map_batches(lambda s, e, i: fn(x[s:e], i), x.shape[0], batch_size, x.device)
    return torch.cat(parts)
