"""Checks made before any training: data the model can score, resumable configs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..config import RunConfig
from ..data import Dataset
from ..errors import CheckpointError, ConfigError
from ..interface import check_data
from ..limits import check_training

RESUMABLE_CHANGES = ("epochs", "progress", "log_every", "checkpoint_every", "eval_batch_size")


def check_compatible(config: RunConfig, data: Dataset, vae, train_x: torch.Tensor) -> None:
    """Refuse, before any training, data that the model cannot fit (``train_x``: the training
    set as the first epoch sees it), and steps that cannot fit in memory."""
    if config.train.batch_size > data.num_train:
        raise ConfigError(f"train.batch_size = {config.train.batch_size} is larger than the "
                          f"training set ({data.num_train} examples); lower it")
    check_data(vae, train_x, f"{data.name} training data")
    check_data(vae, data.test_data(), f"{data.name} test data")
    check_training(config, data.shape, vae, train_x.device, max(data.num_train, len(data.test_x)))


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


def check_same_data(payload: dict, fingerprint: str | None, where: Path) -> None:
    """Refuse to resume a run onto data other than those its checkpoint was trained on (by the
    sha256 of the tensors, ``data.fingerprint``); a checkpoint without one is not checked."""
    saved = payload.get("data_sha256")
    if saved and fingerprint and saved != fingerprint:
        raise CheckpointError(
            f"cannot resume '{where}': its data changed since the checkpoint was written (sha256 "
            f"of the training and test tensors {saved[:12]}... then, {fingerprint[:12]}... now); "
            f"restore the original data file, or start a new run on the new data")
