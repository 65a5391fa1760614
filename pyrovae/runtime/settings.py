"""Component settings: each registered component declares its own small settings dataclass,
and the config section that chooses it holds its name and those settings.

    @dataclass
    class MixtureSettings:
        components: int = setting(10, "mixture components", min=1)

    @register_prior("mog")                    # the class's ``settings`` attribute (or the
    class MixtureOfGaussiansPrior(Prior):     # registration's ``settings=`` capability)
        settings = MixtureSettings

    [model.prior]                             PriorConfig(name="mog", components=3)
    name = "mog"
    components = 3

A choice section is a :class:`Choice` subclass (``PriorConfig``, ``PosteriorConfig``,
``LikelihoodConfig``, ...) bound to one registry. Calling it builds the class made for the
chosen name: a dataclass whose fields are ``name`` and the component's settings (a subclass of
both the section and the settings dataclass), so ``config.prior.components`` is the
component's own field, validated by its metadata, and a key of another component is refused
in one line. A plug-in registered with its own settings is configurable at once, from a config
file, ``--set`` and the API, with no other file edited.

``legacy`` keys are those of release 0.1's flat tables (every prior's keys in one table, say):
dropped when the chosen component does not take them, so that release's configs and run
folders still load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.fields import check_fields, type_hints
from pyrovae.runtime.registry import PLUGIN_HINT


def setting(default, help: str, **meta):
    """A settings (or config) field: its default, help text and validation metadata
    (``choices``, ``min``, ``exclusive_min``, ``max``, ``note``)."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class NoSettings:
    """The settings of a component that has none."""


def settings_of(registry, name: str) -> type:
    """The settings dataclass of the component ``name``: its registration's ``settings``
    capability, else its class's ``settings`` attribute, else :class:`NoSettings`."""
    made = registry.capability(name, "settings")
    if made is None:
        made = getattr(registry.get(name), "settings", None)
    if made is None:
        return NoSettings
    if not (isinstance(made, type) and dataclasses.is_dataclass(made)):
        raise TypeError(f"the settings of {registry.kind} '{name}' must be a dataclass, "
                        f"got {made!r}")
    return made


def _rebuild(base: type, values: dict[str, Any]):
    return base(**values)


class Choices:
    """A config section that names several registered components, one per *chooser* field,
    and holds the settings of each chosen one in one flat table (``ObjectiveConfig``: a bound
    and its gradient estimator)::

        [model.objective]                     ObjectiveConfig(bound="renyi", renyi_alpha=0.3)
        bound = "renyi"
        gradient = "reparam"
        renyi_alpha = 0.3

    Subclasses are dataclasses whose fields are the choosers (their defaults the default
    names) and the section's own keys (``biased``), with the class variables ``choosers``
    (chooser field -> registry), ``section`` and ``legacy``, as :class:`Choice`. Calling one
    builds the class made for the chosen names: the section's fields and every chosen
    component's settings (two components may not share a setting's name)."""

    choosers: ClassVar[dict]
    section: ClassVar[str]
    legacy: ClassVar[frozenset] = frozenset()
    chosen: ClassVar[tuple | None] = None     # set on a made class: the names it was made for
    base: ClassVar[type | None] = None        # set on a made class: the section it belongs to
    _made: ClassVar[dict]

    def __new__(cls, *args, **kwargs):
        section = cls.section_class()
        names = section.names_in(kwargs, args, cls.chosen)
        made = section.class_for(*names)
        if issubclass(made, cls):
            return object.__new__(made)   # (then made.__init__ runs on it)
        return made(*args, **kwargs)      # another made class's (dataclasses.replace, ...)

    @classmethod
    def section_class(cls) -> type:
        return cls.base or cls

    @classmethod
    def default_names(cls) -> tuple:
        fields = cls.section_class().__dataclass_fields__
        return tuple(fields[key].default for key in cls.section_class().choosers)

    @classmethod
    def names_in(cls, table: dict, args: tuple = (), chosen: tuple | None = None) -> tuple:
        """The chosen names of a table (or constructor arguments): given, else ``chosen``'s,
        else the defaults."""
        fallback = chosen or cls.default_names()
        return tuple(table.get(key, args[i] if i < len(args) else fallback[i])
                     for i, key in enumerate(cls.section_class().choosers))

    @classmethod
    def class_for(cls, *names) -> type:
        """The dataclass of the section with ``names`` chosen (one per chooser, in order)."""
        section = cls.section_class()
        for (key, registry), name in zip(section.choosers.items(), names):
            if not isinstance(name, str) or name not in registry:
                raise ConfigError(f"{section.section}.{key} = {name!r} is not one of: "
                                  f"{', '.join(registry)}{PLUGIN_HINT}")
        settings = tuple(settings_of(registry, name)
                         for registry, name in zip(section.choosers.values(), names))
        made = section.__dict__.get("_made")
        if made is None:
            made = section._made = {}
        key = (tuple(names), settings)
        if key not in made:
            made[key] = _make_choices(section, tuple(names), settings)
        return made[key]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """The section's keys and those of every registered component's settings -> types
        (``--set`` resolves its keys with them)."""
        section = cls.section_class()
        out = {f.name: type_hints(section)[f.name]
               for f in dataclasses.fields(section)}
        for registry in section.choosers.values():
            for name in registry:
                settings = settings_of(registry, name)
                hints = type_hints(settings)
                for f in dataclasses.fields(settings):
                    out.setdefault(f.name, hints[f.name])
        return out

    @classmethod
    def from_table(cls, body: dict[str, Any], where: str):
        section = cls.section_class()
        return section.class_for(*section.names_in(body))(**body)

    @classmethod
    def check_key(cls, table, key: str, where: str) -> None:
        """Refuse setting ``key`` in a raw table whose chosen components do not take it (a
        ``--set`` of another component's setting; set the chooser first)."""
        section = cls.section_class()
        if key in section.__dataclass_fields__ or not isinstance(table, dict):
            return
        names = section.names_in(table)
        if all(isinstance(n, str) and n in r for n, r in zip(names, section.choosers.values())):
            if key not in section.class_for(*names).__dataclass_fields__:
                raise ConfigError(section.stray_message(key, names, where))

    @classmethod
    def stray_message(cls, key: str, names: tuple, where: str) -> str:
        section = cls.section_class()
        takers, own = [], []
        for registry in section.choosers.values():
            for name in registry:
                if key in {f.name for f in dataclasses.fields(settings_of(registry, name))}:
                    takers.append(f"{registry.kind} \"{name}\"")
        chosen = " and ".join(f"{r.kind} \"{n}\"" for r, n in zip(section.choosers.values(),
                                                                names))
        for registry, name in zip(section.choosers.values(), names):
            own += [f.name for f in dataclasses.fields(settings_of(registry, name))]
        if takers:
            return (f"{where}.{key} is a setting of {' / '.join(takers)}, not of {chosen} "
                    f"(their settings: {', '.join(own) or 'none'}); drop the key or set "
                    f"{where}.{' / '.join(section.choosers)}")
        return (f"unknown config key '{where}.{key}': {chosen} take "
                f"{', '.join(own) or 'no settings'} (and "
                f"{', '.join(f.name for f in dataclasses.fields(section))})")

    def component_settings(self, key: str) -> dict[str, Any]:
        """The settings of the component chosen by ``key`` (``"bound"``) as a dict."""
        section = self.section_class()
        settings = settings_of(section.choosers[key], getattr(self, key))
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(settings)}

    def settings(self) -> dict[str, Any]:
        """Every chosen component's settings (the fields that are not the section's own)."""
        own = set(self.section_class().__dataclass_fields__)
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in own}

    def __eq__(self, other):
        """Equal to the same section with the same choices and settings; a one-chooser
        section also to its chosen name (a string)."""
        if isinstance(other, str):
            return len(self.choosers) == 1 and getattr(self, next(iter(self.choosers))) == other
        if not isinstance(other, Choices) or self.section_class() is not other.section_class():
            return NotImplemented
        return type(self) is type(other) and all(
            getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))

    __hash__ = None

    def __reduce__(self):  # copy, deepcopy and pickle rebuild through the section
        return _rebuild, (self.section_class(), {f.name: getattr(self, f.name)
                                                 for f in dataclasses.fields(self)})


def _make_choices(section: type, names: tuple, settings: tuple) -> type:
    """The dataclass of the multi-choice ``section`` with ``names`` chosen: its fields (the
    choosers' defaults the chosen names) and every chosen component's settings."""
    where = section.section
    seen: dict[str, str] = {f.name: "the section" for f in dataclasses.fields(section)}
    for (key, registry), name, made_settings in zip(section.choosers.items(), names, settings):
        for f in dataclasses.fields(made_settings):
            if f.name in seen:
                raise ConfigError(f"{where}: {registry.kind} \"{name}\" has a setting "
                                  f"'{f.name}', which {seen[f.name]} has too; rename it")
            seen[f.name] = f"{registry.kind} \"{name}\""
    fields = [(key, str, field(default=name, metadata=section.__dataclass_fields__[key].metadata))
              for key, name in zip(section.choosers, names)]
    bases = tuple(dict.fromkeys(s for s in reversed(settings))) + (section,)
    checks = [s.check for s in dict.fromkeys(settings) if callable(getattr(s, "check", None))]
    if callable(section.__dict__.get("check")):  # the section's own rules (KLConfig's ramp)
        checks.append(section.check)

    def __post_init__(self):
        check_fields(self, where)
        for key, name in zip(section.choosers, names):
            if getattr(self, key) != name:
                raise ConfigError(f"{where}.{key} = {getattr(self, key)!r} was given to the "
                                  f"settings of \"{name}\"; build {section.__name__}(...) anew")
        for check in checks:
            check(self)

    made = dataclasses.make_dataclass(
        section.__name__, fields, bases=bases,
        eq=False, namespace={"__post_init__": __post_init__, "chosen": names, "base": section,
                             "__eq__": Choices.__eq__, "__hash__": None,
                             "__module__": section.__module__,
                             "__qualname__": section.__qualname__, "__doc__": section.__doc__})
    init, own = made.__init__, {f.name for f in dataclasses.fields(made)}

    def __init__(self, *args, **kwargs):
        """The dataclass's, after dropping legacy keys and refusing other strays."""
        for key in [k for k in kwargs if k not in own]:
            if key not in section.legacy:
                raise ConfigError(section.stray_message(key, names, where))
            del kwargs[key]
        init(self, *args, **kwargs)

    made.__init__ = __init__
    return made


class Choice(Choices):
    """A section with one chooser, ``name``: the component of the class variable ``registry``
    (``PriorConfig``, ``PosteriorConfig``, ``LikelihoodConfig``); equal to its name as a string
    too, so release 0.1's ``config.likelihood == "bernoulli"`` (a string then) still reads
    true."""

    registry: ClassVar[Any]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "registry" in cls.__dict__:
            cls.choosers = {"name": cls.registry}

    @classmethod
    def default_name(cls) -> str:
        return cls.default_names()[0]


__all__ = ["setting", "Choice", "Choices", "NoSettings", "settings_of"]
