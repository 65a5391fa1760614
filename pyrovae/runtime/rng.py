"""Random-number helpers: seeding a run and drawing numbers without disturbing it."""

from __future__ import annotations

import contextlib

import pyro
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators."""
    pyro.set_rng_seed(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block with torch's generators seeded to ``seed``, restoring their state after.

    Evaluation and pictures use this, so they are repeatable and do not shift the random
    stream of the training run around them.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
