"""Run folders: the :class:`Run` object, checkpoints, and loading a trained model back.

    folder.py      Run, checking and creating run folders, the config text
    checkpoint.py  one checkpoint format: atomic writes, loading that runs no code
    load.py        load(RUN): the model rebuilt by its registered kind, then its weights
    weights.py     the shareable export: model.safetensors + config.toml (+ the model card)

This layer sits below training (which writes run folders) and the applications (which read
them); it knows no model kind.
"""

from pyrovae.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from pyrovae.runs.folder import (REPORT_FILES, RUN_FILES, Run, check_run_dir, config_text, create_run_dir,
                     describe_device)
from pyrovae.runs.load import load, make_model

__all__ = ["Run", "load", "make_model", "load_checkpoint", "save_checkpoint",
           "CHECKPOINT_NAME", "RUN_FILES", "REPORT_FILES", "check_run_dir", "create_run_dir",
           "config_text", "describe_device"]
