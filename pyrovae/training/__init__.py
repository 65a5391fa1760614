"""Training: ``train()`` (train.py) above the SVI loop (trainer.py, which knows no model
kind); checks before training (checks.py), the model/guide callables (programs.py), guards
against NaN and signals (guards.py), a user's module that fails, in one line naming it and
where (failures.py), the run's pictures (reports.py). Run folders and
checkpoints live in ``pyrovae.runs`` below it (re-exported here for convenience)."""

from pyrovae.runs import Run, load, load_checkpoint, save_checkpoint
from pyrovae.training.failures import ModuleFailed
from pyrovae.training.train import train

__all__ = ["Run", "load", "load_checkpoint", "save_checkpoint", "train", "ModuleFailed"]
