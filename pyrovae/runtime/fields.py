"""Field machinery of the config dataclasses: coercion of TOML/CLI values to each field's
type, validation against the field metadata (``choices``, ``min``, ``exclusive_min``,
``max``), and messages for unknown keys that suggest the nearest valid one.

The bounds of a number are a :class:`Rule`. A config field's rule comes from its metadata; the
commands' numeric options (``pyrovae/cli/options.py``) and the Python functions behind them
(``pyrovae.applications``, ``evaluate_run``) use named rules (:data:`SEED`, :data:`COUNT`, ...)
checked by the same :func:`check_number`, so the API refuses what the CLI and a config file
refuse, with the same message."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any

from pyrovae.runtime.errors import ConfigError


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
    return type_hints(section_cls)[name]


@functools.lru_cache(maxsize=None)
def type_hints(section_cls) -> dict[str, Any]:
    """``typing.get_type_hints`` of a config dataclass, resolved once per class (every config
    built checks every field against it)."""
    return typing.get_type_hints(section_cls)


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


SEED_MAX = 2**32 - 1  # NumPy's seeding takes 0 .. 2**32 - 1


@dataclass(frozen=True)
class Rule:
    """What a number must be: an ``int`` or a (finite) ``float``, with optional bounds.

    ``min`` (``exclusive_min``: strictly above it) and ``max`` are the config fields'
    metadata of the same names; ``note`` is appended to an out-of-range message."""

    kind: type = int
    min: float | None = None
    exclusive_min: bool = False
    max: float | None = None
    note: str = ""

    def describe(self) -> str:
        """e.g. 'an integer >= 1' (for help texts)."""
        bounds = []
        if self.min is not None:
            bounds.append(f"{'>' if self.exclusive_min else '>='} {_plain_number(self.min)}")
        if self.max is not None:
            bounds.append(f"<= {_plain_number(self.max)}")
        kind = "an integer" if self.kind is int else "a finite number"
        return " ".join([kind, " and ".join(bounds)]) if bounds else kind


def _plain_number(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


#: the rules shared by config fields, command options and the API functions behind them
SEED = Rule(int, 0, max=SEED_MAX)          # every seed: train.seed, data.seed, --seed
COUNT = Rule(int, 1)                        # how many (>= 1)
SIZE = Rule(int, 0)                         # how many, 0 = all / none (>= 0)
INTEGER = Rule(int)                         # an index (negative counts from the end)
POSITIVE = Rule(float, 0.0, exclusive_min=True)  # a finite number > 0

#: the most classes a class-aware kind takes (``model.num_classes`` of kind ssvae and cvae):
#: each class is an input of the networks (a one-hot column or an embedding row) and, for the
#: M2 model, a pass that enumeration sums over, so far more is a typo, not a data set
MAX_CLASSES = 100_000
CLASSES_NOTE = ("the number of classes C of the data's labels 0..C-1; a model takes one input "
                "per class")


def _out_of_range(where: str, shown, rule: Rule, op: str, bound) -> ConfigError:
    note = f" ({rule.note})" if rule.note else ""
    return ConfigError(f"{where} = {shown!r} is out of range: it must be {op} {bound}{note}")


def check_range(v, where: str, rule: Rule, shown=None) -> None:
    """Refuse a number ``v`` outside ``rule``'s bounds; the message shows ``shown`` (the whole
    value, e.g. a list of sizes) or else ``v``."""
    shown = v if shown is None else shown
    if rule.min is not None and (v < rule.min or (rule.exclusive_min and v == rule.min)):
        raise _out_of_range(where, shown, rule, ">" if rule.exclusive_min else ">=", rule.min)
    if rule.max is not None and v > rule.max:
        raise _out_of_range(where, shown, rule, "<=", rule.max)


def check_number(value, where: str, rule: Rule):
    """A number of an API call or a command option, checked as a config field would be: the
    rule's type (NumPy integers count as integers; NaN and inf are refused) and bounds."""
    if rule.kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    elif rule.kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
    value = coerce(value, rule.kind, where)
    check_range(value, where, rule)
    return value


def field_rule(f: dataclasses.Field) -> Rule | None:
    """The :class:`Rule` of a config field's ``min``/``exclusive_min``/``max`` metadata (and
    ``note``, appended to an out-of-range message)."""
    meta = f.metadata
    if "min" not in meta and "max" not in meta:
        return None
    return Rule(kind=float, min=meta.get("min"), exclusive_min=bool(meta.get("exclusive_min")),
                max=meta.get("max"), note=meta.get("note", ""))


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
        rule = field_rule(f)
        for v in items:
            if rule is not None and isinstance(v, (int, float)):
                check_range(v, where, rule, shown=value)


def section_from_dict(section_cls, body: dict[str, Any], section: str):
    """Build one section dataclass from a dict, rejecting unknown keys (a component choice,
    ``Choice``: the keys of the chosen component)."""
    if hasattr(section_cls, "from_table"):  # a pyrovae.runtime.settings.Choice
        return section_cls.from_table(body, section)
    names = list(section_cls.__dataclass_fields__)  # fields and InitVars (legacy keys)
    for key in body:
        if key not in names:
            raise ConfigError(_unknown_message(f"{section}.{key}", [f"{section}.{n}" for n in names]))
    made = section_cls(**body)
    if not hasattr(section_cls, "__post_init__"):  # (a plug-in kind's config that does not
        check_fields(made, section)                # validate itself: its settings' metadata)
    return made
