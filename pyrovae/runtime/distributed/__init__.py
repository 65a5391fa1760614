"""Data-parallel training and evaluation over ``torch.distributed`` (``torchrun``).

    context.py   who this process is (RANK, WORLD_SIZE, LOCAL_RANK), the process group (gloo
                 on CPU, NCCL on CUDA, a timeout on every collective), shares of a global
                 batch, the gradient all-reduce, the stop flag all ranks agree on
    draws.py     latent draws that do not depend on the number of processes
    points.py    per-point evaluations shared out by batches and gathered in order

Alone (no torchrun, or WORLD_SIZE = 1) every helper is the identity. See docs/distributed.md.
"""

import contextlib

from pyrovae.runtime.distributed.context import Context, SharedStop, current, init, is_writer, launched, local
from pyrovae.runtime.distributed.draws import RankDraws
from pyrovae.runtime.distributed.points import batch_seed, map_batches, per_point

__all__ = ["Context", "SharedStop", "RankDraws", "current", "init", "is_writer", "launched",
           "local", "map_batches", "per_point", "batch_seed", "draws"]


def draws(fn=None):
    """Latent draws that do not depend on the number of processes (:class:`RankDraws`):
    ``draws(guide)`` wraps a program, ``with draws():`` a block; the identity when alone."""
    context = current()
    if not context.active:
        return fn if fn is not None else contextlib.nullcontext()
    handler = RankDraws(context.rank, context.world)
    return handler(fn) if fn is not None else handler
