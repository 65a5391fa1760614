"""A run folder and the :class:`Run` object that the API returns for it (the layer below
training and the applications: both write and read run folders through it).

    RUN/config.toml          the resolved config (reads back with ``pyrovae.load_config``)
    RUN/checkpoint.pt        model + optimizer state + config (see ``checkpoint.py``)
    RUN/history.csv          one row per epoch
    RUN/metrics.json         final numbers and versions
    RUN/samples.png, RUN/reconstructions.png, RUN/elbo.png
    RUN/README.md            the model card (``pyrovae.reports.model_card``)
    RUN/eval.json, RUN/sample.png, ...   what the commands on the run wrote (RUN_FOLDER)

The checkpoint is the source of truth: history.csv and metrics.json are derived from it (and
``load`` falls back to it when they are damaged).
"""

from __future__ import annotations

import fnmatch
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pyrovae.config import RunConfig, to_toml
from pyrovae.runtime.errors import CheckpointError, DeviceError
from pyrovae.runtime.files import TEMP_PATTERN, WriteError, reason, stale_temp_files, writable_dir
from pyrovae.runs.checkpoint import CHECKPOINT_NAME, missing_device
from pyrovae._moved import renamed

#: the files that make a folder a run (a folder holding any of them is refused without force)
RUN_FILES = ("config.toml", CHECKPOINT_NAME, "metrics.json", "history.csv")
#: the pictures training writes at the end (a model kind may add by_class.png, analogies.png)
REPORT_FILES = ("samples.png", "reconstructions.png", "elbo.png", "by_class.png",
                "analogies.png")

#: the model card that training writes at the end (and ``export --weights`` beside the
#: weights, ``pyrovae.reports.model_card``); it starts with :data:`MODEL_CARD_MARK`, which
#: tells it from a README.md of yours: no pyrovae command replaces or removes one without it
MODEL_CARD = "README.md"
MODEL_CARD_MARK = "<!-- pyrovae model card"

#: everything a run folder may hold, by the command that writes it (names or glob patterns).
#: ``train --force`` removes all of it (and the temporary files of its writes), so nothing of
#: an old run outlives it; a command that writes a new file into the run folder adds it here.
RUN_FOLDER = {
    "train": RUN_FILES + REPORT_FILES + (MODEL_CARD,),
    "evaluate": ("eval.json", "eval_points.csv", "khat.png", "kl_per_dim.png"),
    "export": ("*.nc", "*.safetensors"),
    "sample": ("sample.png", "sample.json", "sample.npy", "by_class.png", "by_class.json"),
    "reconstruct": ("reconstruct.png", "reconstruct.json"),
    "interpolate": ("interpolate.png", "interpolate.json"),
    "traverse": ("traverse.png", "traverse.json"),
    "latent-map": ("latent_map.png", "latent_map.json", "latent_map.csv",
                   "latent_manifold.png"),
    "anomaly": ("anomaly.png", "anomaly.json", "anomaly_scores.csv"),
    "impute": ("impute.png", "impute.json"),
}
RUN_FOLDER_FILES = tuple(dict.fromkeys(name for names in RUN_FOLDER.values() for name in names))

#: a temporary file of another command's write younger than this may still be in use
_TEMP_MAX_AGE = 3600.0


class RunFolderWarning(UserWarning):
    """A derived file of a run folder (metrics.json, history.csv) is damaged and was ignored
    or rebuilt from the checkpoint."""


@dataclass
class Run:
    """A trained (or loaded) model with its config, per-epoch history and final metrics.

    ``model`` (also ``module``; ``vae``, its old name, for one release) is the trained
    PyroModule: a VAE, an SSVAE, or a user's own module. ``data_sha256``: the fingerprint of
    the data it was trained on, as its checkpoint records it (None for a run trained before
    fingerprints, or not read from a folder)."""

    model: torch.nn.Module
    config: RunConfig
    path: Path | None = None
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    data_sha256: str | None = None

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    vae = renamed("model")  # the old name of the trained module, kept for one release

    def __repr__(self):
        elbo = self.metrics.get("test_elbo")
        shown = f", test_elbo={elbo:.2f}" if elbo is not None else ""
        return f"Run(path={str(self.path)!r}{shown})"


def check_run_dir(out: str | Path, force: bool = False) -> Path:
    """Refuse (unless ``force``) an ``out`` that already holds a run, or is not a usable folder.

    Nothing is created or deleted here, so a run that fails its other checks leaves no trace.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out '{out}' is a file, not a folder")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and CHECKPOINT_NAME not in existing and "metrics.json" not in existing \
            and not force:
        raise CheckpointError(f"'{out}' already holds a run that stopped before its first "
                              f"save ({', '.join(existing)}, no checkpoint); pass --force "
                              f"(force=True) to start it again, or choose another --out")
    if existing and not force:
        raise CheckpointError(f"'{out}' already holds a run ({', '.join(existing)}); choose "
                              f"another --out, or pass --force (force=True) to overwrite it")
    return out


def missing_folders(out: str | Path) -> list[Path]:
    """The folders that creating ``out`` would make: ``out`` and its missing parents, deepest
    first ([] when ``out`` exists)."""
    missing = []
    folder = Path(out).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def discard_unsaved_run(out: str | Path, created: list[Path]) -> bool:
    """After a training call failed: if ``out`` holds no checkpoint (nothing to resume), take
    back what the call wrote there, so no half-made run folder is left to refuse the next
    ``train`` without ``--force``. ``created`` (:func:`missing_folders`, taken before the call
    made anything): the folders the call made, which are removed whole (their parents only when
    empty); a folder that existed before keeps everything but training's own files
    (config.toml, history.csv, ... and their temporary files). A folder with a checkpoint is
    never touched. Best effort; returns whether ``out`` was taken back."""
    out = Path(out)
    if not out.is_dir() or (out / CHECKPOINT_NAME).exists():
        return False
    if created and created[0] == out.absolute():
        shutil.rmtree(out, ignore_errors=True)
        for folder in created[1:]:  # the parents this call made, while they are empty
            try:
                folder.rmdir()
            except OSError:
                break
        return not out.exists()
    clean_temp_files(out)
    for name in RUN_FOLDER["train"]:
        path = out / name
        try:
            if path.is_file() and not path.is_symlink() and not foreign_card(path):
                path.unlink()
        except OSError:
            pass
    return True


def create_run_dir(out: Path, force: bool = False) -> Path:
    """Make ``out`` (checked by :func:`check_run_dir`) ready to write: create it, prove it is
    writable, remove stale temporary files, and with ``force`` remove everything the old run
    and the commands on it wrote (:data:`RUN_FOLDER`) so none of it outlives it."""
    try:
        writable_dir(out, "run folder", "choose another --out")
    except WriteError as err:  # (the error train() has always raised for it)
        raise CheckpointError(str(err)) from None
    clean_temp_files(out, everything=force)
    if force:
        for path in sorted(out.iterdir()):
            if any(fnmatch.fnmatchcase(path.name, p) for p in RUN_FOLDER_FILES) \
                    and path.is_file() and not path.is_symlink() and not foreign_card(path):
                try:
                    path.unlink()
                except OSError as err:
                    raise WriteError(f"could not remove '{path}' of the old run "
                                     f"({reason(err)}); fix the folder's permissions or "
                                     f"choose another --out", path, err) from None
    return out


def is_model_card(path: str | Path) -> bool:
    """Whether ``path`` is a model card pyrovae wrote (:data:`MODEL_CARD_MARK` in its first
    lines), not a README.md of yours."""
    try:
        with open(path, "rb") as fh:
            return MODEL_CARD_MARK.encode() in fh.read(4096)
    except OSError:
        return False


def foreign_card(path: Path) -> bool:
    """A README.md in a run folder that pyrovae did not write (kept by ``--force``)."""
    return path.name == MODEL_CARD and not is_model_card(path)


def clean_temp_files(out: Path, everything: bool = False) -> list[Path]:
    """Remove the temporary files that writes into the run folder ``out`` left behind when
    their process was killed (``.NAME.XXXXXXXX.tmp``, see ``files.atomic_write``; nothing
    else): those of training's own files always (one training process owns the folder), those
    of the commands' files when ``everything`` or when older than an hour (a command may be
    writing one right now). Best effort: a file that cannot be removed is left. Returns the
    files removed."""
    train_files = RUN_FOLDER["train"]
    removed = []
    for path in stale_temp_files(out, RUN_FOLDER_FILES):
        name = TEMP_PATTERN.match(path.name)["name"]
        try:
            if everything or any(fnmatch.fnmatchcase(name, p) for p in train_files) \
                    or time.time() - path.stat().st_mtime > _TEMP_MAX_AGE:
                path.unlink()
                removed.append(path)
        except OSError:
            pass
    return removed


def config_text(config: RunConfig) -> str:
    return "# pyrovae run config (resolved: every key, defaults included)\n" + to_toml(config)


def describe_device(device: str) -> torch.device:
    """The torch device for ``device``, or a clear error when this machine lacks it (the same
    check as loading a checkpoint, :func:`checkpoint.missing_device`)."""
    missing = missing_device(device)
    if missing:
        raise DeviceError(f"device = \"{device}\" but {missing}; set [train] device = \"cpu\" "
                          f"(or --set device=cpu)")
    return torch.device(device)
