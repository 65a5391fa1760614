"""Checkpoints: model and optimizer state with the run's config, loaded without running code.

A checkpoint is one file written by ``torch.save`` holding only tensors, numbers, strings and
containers of them, and read back with ``torch.load(weights_only=True)``, whose restricted
unpickler refuses anything else, so a crafted checkpoint cannot execute code on load::

    {"format": "pyrovae-checkpoint", "format_version": 1, "pyrovae_version": str,
     "config": RunConfig.to_dict(), "input_shape": [..], "model": state_dict,
     "optimizer": state_dict, "epoch": int, "batch": int, "step": int, "loss_sum": tensor,
     "seconds": float, "history": [row, ...], "rng": {...}, "data_sha256": str}

``epoch`` is the epoch to run next (1-based) and ``batch`` how many of its minibatches are
done; ``step`` counts all steps so far; ``rng`` is ``state.capture_rng()``; ``data_sha256``
is ``data.fingerprint.data_fingerprint`` of the data trained on (absent in checkpoints written
before it existed; optional, so the format version stays 1). A run whose model or guide has
global ``pyro.param`` sites also holds "pyro_params", "pyro_constraints" and (with
``train.ema``) "train_pyro_params" (``param_store.py``); reading such a checkpoint puts its
"pyro_params" into Pyro's param store (as ``ParamStoreDict.load`` does), so a model rebuilt
from it runs with the trained values.
"""

from __future__ import annotations

import io
import re
import pickle
import zipfile
from pathlib import Path

import torch

from .._version import __version__
from ..errors import CheckpointError, DeviceError
from ..files import atomic_write, reason

FORMAT = "pyrovae-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Atomically write ``payload`` (see module docstring) to ``path``."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION,
                "pyrovae_version": __version__, **payload}, buf)
    atomic_write(path, buf.getvalue())


def missing_device(device) -> str | None:
    """Why this machine has no ``device`` to hold tensors (a run's, a checkpoint's), or None."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        return "not a device torch knows (use cpu or cuda)"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "this machine has no usable CUDA GPU"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA GPU(s)"
    return None


def load_checkpoint(path: str | Path, device="cpu") -> dict:
    """Read and check a checkpoint file; raise :class:`CheckpointError` if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}': is this a pyrovae run folder?")
    missing = missing_device(device)
    if missing:  # a device error, never reported as a damaged checkpoint
        raise DeviceError(f"cannot load '{path}' on device {str(device)!r}: {missing}; use "
                          f"--device cpu (device=\"cpu\"); the checkpoint was not read")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # torch's bold escapes
        first = text.splitlines()[0] if text else type(err).__name__
        raise CheckpointError(f"refusing to load '{path}': it holds objects other than tensors "
                              f"and plain data, which could run code ({first[:120]})") from None
    except (PermissionError, IsADirectoryError) as err:  # unreadable is not corrupt
        raise CheckpointError(f"cannot read '{path}' ({reason(err)}); fix its permissions") \
            from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        if isinstance(err, RuntimeError) and re.search(r"\bCUDA\b|\bdevice\b", str(err)):
            first = str(err).strip().splitlines()[0] if str(err).strip() else "device error"
            raise DeviceError(f"cannot load '{path}' on device {str(device)!r} ({first[:120]}); "
                              f"use --device cpu (device=\"cpu\")") from None
        raise CheckpointError(f"'{path}' is truncated or corrupt ({type(err).__name__}); use an "
                              f"earlier checkpoint or retrain") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a pyrovae checkpoint")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has checkpoint format {version}, newer than this "
                              f"pyrovae reads ({FORMAT_VERSION}); upgrade pyrovae")
    for key in ("config", "input_shape", "model"):
        if key not in payload:
            raise CheckpointError(f"'{path}' lacks '{key}'; it is incomplete or corrupt")
    return payload
