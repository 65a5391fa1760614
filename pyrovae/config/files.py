"""Config files and command-line edits: ``load_config`` (TOML), ``apply_overrides``
(``--set key=value`` with dotted keys or unambiguous tails) and ``to_toml`` (reads back to an
equal config)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from pyrovae.runtime.errors import ConfigError
from pyrovae.config.fields import _field_type, _unknown_message
from pyrovae.config.sections import SECTIONS, RunConfig, model_class, model_classes


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as TOML (numbers, booleans, lists, quoted strings), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _fields_of(cls) -> dict[str, Any]:
    """A config dataclass's field names -> types; of a section choosing components
    (``pyrovae.runtime.settings.Choices``), also the settings of every registered one."""
    if hasattr(cls, "field_types"):
        return cls.field_types()
    return {f.name: _field_type(cls, f.name) for f in dataclasses.fields(cls)}


def _leaves(cls, prefix: str) -> dict[str, tuple[str, ...]]:
    """Every settable dotted key of a config dataclass -> its path; nested tables included."""
    keys = {}
    for name, annotation in _fields_of(cls).items():
        full = f"{prefix}.{name}"
        keys[full] = tuple(full.split("."))
        if dataclasses.is_dataclass(annotation):
            keys.update(_leaves(annotation, full))
    return keys


def _variants(section: str) -> tuple[type, ...]:
    """The dataclasses a section may be: [model] is the config of any registered kind."""
    return tuple(model_classes().values()) if section == "model" else (SECTIONS[section],)


def settable_keys() -> dict[str, tuple[str, ...]]:
    """Every key ``--set`` and ``compare --vary`` take, of every section and model kind."""
    keys = {}
    for section in SECTIONS:
        for cls in _variants(section):
            keys.update(_leaves(cls, section))
    return keys


def _annotation(path: tuple[str, ...]):
    for cls in _variants(path[0]):
        if path[1] in cls.__dataclass_fields__:
            for name in path[1:]:
                if cls is dict:  # a key inside a table field (model.args.hidden): any value
                    return None
                cls = _fields_of(cls)[name]
            return cls
    raise KeyError(path)


#: ``--set`` keys of release 0.1 that moved into a component's table: old -> new
MOVED_KEYS = {"model.sigma": "model.likelihood.sigma",
              "model.variance": "model.likelihood.variance"}


def _resolve_key(key: str, all_keys: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """``model.prior.name``, or any unambiguous tail of it: ``prior.name``, ``components``;
    also a key inside a table-valued field: ``args.hidden`` sets ``model.args.hidden``."""
    key = MOVED_KEYS.get(key, key)
    if key in all_keys:
        return all_keys[key]
    matches = [full for full in all_keys if full.endswith("." + key)]
    if len(matches) > 1:
        raise ConfigError(f"key '{key}' is ambiguous: write one of {', '.join(matches)}")
    if not matches:
        parts = key.split(".")
        for i in range(len(parts) - 1, 0, -1):  # the longest prefix that is a table field
            try:
                head = _resolve_key(".".join(parts[:i]), all_keys)
            except ConfigError:
                continue
            if _annotation(head) is dict:
                return head + tuple(parts[i:])
        raise ConfigError(_unknown_message(key, list(all_keys)))
    return all_keys[matches[0]]


def _non_defaults(model: dict[str, Any]) -> dict[str, Any]:
    """The keys of a raw [model] table that differ from its kind's defaults."""
    defaults = dataclasses.asdict(model_class(model)())
    return {k: v for k, v in model.items() if v != defaults.get(k)}


def _check_choice_key(raw: dict[str, Any], path: tuple[str, ...]) -> None:
    """Refuse ``--set`` of a setting the component chosen in ``raw`` does not take (say
    ``prior.flow_layers`` with prior = "mog"); set the component's name first."""
    if len(path) < 3 or path[-1] == "name":
        return
    section = _annotation(path[:-1])
    table = raw
    for name in path[:-1]:
        table = table.get(name, {}) if isinstance(table, dict) else {}
    if hasattr(section, "check_key"):  # a section choosing components (``Choices``)
        section.check_key(table, path[-1], ".".join(path[:-1]))


def apply_overrides(config: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply ``key=value`` edits; ``key`` is a dotted path (``model.kl.beta``) or an unambiguous
    tail of one (``kl.beta``, ``latent_dim``)."""
    raw = config.to_dict()
    all_keys = settable_keys()
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, text = (part.strip() for part in item.split("=", 1))
        path = _resolve_key(key, all_keys)
        value = parse_value(text)
        annotation = _annotation(path)
        _check_choice_key(raw, path)
        if annotation is str and not isinstance(value, str):
            value = text  # e.g. data.path=2024 or data.name=inf: a name, not a number
        if path == ("model", "kind") and value != raw["model"].get("kind", "vae"):
            raw["model"] = _non_defaults(raw["model"])  # the new kind's defaults fill the rest
        parent = raw
        for name in path[:-1]:
            parent = parent.setdefault(name, {})
        if dataclasses.is_dataclass(annotation) and isinstance(value, str):
            table = parent.setdefault(path[-1], {})
            if isinstance(table, str):
                table = parent[path[-1]] = {"name": table}
            table["name"] = value  # prior=vamp keeps the settings vamp takes too
            if hasattr(annotation, "registry") and value in annotation.registry:  # a Choice
                own = {f.name for f in dataclasses.fields(annotation.class_for(value))}
                for key in [k for k in table if k not in own]:
                    del table[key]
        else:
            parent[path[-1]] = value
    return RunConfig.from_dict(raw)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML config file (sections [model], [data], [train]) and apply ``overrides``."""
    path = Path(path)
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file '{path}' {problem} (see configs/ for examples)")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))  # TOML is UTF-8 on every OS
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file '{path}' is not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file '{path}': {err.strerror}") from None
    config = RunConfig.from_dict(raw)
    return apply_overrides(config, overrides or [])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        raise ConfigError("TOML has no null; use a default instead of None")
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def to_toml(config: RunConfig) -> str:
    """The config as TOML text that :func:`load_config` reads back to an equal config."""
    lines = []
    for section, body in config.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in body.items()]
        lines.append("")
    return "\n".join(lines)
