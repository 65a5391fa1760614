"""Training: the SVI loop, run folders and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .run import Run, load
from .trainer import train

__all__ = ["Run", "load", "load_checkpoint", "save_checkpoint", "train"]
