"""Running a VAE's guide and model together, for evaluation and diagnostics."""

from __future__ import annotations

import contextlib

import pyro
import torch
from pyro import poutine


@torch.no_grad()
def paired_traces(vae, x: torch.Tensor):
    """(guide trace, model trace) for x [B, D], the model replaying the guide's draw of z.

    Pyro's argument validation is off. Run inside a ``pyro.plate`` to draw several z per row.
    """
    with pyro.validation_enabled(False):
        guide = poutine.trace(vae.guide).get_trace(x)
        model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    return guide, model


@contextlib.contextmanager
def eval_mode(module):
    """``module.eval()`` for the block, restoring its training flag after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
