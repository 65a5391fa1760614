"""Experiment tracking of a training run (``train.tracking = "mlflow"`` or ``"wandb"``,
docs/tracking.md): the choice of backend, and the board that fans the Trainer's per-step and
per-epoch calls out to TensorBoard and the tracker.

``pyrovae.api`` imports this module only when a run chooses tracking; what a run logs is in
``pyrovae.integrations.tracker``. The backend's package is imported when the Trainer is
built, so a missing one is refused in one line before anything trains or is written. Only the
process that writes the run folder tracks (rank 0 under ``torch.distributed``); a run without
a folder (``out=None``) tracks nothing, with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from pyrovae.integrations.tracker import Tracker
from pyrovae.reports.tensorboard import secondary_rank
from pyrovae.runtime.errors import ConfigError


def tracker_class(name: str) -> type[Tracker]:
    """The tracker of ``train.tracking = name`` (its module imports no optional package)."""
    if name == "mlflow":
        from pyrovae.integrations.mlflow_tracking import MLflowTracker
        return MLflowTracker
    if name == "wandb":
        from pyrovae.integrations.wandb_tracking import WandbTracker
        return WandbTracker
    raise ConfigError(f"train.tracking = {name!r} is not one of: none, mlflow, wandb")


def check_tracking(train) -> None:
    """Refuse, in one line, a ``train.tracking`` whose package is missing (``train``: a
    TrainConfig); nothing is done for ``"none"``."""
    if train.tracking != "none":
        tracker_class(train.tracking).check(train)


def make_tracker(config, out_dir: Path | None) -> Tracker | None:
    """The tracker of ``config.train.tracking`` for the run in ``out_dir`` (None: no
    tracking, another rank, or no run folder); a missing package is refused here."""
    train = config.train
    if train.tracking == "none" or secondary_rank():
        return None
    cls = tracker_class(train.tracking)
    cls.check(train)
    if out_dir is None:
        warnings.warn(f"train.tracking = '{train.tracking}' but the run has no folder "
                      f"(out=None): nothing is tracked", stacklevel=3)
        return None
    return cls(config, Path(out_dir))


class Boards:
    """The Trainer's per-step/epoch writer made of several (TensorBoard and a tracker)."""

    def __init__(self, *boards):
        self.boards = boards

    def step(self, trainer, loss) -> None:
        for board in self.boards:
            board.step(trainer, loss)

    def epoch(self, trainer, row: dict) -> None:
        for board in self.boards:
            board.epoch(trainer, row)

    def flush(self) -> None:
        for board in self.boards:
            board.flush()

    def close(self) -> None:
        for board in self.boards:
            board.close()
