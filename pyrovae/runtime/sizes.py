"""Sizes of modules before they are built: what the memory checks (``memory.py``) ask of each
kind and component.

    meta_count(build)       numbers of the module ``build()`` makes, built on the meta device:
                            shapes only, nothing allocated, torch's random state untouched;
                            exact for any module whose constructor needs no tensor's values
    made_count(sizes, L)    a MADE network (masked linear layers between ``sizes``), for the
                            flows whose Pyro constructor reads values (``.item()``) and so
                            cannot be built on the meta device

``buffers=True`` counts the buffers too (masks, index tables): the numbers a model holds in
memory, where ``buffers=False`` is ``sum(p.numel() for p in module.parameters())``.
"""

from __future__ import annotations

from typing import Callable

import torch


def module_count(module: torch.nn.Module, buffers: bool = False, skip=()) -> int:
    """sum numel of ``module``'s parameters (and buffers), leaving out those of ``skip``."""
    seen = {id(t) for m in skip for t in [*m.parameters(), *m.buffers()]}
    tensors = [*module.parameters(), *(module.buffers() if buffers else ())]
    return sum(t.numel() for t in tensors if id(t) not in seen)


def on_meta(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` under ``torch.device("meta")``: tensors with shapes and no data (factory
    calls draw nothing from torch's generator, whose state is restored anyway)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return build()


def meta_count(build: Callable[[], torch.nn.Module], buffers: bool = False) -> int:
    """Parameters (and buffers) of ``build()``, built on the meta device."""
    return module_count(on_meta(build), buffers)


def made_count(sizes, latent_dim: int, buffers: bool = False) -> int:
    """A MADE on layer sizes [L (+ context), *hidden, P]: sum_i (a_i b_i + b_i) weights and
    biases, plus sum_i a_i b_i masks and the L-long permutation with ``buffers``."""
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    n = weights + sum(sizes[1:])
    return n + (weights + latent_dim if buffers else 0)
