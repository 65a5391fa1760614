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

from pyrovae.config.sections import LR_SCHEDULES


def lr_at(schedule: str, lr: float, lr_min: float, step: int, total_steps: int) -> float:
    """lr_t of ``schedule`` at ``step`` of a run of ``total_steps`` steps."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        frac = min(step / max(total_steps, 1), 1.0)
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"unknown lr_schedule {schedule!r}; one of {', '.join(LR_SCHEDULES)}")
