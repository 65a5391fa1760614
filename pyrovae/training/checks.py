"""Checks made before any training: data the model can score, resumable configs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from pyro import poutine

from pyrovae.config import RunConfig
from pyrovae.data import Dataset
from pyrovae.runtime.errors import CheckpointError, ConfigError
from pyrovae.runtime.traces import eval_mode
from pyrovae.runtime.interface import DATA_PLATE, InterfaceError, check_data
from pyrovae.runtime.memory import check_training
from pyrovae.runtime.rng import seeded
from pyrovae.training.programs import bind_programs

RESUMABLE_CHANGES = ("epochs", "progress", "log_every", "checkpoint_every", "eval_batch_size",
                     "tensorboard", "tracking", "tracking_uri", "experiment")
# (TensorBoard events and experiment tracking change no number of the run)


def check_compatible(config: RunConfig, data: Dataset, vae, train_x: torch.Tensor) -> None:
    """Refuse, before any training, data that the model cannot fit (``train_x``: the training
    set as the first epoch sees it), and steps that cannot fit in memory."""
    if config.train.batch_size > data.num_train:
        raise ConfigError(f"train.batch_size = {config.train.batch_size} is larger than the "
                          f"training set ({data.num_train} examples); lower it")
    check_data(vae, train_x, f"{data.name} training data")
    check_data(vae, data.test_data(), f"{data.name} test data")
    check_training(config, data.shape, vae, train_x.device, max(data.num_train, len(data.test_x)))


def check_data_plate(vae, x: torch.Tensor, n_data: int) -> None:
    """Run the guide, then the model on the guide's draws, once on the rows ``x`` as training
    calls them (``n_data`` = N, the size of the training set), outside the run's random stream:
    a data plate of size N that does not take the rows of x as its subsample is refused in one
    line here, rather than by Pyro's shape error at the first step. (Without ``n_data`` the
    trainer's own check runs the programs, so a plate of size B passes it.)"""
    model, guide = bind_programs(vae)
    try:
        with seeded(0), eval_mode(vae), torch.no_grad():
            drawn = poutine.trace(guide).get_trace(x, n_data=n_data)
            poutine.trace(poutine.replay(model, trace=drawn)).get_trace(x, n_data=n_data)
    except ValueError as err:
        first = str(err).strip().splitlines()[0]
        if f"inside plate('{DATA_PLATE}')" not in first:
            raise
        raise InterfaceError(
            f"the plate named '{DATA_PLATE}' does not take the batch's rows as its subsample "
            f"({first}): training passes n_data = {n_data}, the size of the training set, "
            f"with a batch of B rows; write pyro.plate(\"{DATA_PLATE}\", n_data or B, "
            f"subsample=torch.arange(B)) with B = x.shape[0] (docs/custom_models.md)") from None


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
