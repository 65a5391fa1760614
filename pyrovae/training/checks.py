"""Checks made before any training: data the model can score, resumable configs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..config import RunConfig
from ..data import Dataset
from ..errors import CheckpointError, ConfigError
from ..interface import check_data

RESUMABLE_CHANGES = ("epochs", "progress", "log_every", "checkpoint_every", "eval_batch_size")


def check_compatible(config: RunConfig, data: Dataset, vae, train_x: torch.Tensor) -> None:
    """Refuse, before any training, data that the model cannot fit (``train_x``: the training
    set as the first epoch sees it)."""
    if config.train.batch_size > data.num_train:
        raise ConfigError(f"train.batch_size = {config.train.batch_size} is larger than the "
                          f"training set ({data.num_train} examples); lower it")
    check_data(vae, train_x, f"{data.name} training data")
    check_data(vae, data.test_data(), f"{data.name} test data")


def check_resumable(saved: RunConfig, wanted: RunConfig, where: Path) -> RunConfig:
    """The saved config with the few train keys that may change on resume taken from ``wanted``."""
    for section in ("model", "data", "train"):
        a, b = getattr(saved, section), getattr(wanted, section)
        for key in a.__dataclass_fields__:
            if getattr(a, key) != getattr(b, key) and not (section == "train"
                                                           and key in RESUMABLE_CHANGES):
                raise CheckpointError(
                    f"cannot resume '{where}': its checkpoint was made with {section}.{key} = "
                    f"{getattr(a, key)!r}, not {getattr(b, key)!r}; only train."
                    f"{{{','.join(RESUMABLE_CHANGES)}}} may change (or start a new run)")
    if wanted.train.epochs < saved.train.epochs:
        raise CheckpointError(f"cannot resume '{where}' with fewer epochs ({wanted.train.epochs})"
                              f" than it was started with ({saved.train.epochs})")
    return replace(saved, train=wanted.train)
