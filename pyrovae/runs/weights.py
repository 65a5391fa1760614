"""Shareable weights: a trained run's model as one safetensors file, with the run's config.toml
(and a model card) beside it, read back without running code.

``pyrovae export RUN --weights DIR/model.safetensors`` (:func:`save_weights`) writes::

    DIR/model.safetensors   tensors: the model's state dict under its own names (parameters and
                            persistent buffers: ``safetensors.torch.load_file`` gives a dict
                            that ``model.load_state_dict`` takes), and the run's global
                            ``pyro.param`` values (``param_store.py``) as "pyro_params/NAME"
                            metadata (str -> str): format = "pyrovae-weights", format_version,
                            pyrovae_version, torch_version, kind, input_shape (JSON list),
                            data_sha256, config (JSON of the run's config), metrics (JSON of
                            metrics.json), pyro_constraints (JSON {name: constraint spec}),
                            pyro_module_params (JSON list)
    DIR/config.toml         the run's config, as in the run folder
    DIR/README.md           the model card (the CLI passes it as ``extra``)

The weights are those the run folder's checkpoint holds (with ``train.ema``: the average, what
``pyrovae.load`` reads), on the CPU. A safetensors file holds tensors and a table of strings
only, so reading one runs no code.

:func:`load_weights` reads such a folder (or the file itself) into the fields of a checkpoint
that rebuilding needs (``"config"`` from config.toml, ``"input_shape"``, ``"model"``,
``"pyro_params"``, ...; no optimizer, epoch or history), which ``pyrovae.load`` turns into a
:class:`~pyrovae.runs.folder.Run` as it does a checkpoint. A truncated or corrupt file, a file
pyrovae did not write, a missing config.toml, or a config.toml whose [model] differs from the
one the weights were saved with is refused in one line.

Needs the optional package safetensors (``pip install 'pyrovae[weights]'``), imported only
here, when weights are written or read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pyrovae._version import __version__
from pyrovae.config import RunConfig, load_config
from pyrovae.runtime.errors import CheckpointError, ConfigError, DeviceError
from pyrovae.runtime.files import atomic_write, writable_dir
from pyrovae.runs.checkpoint import (CHECKPOINT_NAME, check_fields, checkpoint_config,
                                     load_checkpoint, missing_device)
from pyrovae.runs.folder import config_text, foreign_card

FORMAT = "pyrovae-weights"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
#: the tensor names of the global pyro.params: "pyro_params/NAME"
PYRO_PREFIX = "pyro_params/"


def _safetensors():
    """The ``safetensors.torch`` module, or a one-line error naming the pip command."""
    try:
        import safetensors.torch
    except ImportError:
        raise ConfigError("weights files need safetensors: pip install 'pyrovae[weights]'") \
            from None
    return safetensors.torch


# ---- writing ---------------------------------------------------------------------------------


def _source_payload(run) -> dict:
    """The fields of the run folder's checkpoint (or, for a folder of exported weights, of its
    weights file) that the weights file keeps."""
    folder = getattr(run, "path", None)
    if folder is None:
        raise ConfigError("this run has no folder to export: train it with out=DIR (or open "
                          "one with pyrovae.load(DIR)), then export that")
    folder = Path(folder)
    if not (folder / CHECKPOINT_NAME).is_file() and weights_source(folder) is not None:
        return load_weights(folder)
    return load_checkpoint(folder)


def _json_spec(spec):
    """A constraint spec (``param_store.constraint_spec``) with tensors as JSON lists."""
    if isinstance(spec, dict):
        return {k: _json_spec(v) for k, v in spec.items()}
    if isinstance(spec, torch.Tensor):
        return {"tensor": spec.tolist(), "dtype": str(spec.dtype).removeprefix("torch.")}
    return spec


def _spec_from_json(spec):
    """The inverse of :func:`_json_spec`."""
    if isinstance(spec, dict) and set(spec) == {"tensor", "dtype"}:
        dtype = getattr(torch, str(spec["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {spec['dtype']!r}")
        return torch.tensor(spec["tensor"], dtype=dtype)
    if isinstance(spec, dict):
        return {k: _spec_from_json(v) for k, v in spec.items()}
    return spec


def weights_bytes(payload: dict, metrics: dict | None = None) -> bytes:
    """The safetensors file (module docstring) of a checkpoint's ``payload``."""
    st = _safetensors()
    config = checkpoint_config(payload, "the run")
    tensors = {}
    for name, value in payload["model"].items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"the model's state '{name}' is not a tensor "
                              f"({type(value).__name__}), which a safetensors file cannot "
                              f"hold; share the run folder (its checkpoint.pt) instead")
        tensors[name] = value
    for name, value in (payload.get("pyro_params") or {}).items():
        tensors[PYRO_PREFIX + name] = value
    # own contiguous CPU copies: safetensors refuses tensors that share memory (tied weights)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT, "format_version": str(FORMAT_VERSION),
        "pyrovae_version": __version__, "torch_version": torch.__version__,
        "kind": config.model.kind, "input_shape": json.dumps(list(payload["input_shape"])),
        "data_sha256": payload.get("data_sha256") or "",
        "config": json.dumps(config.to_dict()),
        "metrics": json.dumps(metrics or {}),
        "pyro_constraints": json.dumps(_json_spec(payload.get("pyro_constraints") or {})),
        "pyro_module_params": json.dumps(list(payload.get("pyro_module_params") or [])),
    }
    return canonical(st.save(tensors, metadata=metadata))


def canonical(data: bytes) -> bytes:
    """A safetensors file with its JSON header's keys sorted (safetensors writes the metadata
    in a hash map's order, which differs from save to save), so that the same weights always
    make the same bytes (the same sha256 to share). The header stays padded with spaces to a
    multiple of 8 bytes; the tensors' bytes and offsets (relative to the data) are unchanged."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":"))
    header = header.encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data[8 + size:]


def save_weights(run, path: str | Path, force: bool = False,
                 extra: dict[str, str | bytes] | None = None) -> Path:
    """Write the weights of ``run`` (a :class:`~pyrovae.runs.folder.Run` with a folder, e.g.
    ``pyrovae.load(RUN)``) to ``path`` (``*.safetensors``), its config.toml beside it, and
    ``extra`` files (name -> text, e.g. {"README.md": card}) beside it too; returns ``path``.

    Everything is checked before anything is written, so a refusal (one line) writes nothing:
    a file that exists with other contents is refused unless ``force`` (one with the very
    contents is left as it is; a README.md that is not a model card pyrovae wrote, even with
    ``force``), and so is a folder that already holds another ``*.safetensors`` file (a folder
    holds one model). Each file is written atomically, the weights last."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ConfigError(f"--weights '{path}' must end in {SUFFIX} (pyrovae.load finds the "
                          f"weights of a folder by it)")
    if path.is_dir():
        raise ConfigError(f"--weights '{path}' is a folder; give a file name such as "
                          f"{path / ('model' + SUFFIX)}")
    payload = _source_payload(run)
    config = checkpoint_config(payload, run.path)
    files = {"config.toml": config_text(config), **(extra or {})}
    files = {name: text.encode() if isinstance(text, str) else text
             for name, text in files.items()}
    files[path.name] = weights_bytes(payload, getattr(run, "metrics", None))
    folder = path.parent
    if folder.is_dir():
        others = sorted(p.name for p in folder.glob("*" + SUFFIX) if p.name != path.name)
        if others:
            raise CheckpointError(f"'{folder}' already holds the weights {others[0]}; a folder "
                                  f"holds one model's weights: choose another folder")
    clashes = [name for name, data in files.items()
               if (folder / name).exists() and not _same(folder / name, data)]
    yours = [name for name in clashes if foreign_card(folder / name)]
    if yours:  # (not even with force: a README.md that is not a card pyrovae wrote)
        raise CheckpointError(f"'{folder / yours[0]}' is not a pyrovae model card, and export "
                              f"does not replace it; choose another --weights folder")
    if clashes and not force:
        raise CheckpointError(f"'{folder / clashes[0]}' exists; pass --force (force=True) to "
                              f"overwrite it, or choose another --weights path")
    writable_dir(folder, "output folder", "choose another --weights path")
    for name in sorted(files, key=lambda n: n == path.name):  # the weights last
        if not (folder / name).exists() or not _same(folder / name, files[name]):
            atomic_write(folder / name, files[name])
    return path


def _same(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


# ---- reading ---------------------------------------------------------------------------------


def weights_source(path: str | Path) -> Path | None:
    """The weights file that ``pyrovae.load(path)`` reads: ``path`` itself when it is a
    ``*.safetensors`` file, the one ``*.safetensors`` file of a folder without a checkpoint;
    None for anything else (a run folder, a checkpoint). A folder of several is refused."""
    path = Path(path)
    if path.suffix == SUFFIX and not path.is_dir():
        return path
    if not path.is_dir() or (path / CHECKPOINT_NAME).exists():
        return None
    found = sorted(p for p in path.glob("*" + SUFFIX) if p.is_file())
    if len(found) > 1:
        raise CheckpointError(f"'{path}' holds several weights files ({found[0].name}, "
                              f"{found[1].name}); load one of them: pyrovae.load(\"{found[0]}\")")
    return found[0] if found else None


def _metadata_json(meta: dict, key: str, path: Path, default):
    text = meta.get(key)
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        raise CheckpointError(f"'{path}' is damaged or crafted: its metadata '{key}' is not "
                              f"JSON; export it again") from None


def load_weights(path: str | Path, device: str = "cpu") -> dict:
    """Read a weights file (``path``: the file, or the folder holding it and config.toml) into
    the fields of a checkpoint that rebuilding the model needs (module docstring), on
    ``device``; a one-line :class:`CheckpointError` for a missing file or config.toml, a
    truncated or corrupt file, one pyrovae did not write, or a config.toml that is not the
    one the weights were saved with."""
    given = Path(path)
    path = weights_source(given)
    if path is None:
        raise CheckpointError(f"no weights ({SUFFIX}) at '{given}'; export them with: pyrovae "
                              f"export RUN --weights {given / ('model' + SUFFIX)}")
    if not path.is_file():
        raise CheckpointError(f"no weights file '{path}'")
    config_file = path.parent / "config.toml"
    if not config_file.is_file():
        raise CheckpointError(f"'{path}' has no config.toml beside it, which rebuilding the "
                              f"model needs; copy the run's config.toml into '{path.parent}'")
    missing = missing_device(device)
    if missing:
        raise DeviceError(f"cannot load '{path}' on device {str(device)!r}: {missing}; use "
                          f"--device cpu (device=\"cpu\"); the weights were not read")
    _safetensors()  # (the one-line error when it is missing)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except (PermissionError, IsADirectoryError) as err:
        raise CheckpointError(f"cannot read '{path}' ({err.strerror}); fix its permissions") \
            from None
    except MemoryError:
        raise
    except Exception as err:  # safetensors' SafetensorError (a bad header, a short file), ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"'{path}' is truncated or corrupt ({first[:100]}); export the "
                              f"weights again") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a pyrovae weights file (its metadata has no "
                              f"format = \"{FORMAT}\"); write one with: pyrovae export RUN "
                              f"--weights FILE{SUFFIX}")
    version = meta.get("format_version", "")
    if not version.isdigit() or int(version) < 1:
        raise CheckpointError(f"'{path}' is damaged or crafted: its format_version is "
                              f"{version!r:.40}; export the weights again")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has weights format {version}, newer than this pyrovae "
                              f"reads ({FORMAT_VERSION}); upgrade pyrovae")
    config = load_config(config_file)
    saved = _metadata_json(meta, "config", path, None)
    if saved is not None:
        try:
            saved_model = RunConfig.from_dict(saved).model
        except (ConfigError, TypeError, AttributeError):
            saved_model = None
        if saved_model != config.model:
            raise CheckpointError(f"'{config_file}' is not the config '{path.name}' was saved "
                                  f"with (their [model] sections differ); the folder mixes "
                                  f"files of different runs: export the weights again")
    try:
        constraints = _spec_from_json(_metadata_json(meta, "pyro_constraints", path, {}))
    except (ValueError, TypeError, RuntimeError):
        raise CheckpointError(f"'{path}' is damaged or crafted: its metadata "
                              f"'pyro_constraints' is not a table of constraints") from None
    payload = {
        "config": config.to_dict(),
        "input_shape": _metadata_json(meta, "input_shape", path, None),
        "model": {k: v for k, v in tensors.items() if not k.startswith(PYRO_PREFIX)},
        "pyro_params": {k[len(PYRO_PREFIX):]: v for k, v in tensors.items()
                        if k.startswith(PYRO_PREFIX)},
        "pyro_constraints": constraints,
        "pyro_module_params": _metadata_json(meta, "pyro_module_params", path, []),
        "data_sha256": meta.get("data_sha256") or None,
        "pyrovae_version": meta.get("pyrovae_version"),
        "metrics": _metadata_json(meta, "metrics", path, {}),
    }
    if payload["input_shape"] is None:
        raise CheckpointError(f"'{path}' lacks its input_shape; it is incomplete or corrupt")
    if not isinstance(payload["metrics"], dict):
        payload["metrics"] = {}
    check_fields(payload, path)
    if not payload["pyro_params"]:
        for key in ("pyro_params", "pyro_constraints"):
            del payload[key]
    if device != "cpu":
        for key in ("model", "pyro_params"):
            if key in payload:
                payload[key] = {k: v.to(device) for k, v in payload[key].items()}
    return payload
