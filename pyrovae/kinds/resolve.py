"""What a training entry point was given, resolved into one :class:`RunConfig`: a model config
of any registered kind (with the data's source as ``[data]``), a whole RunConfig, or a user's
``PyroModule`` (recorded by import path and arguments: :func:`module_config`), with ``train``
keyword overrides. ``pyrovae.train`` and the Lightning module both start here.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from pyrovae.config import DataConfig, RunConfig, TrainConfig
from pyrovae.kinds.module.model import module_config
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import MODEL_KINDS


def resolve_config(config, data, overrides: dict, strict: bool = True,
                   caller: str = "train()") -> RunConfig:
    """A RunConfig from a model config (of any registered kind), a whole run config, or a
    user's module (see :func:`module_config`; ``strict=False`` for a run without a folder,
    whose module nothing rebuilds), with ``train`` keyword ``overrides``; ``data`` is the
    :class:`pyrovae.data.Dataset` it trains on (its source becomes ``[data]``). ``caller``
    names the entry point in the one-line refusals."""
    if isinstance(config, torch.nn.Module):
        config = module_config(config, strict=strict)
    if type(config) in set(MODEL_KINDS.capability(k, "config") for k in MODEL_KINDS):
        source = data.source or DataConfig(name=data.name, binarize=data.binarize, seed=data.seed)
        config = RunConfig(model=config, data=source)
    elif not isinstance(config, RunConfig):
        raise ConfigError(f"{caller} needs a model config (e.g. VAEConfig), a RunConfig or a "
                          f"PyroModule with model and guide, got {type(config).__name__}")
    if overrides:
        fields = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"unknown {caller} option '{unknown[0]}' (valid: "
                              f"{', '.join(sorted(fields))})")
        config = replace(config, train=replace(config.train, **overrides))
    return config
