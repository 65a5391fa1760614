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

``load_checkpoint`` checks every field it knows before anything uses it (:func:`check_fields`):
a crafted or damaged file whose ``input_shape`` is not a list of positive ints, whose
``epoch``/``batch``/``step`` is not a non-negative int, whose ``history`` is not a list of
tables, ... is refused in one line naming the field. A run folder that holds its config.toml
but no checkpoint yet (training killed before its first save) is refused in one line that says
how to start it again, a folder of exported weights (``weights.py``) in one line that says it
cannot be resumed (:func:`unsaved_run_error`).
"""

from __future__ import annotations

import io
import math
import re
import pickle
import zipfile
from pathlib import Path

import torch

from pyrovae._version import __version__
from pyrovae.config import RunConfig
from pyrovae.runtime.errors import CheckpointError, ConfigError, DeviceError
from pyrovae.runtime.files import atomic_write, reason

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


def unsaved_run_error(folder: str | Path) -> CheckpointError | None:
    """The one-line error for a run folder that holds its config.toml but no checkpoint yet
    (training stopped, e.g. killed, before its first save: nothing to resume or read), None
    for any other folder."""
    folder = Path(folder)
    if (folder / CHECKPOINT_NAME).exists() or not (folder / "config.toml").is_file():
        return None
    exported = sorted(folder.glob("*.safetensors"))
    if exported:  # (pyrovae.runs.weights: weights without an optimizer's state)
        return CheckpointError(f"'{folder}' holds exported weights ({exported[0].name}), not a "
                               f"training checkpoint: there is no optimizer state to resume; "
                               f"train anew with: pyrovae train {folder / 'config.toml'} "
                               f"--out NEW_RUN")
    return CheckpointError(f"'{folder}' has no checkpoint yet (training stopped before its "
                           f"first save); start it again with: pyrovae train "
                           f"{folder / 'config.toml'} --out {folder} --force")


def checkpoint_config(payload: dict, where) -> RunConfig:
    """The :class:`RunConfig` a checkpoint's payload holds, or a one-line CheckpointError
    naming ``where`` (the run folder or file)."""
    try:
        return RunConfig.from_dict(payload["config"])
    except ConfigError as err:
        raise CheckpointError(f"'{where}' holds an invalid config: {err}") from None


def load_checkpoint(path: str | Path, device="cpu") -> dict:
    """Read and check a checkpoint file; raise :class:`CheckpointError` if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        unsaved = unsaved_run_error(path.parent) if path.name == CHECKPOINT_NAME else None
        if unsaved is not None:
            raise unsaved
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
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"'{path}' is damaged or crafted: its 'format_version' is not a "
                              f"positive integer (got {version!r:.60}); use an earlier "
                              f"checkpoint or retrain")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has checkpoint format {version}, newer than this "
                              f"pyrovae reads ({FORMAT_VERSION}); upgrade pyrovae")
    for key in ("config", "input_shape", "model"):
        if key not in payload:
            raise CheckpointError(f"'{path}' lacks '{key}'; it is incomplete or corrupt")
    check_fields(payload, path)
    return payload


#: the fields that continuing a run (``resume=True``) needs beyond those every checkpoint has
RESUME_FIELDS = ("optimizer", "epoch", "batch", "step", "loss_sum", "seconds", "history", "rng")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _tensor_dict(value) -> bool:
    """A state dict: names -> tensors (a module's extra state, ``*_extra_state``, any data)."""
    return isinstance(value, dict) and all(
        isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))
        for k, v in value.items())


def _problem(key: str, value) -> str | None:
    """What is wrong with the checkpoint field ``key`` holding ``value`` (None: nothing, or a
    field this check does not know)."""
    if key == "config":
        return None if isinstance(value, dict) else "is not a table"
    if key == "input_shape":
        if not isinstance(value, (list, tuple)) or not value or len(value) > 8:
            return "is not a list of 1 to 8 sizes"
        if not all(_is_int(v) and v > 0 for v in value):
            return "is not a list of positive integers"
        return None
    if key in ("model", "train_model", "pyro_params", "train_pyro_params"):
        return None if _tensor_dict(value) else "is not a table of named tensors"
    if key == "optimizer":
        ok = (isinstance(value, dict) and isinstance(value.get("state", {}), dict)
              and isinstance(value.get("param_groups", []), list)
              and all(isinstance(g, dict) for g in value.get("param_groups", [])))
        return None if ok else "is not an optimizer state"
    if key == "epoch":  # the epoch to run next, 1-based
        return None if _is_int(value) and value >= 1 else "is not a positive integer"
    if key in ("batch", "step"):
        return None if _is_int(value) and value >= 0 else "is not a non-negative integer"
    if key == "seconds":
        return None if _is_number(value) and value >= 0 else "is not a non-negative number"
    if key == "loss_sum":
        ok = isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point()
        return None if ok else "is not a one-number tensor"
    if key == "history":
        ok = isinstance(value, list) and all(
            isinstance(row, dict) and all(isinstance(k, str) and (
                v is None or isinstance(v, (int, float, str))) for k, v in row.items())
            for row in value)
        return None if ok else "is not a list of tables (one per epoch)"
    if key in ("rng", "pyro_constraints"):
        return None if isinstance(value, dict) else "is not a table"
    if key == "pyro_module_params":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "is not a list of names"
    if key in ("data_sha256", "pyrovae_version"):
        return None if value is None or isinstance(value, str) else "is not a string"
    return None


def check_fields(payload: dict, path: str | Path = "the checkpoint") -> None:
    """Refuse, in one line naming the field, a checkpoint whose fields have the wrong type,
    sign or integrality (a crafted or damaged file): ``input_shape`` a list of positive ints,
    ``epoch``/``batch``/``step`` non-negative ints, ``history`` a list of tables, ``config``
    a table, the weights tables of tensors, ... (fields that are absent are not checked
    here)."""
    for key, value in payload.items():
        problem = _problem(key, value)
        if problem is not None:
            plain = not isinstance(value, (dict, list, tuple, torch.Tensor)) or (
                isinstance(value, (list, tuple)) and len(value) <= 8
                and all(isinstance(v, (int, float, str)) for v in value))
            shown = repr(value) if plain else type(value).__name__
            raise CheckpointError(f"'{path}' is damaged or crafted: its '{key}' {problem} "
                                  f"(got {shown[:60]}); use an earlier checkpoint or retrain")
