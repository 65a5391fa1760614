"""Field machinery of the config dataclasses: coercion of TOML/CLI values to each field's
type, validation against the field metadata (``choices``, ``min``, ``exclusive_min``), and
messages for unknown keys that suggest the nearest valid one."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

from ..errors import ConfigError


def _unknown_message(key: str, valid, what: str = "key") -> str:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if not near and "." not in key:  # a bare --set key such as 'epoch': compare field names
        by_name: dict[str, list[str]] = {}
        for full in valid:
            by_name.setdefault(full.rsplit(".", 1)[-1], []).append(full)
        close = difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.6)
        near = by_name[close[0]] if close else []
    hint = "; did you mean " + " or ".join(f"'{n}'" for n in near) + "?" if near else ""
    return f"unknown config {what} '{key}'{hint} (valid: {', '.join(valid)})"


def _field_type(section_cls, name: str):
    return typing.get_type_hints(section_cls)[name]


def coerce(value: Any, annotation, where: str) -> Any:
    """Convert a TOML/CLI value to the field's type, or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], where)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list like [400, 200], got {value!r}")
        return tuple(coerce(v, item_type, where) for v in value)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if isinstance(value, str) and "name" in annotation.__dataclass_fields__:
            return annotation(name=value)  # shorthand: prior = "vamp"
        if isinstance(value, dict):
            return section_from_dict(annotation, value, where)
        raise ConfigError(f"{where} must be a table like {{name = ...}}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def check_fields(obj, section: str) -> None:
    """Coerce and validate every field of a config dataclass against its metadata."""
    for f in dataclasses.fields(obj):
        where = f"{section}.{f.name}"
        value = coerce(getattr(obj, f.name), _field_type(type(obj), f.name), where)
        object.__setattr__(obj, f.name, value)
        meta = f.metadata
        items = value if isinstance(value, tuple) else (value,)
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{where} = {value!r} is not one of: {', '.join(meta['choices'])}")
        for v in items:
            if "min" in meta and isinstance(v, (int, float)):
                low = meta["min"]
                if v < low or (meta.get("exclusive_min") and v == low):
                    op = ">" if meta.get("exclusive_min") else ">="
                    raise ConfigError(f"{where} = {value!r} is out of range: it must be {op} {low}")


def section_from_dict(section_cls, body: dict[str, Any], section: str):
    """Build one section dataclass from a dict, rejecting unknown keys."""
    names = [f.name for f in dataclasses.fields(section_cls)]
    for key in body:
        if key not in names:
            raise ConfigError(_unknown_message(f"{section}.{key}", [f"{section}.{n}" for n in names]))
    return section_cls(**body)
