"""The optimizer of a run: one Adam over every parameter of the module."""

from __future__ import annotations

import torch


def make_adam(params, lr: float, fused: bool) -> torch.optim.Adam:
    """One Adam over all parameters; ``fused`` uses the single-kernel implementation (about
    4x faster per step on a CPU than the per-tensor loop), falling back to ``foreach``."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError):  # an older torch or a device without fused kernels
            return torch.optim.Adam(params, lr=lr, foreach=True)
    return torch.optim.Adam(params, lr=lr)
