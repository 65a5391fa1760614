"""Training: the SVI loop (trainer.py, which knows no model kind and calls out through the
callbacks of callbacks.py for its evaluation, TensorBoard and reports); checks before
training (checks.py), the model/guide callables (programs.py), guards against NaN and
signals (guards.py), a user's module that fails, in one line naming it and where
(failures.py), the loop's metrics (metrics.py). ``train()`` sits above the loop, in
``pyrovae.api``, which also sets ``pyrovae.training.train`` to it (for one release; this
package does not import the layer above it). Run folders
and checkpoints live in ``pyrovae.runs`` below it (re-exported here for convenience)."""

from pyrovae.runs import Run, load, load_checkpoint, save_checkpoint
from pyrovae.training.failures import ModuleFailed

__all__ = ["Run", "load", "load_checkpoint", "save_checkpoint", "train", "ModuleFailed"]

