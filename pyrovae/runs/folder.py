"""A run folder and the :class:`Run` object that the API returns for it (the layer below
training and the applications: both write and read run folders through it).

    RUN/config.toml          the resolved config (reads back with ``pyrovae.load_config``)
    RUN/checkpoint.pt        model + optimizer state + config (see ``checkpoint.py``)
    RUN/history.csv          one row per epoch
    RUN/metrics.json         final numbers and versions
    RUN/samples.png, RUN/reconstructions.png, RUN/elbo.png
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import RunConfig, to_toml
from ..errors import CheckpointError, DeviceError
from .checkpoint import CHECKPOINT_NAME

RUN_FILES = ("config.toml", CHECKPOINT_NAME, "metrics.json", "history.csv")


@dataclass
class Run:
    """A trained (or loaded) model with its config, per-epoch history and final metrics.

    ``vae`` (also ``module``) is the PyroModule: a VAE, an SSVAE, or a user's own module."""

    vae: torch.nn.Module
    config: RunConfig
    path: Path | None = None
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    @property
    def module(self) -> torch.nn.Module:
        return self.vae

    def __repr__(self):
        elbo = self.metrics.get("test_elbo")
        shown = f", test_elbo={elbo:.2f}" if elbo is not None else ""
        return f"Run(path={str(self.path)!r}{shown})"


REPORT_FILES = ("samples.png", "reconstructions.png", "elbo.png")


def check_run_dir(out: str | Path, force: bool = False) -> Path:
    """Refuse (unless ``force``) an ``out`` that already holds a run, or is not a usable folder.

    Nothing is created or deleted here, so a run that fails its other checks leaves no trace.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out '{out}' is a file, not a folder")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not force:
        raise CheckpointError(f"'{out}' already holds a run ({', '.join(existing)}); choose "
                              f"another --out, or pass --force (force=True) to overwrite it")
    return out


def create_run_dir(out: Path, force: bool = False) -> Path:
    """Make ``out`` (checked by :func:`check_run_dir`) ready to write: create it, prove it is
    writable, and with ``force`` remove the old run's files so none outlive it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise CheckpointError(f"cannot write to run folder '{out}': {err.strerror}; choose "
                              f"another --out") from None
    if force:
        for name in RUN_FILES + REPORT_FILES:
            (out / name).unlink(missing_ok=True)
    return out


def config_text(config: RunConfig) -> str:
    return "# pyrovae run config (resolved: every key, defaults included)\n" + to_toml(config)


def describe_device(device: str) -> torch.device:
    """The torch device for ``device``, or a clear error when this machine lacks it."""
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device = \"cuda\" but this machine has no usable CUDA GPU; set "
                          "[train] device = \"cpu\" (or --set device=cpu)")
    return torch.device(device)
