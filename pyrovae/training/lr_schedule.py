"""The learning rate over a run's steps (``train.lr_schedule``).

For step t = 0 .. T-1 of a run of T = epochs * steps_per_epoch steps, base rate lr and floor
lr_min::

    constant   lr_t = lr
    cosine     lr_t = lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2     (lr at t = 0, -> lr_min)

The rate is a function of the step alone, so a resumed run takes exactly the rates of an
uninterrupted one; resuming with more epochs stretches the cosine over the new T.
"""

from __future__ import annotations

import math

from pyrovae.runtime.registry import LR_SCHEDULES


@LR_SCHEDULES.register("constant")
def constant(lr: float, lr_min: float, step: int, total_steps: int) -> float:
    """lr_t = lr."""
    return lr


@LR_SCHEDULES.register("cosine")
def cosine(lr: float, lr_min: float, step: int, total_steps: int) -> float:
    """lr_t = lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2."""
    frac = min(step / max(total_steps, 1), 1.0)
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * frac))


def lr_at(schedule: str, lr: float, lr_min: float, step: int, total_steps: int) -> float:
    """lr_t of ``schedule`` (a name registered in LR_SCHEDULES) at ``step`` of a run of
    ``total_steps`` steps."""
    return LR_SCHEDULES.get(schedule)(lr, lr_min, step, total_steps)
