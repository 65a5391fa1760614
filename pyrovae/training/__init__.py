"""Training: the SVI loop (``trainer.py``), ``train()`` above it; run folders and checkpoints
live in ``pyrovae.runs`` below it (re-exported here for convenience)."""

from ..runs import Run, load, load_checkpoint, save_checkpoint
from .trainer import train

__all__ = ["Run", "load", "load_checkpoint", "save_checkpoint", "train"]
