"""Rebuilding a trained model from its run folder: the kind's builder from the registry, then
the weights from the checkpoint (read with ``weights_only``: no code runs from the file), or
from a folder of exported weights (``weights.py``: safetensors and config.toml).

A run folder is data: the one thing in it that names code, a model you wrote (``model.kind =
"module"``, its ``model.target``), is imported only with the caller's consent
(``trust_module=True``, ``--trust-module``, or ``model=`` the class itself); without it,
:func:`refuse_unimportable` refuses in one line before anything is imported."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import torch

from pyrovae.config import RunConfig, load_config
from pyrovae.runtime.errors import CheckpointError, ConfigError
from pyrovae.runtime.files import read_csv
from pyrovae.runtime.memory import check_model
from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.runs.checkpoint import checkpoint_config, load_checkpoint
from pyrovae.runs.param_store import restore_param_store
from pyrovae.runs.trust import trusting_modules
from pyrovae.runs.weights import load_weights, weights_source
from pyrovae.runs.folder import Run, RunFolderWarning


def make_model(config, input_shape) -> torch.nn.Module:
    """The PyroModule a [model] config describes, built by its registered kind
    (``pyrovae.runtime.registry.MODEL_KINDS``) for data of ``input_shape``; refused in one line when
    its parameters would not fit in memory (``pyrovae.runtime.memory``)."""
    check_model(config, input_shape)
    return MODEL_KINDS.get(config.kind)(config, tuple(int(s) for s in input_shape))


def load(path: str | Path, device: str = "cpu", module: torch.nn.Module | None = None, *,
         model=None, trust_module: bool = False) -> Run:
    """Load a run folder (or a checkpoint file) written by :func:`pyrovae.train`.

    The model is rebuilt from the config by its kind. For ``kind = "module"`` (a model you
    wrote) that means importing ``model.target`` and calling it with ``model.args``, which the
    files of a run folder alone never cause: pass ``trust_module=True`` (as you would trust
    ``trust_remote_code``: only for a run from someone whose code you would run) or
    ``model=``; otherwise a one-line ConfigError names the target and nothing is imported.
    Even then only a ``torch.nn.Module`` subclass is called. ``model=`` gives that model
    yourself: its class (called with the recorded ``args``), or an instance (of the same
    architecture) that the weights are loaded into; it is needed for a class defined in a
    notebook, a script or a function, which nothing can import (``model.target =
    "__main__:MyVAE"``), and refused for a built-in kind or a class of another name.
    ``module=`` (an instance) loads into it unchecked, for any kind. Reads only tensors and
    plain data from the checkpoint (never executes code from the files).

    ``path`` may also be a folder of exported weights (``pyrovae export RUN --weights
    DIR/model.safetensors``: the ``*.safetensors`` file and config.toml, no checkpoint) or the
    weights file itself (``pyrovae.runs.weights``): the model is rebuilt the same way; the
    Run's metrics are those the weights recorded, its history is empty, and it cannot be
    resumed (no optimizer state).
    """
    path = Path(path)
    weights = weights_source(path)
    payload = load_weights(path, device) if weights else load_checkpoint(path, device=device)
    config = checkpoint_config(payload, path)
    run_dir = path if path.is_dir() else path.parent
    saved_config = run_dir / "config.toml"
    if saved_config.is_file() and load_config(saved_config) != config:
        raise CheckpointError(f"'{saved_config}' does not match the checkpoint's config; the "
                              f"folder mixes files of different runs")
    vae = _model_of(config, payload["input_shape"], path, module, model, trust_module)
    try:
        vae.load_state_dict(payload["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        if weights:  # (torch's first line is a heading; the second names the tensor)
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            first = (lines[1] if len(lines) > 1 else first)[:160]
            raise CheckpointError(f"'{weights}' does not fit '{saved_config}' ({first}); the "
                                  f"folder mixes files of different runs: export the weights "
                                  f"again") from None
        raise CheckpointError(f"'{path}' does not fit its own config ({first})") from None
    restore_param_store(payload)  # the run's global pyro.param values, for its model
    vae.to(device).eval()
    # the checkpoint is the source of truth; history.csv and metrics.json are derived from it
    history = payload.get("history")
    if not isinstance(history, list):  # (a checkpoint without it: read history.csv)
        history = _read_history(run_dir / "history.csv")
    metrics = (payload["metrics"] if weights else
               _read_metrics(run_dir / "metrics.json", payload, config, history))
    return Run(vae, config, run_dir, list(history), metrics, payload.get("data_sha256") or None)


def _model_of(config: RunConfig, input_shape, path: Path, module, model,
              trust_module: bool = False) -> torch.nn.Module:
    """The module the checkpoint's weights go into: ``module``, ``model`` (a class or an
    instance, checked against the run), or the one the config describes. A run whose class
    cannot be imported (defined in a notebook, a script or a function), or whose class may not
    be imported without ``trust_module``, is refused in one line that says how to load it."""
    if module is not None and model is not None:
        raise ConfigError("pass model= (the class or an instance) or module=, not both")
    if module is not None:
        return module
    if model is not None:
        check_model(config.model, input_shape)
        return given_model(model, config.model, input_shape, f"run '{path}'")
    with trusting_modules(trust_module):
        refuse_unimportable(config.model, f'pyrovae.load("{path}", model={{name}})',
                            consent=f'pyrovae.load("{path}", trust_module=True), or '
                                    f'model={{name}}')
        return make_model(config.model, input_shape)


def given_model(model, config, input_shape, where: str):
    """The module a caller's ``model=`` (a class or an instance) makes for a run, by the kind's
    registered ``given_model`` (the user-module kind's); refused in one line for a kind that
    pyrovae rebuilds itself."""
    build = MODEL_KINDS.capability(config.kind, "given_model")
    if build is None:
        raise ConfigError(f"model= is for runs of a model you wrote (a kind that is given its "
                          f"class); {where} is a {config.kind!r} run, which pyrovae rebuilds "
                          f"itself: drop model=")
    return build(model, config, input_shape, where)


def refuse_unimportable(config, fix: str, consent: str | None = None) -> None:
    """Before a model is rebuilt from a run folder's config (``load``, ``train(...,
    resume=True)``): raise the kind's one-line refusal when the run's model cannot be imported
    here (registered ``unimportable``: a class from a notebook or a script), or may not be
    without the caller's consent (registered ``consent``: a module class a run folder names,
    imported only with ``trust_module=True`` / ``--trust-module``). ``fix`` is the Python call
    that rebuilds it from the class, ``consent`` the one that consents (default ``fix``),
    ``{name}`` standing for the class name. Nothing is imported here."""
    for capability, how in (("unimportable", fix), ("consent", consent or fix)):
        check = MODEL_KINDS.capability(config.kind, capability)
        refusal = check(config, how) if check is not None else None
        if refusal is not None:
            raise refusal


def _warn(message: str) -> None:
    warnings.warn(message, RunFolderWarning, stacklevel=3)


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        rows = read_csv(path)
        if all(isinstance(row.get("epoch"), int) for row in rows):
            return rows
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        pass
    _warn(f"'{path}' is unreadable or damaged; ignored (the run's history is empty)")
    return []


def _read_metrics(path: Path, payload: dict, config: RunConfig, history: list) -> dict:
    """metrics.json, or (when it is damaged or describes another step than the checkpoint)
    the numbers the checkpoint holds, with a warning; {} for a run that never finished."""
    if not path.is_file():
        return {}
    problem = None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problem = f"is unreadable or damaged ({type(err).__name__})"
    else:
        step = payload.get("step")
        if not isinstance(metrics, dict):
            problem = "is not a JSON object"
        elif step is not None and metrics.get("steps", step) != step:
            problem = (f"describes step {metrics.get('steps')}, but the checkpoint is at step "
                       f"{step}")
        else:
            return metrics
    _warn(f"'{path}' {problem}; using the numbers the checkpoint holds (resume the run with "
          f"`pyrovae train --resume {path.parent}` to rewrite it)")
    return rebuilt_metrics(payload, config, history)


def rebuilt_metrics(payload: dict, config: RunConfig, history: list) -> dict:
    """The part of metrics.json that the checkpoint holds: the last history row's numbers,
    the steps, the training time and the data fingerprint."""
    last = history[-1] if history else {}
    metrics = {key: last[key] for key in ("train_elbo", "test_elbo", "test_log_px_z",
                                          "test_kl", "test_accuracy", "val_accuracy")
               if key in last}
    metrics.update(epochs=config.train.epochs, steps=payload.get("step"),
                   seconds=payload.get("seconds"), rebuilt_from_checkpoint=True)
    if payload.get("data_sha256"):
        metrics["data_sha256"] = payload["data_sha256"]
    return metrics
