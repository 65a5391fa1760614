"""Configuration: the dataclasses of a run (``sections.py``), how their fields are coerced and
validated (``fields.py``), and config files and ``--set`` edits (``files.py``).

    [model]   the kind's config (VAEConfig, ...)   [data] DataConfig   [train] TrainConfig
    RunConfig = the three; load_config(path, ["key=value", ...]) reads a TOML file.

Each model kind's [model] dataclass lives with the kind (``pyrovae/kinds/<kind>/config.py``)
and is registered in ``MODEL_KINDS``; ``pyrovae.config.VAEConfig`` (and SSVAEConfig,
ModuleConfig, HVAEConfig, CVAEConfig) are read from the registry, so this layer imports no kind.
"""

from pyrovae.runtime.errors import ConfigError
from pyrovae.config.fields import (
    _unknown_message,
    _field_type,
    coerce,
    check_fields,
    section_from_dict,
)
from pyrovae.runtime.registry import (ACTIVATIONS, KL_SCHEDULES as SCHEDULES, LIKELIHOODS,
                                      LR_SCHEDULES, MODEL_KINDS, NETWORKS, POSTERIORS, PRIORS)
from pyrovae.config.sections import (
    OBJECTIVES,
    ANALYTIC_KL_PRIORS,
    ANALYTIC_KL_POSTERIORS,
    BINARIZE,
    ANALYTIC_KL_OBJECTIVES,
    DEVICES,
    setting,
    PriorConfig,
    LikelihoodConfig,
    fold_likelihood_keys,
    PosteriorConfig,
    KLConfig,
    ObjectiveConfig,
    check_pair,
    model_class,
    model_classes,
    DataConfig,
    TrainConfig,
    RunConfig,
    SECTIONS,
)
from pyrovae.config.files import (
    parse_value,
    _leaves,
    _variants,
    _annotation,
    _resolve_key,
    _non_defaults,
    settable_keys,
    apply_overrides,
    load_config,
    _toml_value,
    to_toml,
)

__all__ = ["ConfigError", "_unknown_message", "_field_type", "coerce", "check_fields", "section_from_dict", "OBJECTIVES",
           "LIKELIHOODS", "PRIORS", "ANALYTIC_KL_PRIORS",
           "POSTERIORS", "ANALYTIC_KL_POSTERIORS", "PosteriorConfig", "SCHEDULES",
           "LR_SCHEDULES",
           "NETWORKS", "ACTIVATIONS", "BINARIZE", "MODEL_KINDS", 
           "DEVICES", "setting", "PriorConfig", "LikelihoodConfig", "fold_likelihood_keys", "KLConfig",
           "ObjectiveConfig", "check_pair", "VAEConfig",
           "SSVAEConfig", "ModuleConfig", "HVAEConfig", "CVAEConfig", "model_class", "model_classes", "settable_keys",
           "ANALYTIC_KL_OBJECTIVES", "DataConfig", "TrainConfig",
           "RunConfig", "SECTIONS", "parse_value", "_leaves", "_variants", "_annotation",
           "_resolve_key", "_non_defaults", "apply_overrides", "load_config", "_toml_value",
           "to_toml"]


#: the [model] dataclasses reachable as pyrovae.config.<Name>: name -> the kind registering it
KIND_CONFIGS = {"VAEConfig": "vae", "SSVAEConfig": "ssvae", "ModuleConfig": "module",
                "HVAEConfig": "hvae", "CVAEConfig": "cvae"}


def __getattr__(name: str):
    """A kind's [model] dataclass by its class name, from the registry (module ``__getattr__``,
    PEP 562): the config layer knows no kind module."""
    if name in KIND_CONFIGS:  # registered when the package pyrovae is imported
        return MODEL_KINDS.capability(KIND_CONFIGS[name], "config")
    raise AttributeError(f"module 'pyrovae.config' has no attribute {name!r}")
