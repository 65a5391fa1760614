"""Configuration: the dataclasses of a run (``sections.py``), how their fields are coerced and
validated (``fields.py``), and config files and ``--set`` edits (``files.py``).

    [model]   VAEConfig (or SSVAEConfig)   [data] DataConfig   [train] TrainConfig
    RunConfig = the three; load_config(path, ["key=value", ...]) reads a TOML file.
"""

from pyrovae.runtime.errors import ConfigError
from pyrovae.config.fields import (
    _unknown_message,
    _field_type,
    coerce,
    check_fields,
    section_from_dict,
)
from pyrovae.runtime.registry import LIKELIHOODS, MODEL_KINDS, NETWORKS, POSTERIORS, PRIORS
from pyrovae.config.sections import (
    OBJECTIVES,
    VARIANCES,
    ANALYTIC_KL_PRIORS,
    ANALYTIC_KL_POSTERIORS,
    FLOWS,
    SCHEDULES,
    LR_SCHEDULES,
    ACTIVATIONS,
    BINARIZE,
    SS_OBJECTIVES,
    ANALYTIC_KL_OBJECTIVES,
    ENUMERATION,
    DEVICES,
    _f,
    PriorConfig,
    PosteriorConfig,
    KLConfig,
    ObjectiveConfig,
    check_pair,
    VAEConfig,
    SSVAEConfig,
    ModuleConfig,
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
           "LIKELIHOODS", "VARIANCES", "PRIORS", "ANALYTIC_KL_PRIORS",
           "POSTERIORS", "ANALYTIC_KL_POSTERIORS", "PosteriorConfig", "FLOWS", "SCHEDULES",
           "LR_SCHEDULES",
           "NETWORKS", "ACTIVATIONS", "BINARIZE", "MODEL_KINDS", "SS_OBJECTIVES",
           "ENUMERATION", "DEVICES", "_f", "PriorConfig", "KLConfig",
           "ObjectiveConfig", "check_pair", "VAEConfig",
           "SSVAEConfig", "ModuleConfig", "model_class", "model_classes", "settable_keys",
           "ANALYTIC_KL_OBJECTIVES", "DataConfig", "TrainConfig",
           "RunConfig", "SECTIONS", "parse_value", "_leaves", "_variants", "_annotation",
           "_resolve_key", "_non_defaults", "apply_overrides", "load_config", "_toml_value",
           "to_toml"]
