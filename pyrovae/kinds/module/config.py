"""``[model]`` of ``kind = "module"``: a model you wrote, rebuilt from its import path."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyrovae.config.sections import (ObjectiveConfig, check_objective, kind_field,
                                     objective_field, particles_field, setting)
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.fields import check_fields
from pyrovae.runtime.registry import OBJECTIVES as ALL_OBJECTIVES


def _plain(value, where: str):
    """Refuse a value a TOML file cannot hold (it is written to the run's config.toml)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where} has a key {k!r} that is not a string")
            _plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _plain(v, where)
    elif not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"{where} = {value!r} cannot be written to a config file; give "
                          f"numbers, strings, booleans, lists or tables")


@dataclass
class ModuleConfig:
    """A model the user wrote (docs/custom_models.md): a module following the model interface,
    rebuilt as ``target(**args)`` from an import path ``package.module:Class``."""

    kind: str = kind_field("module")
    target: str = setting("", "import path of the model's torch.nn.Module class: "
                     "'package.module:Name' (a run folder's is imported only with "
                     "--trust-module)")
    args: dict = field(default_factory=dict,
                       metadata={"help": "keyword arguments of target (a TOML table)"})
    elbo: str = setting("trace", "objective (Pyro ELBO estimator; the compiled jit-* forms need "
                   "parameters Pyro records, so they are the built-in kinds')",
                   choices=ALL_OBJECTIVES.where(jit=False))
    num_particles: int = particles_field()
    objective: ObjectiveConfig = objective_field()

    def __post_init__(self):
        check_fields(self, "model")
        check_objective(self)
        if not isinstance(self.args, dict):
            raise ConfigError(f"model.args must be a table of keyword arguments, like "
                              f"args = {{hidden = 200}}, got {self.args!r}")
        _plain(self.args, "model.args")
        if self.target and (":" not in self.target or self.target.startswith(":")
                            or self.target.endswith(":")):
            raise ConfigError(f"model.target = {self.target!r} must be an import path "
                              f"'package.module:Name'")
