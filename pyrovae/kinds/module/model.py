"""Models you write yourself: ``model.kind = "module"``.

Any ``PyroModule`` that follows the model interface (``pyrovae.runtime.interface``) trains, resumes,
evaluates, compares and exports like the built-in kinds. Its run records how to rebuild it::

    [model]
    kind = "module"
    target = "mypkg.models:TwoLayerVAE"     # import path of a torch.nn.Module class
    args = {hidden = 200, latent = [100, 50]}  # its keyword arguments

``pyrovae.train(module, data, out=...)`` fills these from the instance: the class's
``module:qualname``, and each argument of its ``__init__`` read back from the attribute of the
same name (the scikit-learn convention), or from an ``init_args`` dict attribute when the
module has one. An argument named ``input_shape`` is given the data's shape when the module is
rebuilt and is not recorded. ``pyrovae.load(RUN, trust_module=True)`` imports ``target`` (the
current folder is searched too, as ``python -m`` does) and calls it with ``args``; the
checkpoint itself is still read with ``weights_only``, so no code runs from a checkpoint file.

A run folder is data, not code: its ``config.toml`` and checkpoint are files anyone may have
written, and ``model.target`` is the one thing in them that names code. Opening a run folder
(``pyrovae.load``, every command on RUN_DIR, ``train --resume``) imports that target only
with the caller's consent (:func:`consent_refusal`): ``trust_module=True``, ``--trust-module``
(the CLI runs the command inside ``pyrovae.runs.trust.trusting_modules``), or ``model=`` (the
class itself).
Training from a config you pass (``pyrovae train CONFIG``, ``compare CONFIG``) is consent to
the target it names, for the rest of that process (so ``compare`` can read back the runs it
wrote). Even with consent, only a ``torch.nn.Module`` subclass is called
(:func:`module_class`): a function, a builtin such as ``os:system`` or another class is
refused before it is called.

A class defined in a notebook or a script (module ``__main__``) or inside a function (a
qualname with ``<locals>``) trains as well; its target (``"__main__:MyVAE"``) says that no
other process can import it, so the commands refuse such a run in one line, and
``pyrovae.load(RUN, model=MyVAE)`` rebuilds it where the class is defined (a class: called
with the recorded args; an instance: used as it is).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

import torch

from pyrovae.kinds.module.config import ModuleConfig
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.runs.trust import consented

SHAPE_ARGUMENT = "input_shape"

#: targets this process has imported and built a model from: from a config the user passed
#: (``pyrovae train CONFIG``, ``compare CONFIG``) or with consent; their runs open without
#: asking again (the code is already imported: importing it again runs nothing)
_BUILT_TARGETS: set[str] = set()


def trusted(target: str) -> bool:
    """Whether ``target`` may be imported from a run folder now: consent was given, or this
    process already built a model from it (a config the user passed, or earlier consent)."""
    return consented() or target in _BUILT_TARGETS


def consent_refusal(config: ModuleConfig, fix: str) -> ConfigError | None:
    """The one-line refusal to import a run folder's ``model.target`` without consent (None
    when consent was given); ``fix`` is the Python call that consents, ``{name}`` standing for
    the class name. Nothing is imported to say so."""
    if not config.target or local_origin(config.target) is not None or trusted(config.target):
        return None
    return ConfigError(f"model.target = {config.target!r} names code to import and run, and a "
                       f"run folder is data, so pyrovae imports it only with your consent: if "
                       f"you trust whoever wrote this run, pass --trust-module (in Python: "
                       f"{fix.format(name=target_name(config.target))})")


def _import(target: str):
    module_name, _, attr = target.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"model.target = {target!r}: cannot import '{module_name}' ({err}); "
                          f"install it or run from the folder that holds it") from None
    finally:
        if added:
            sys.path.remove(cwd)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"model.target = {target!r}: '{module_name}' has no '{attr}'")
        obj = getattr(obj, part)
    return obj


def module_class(target: str) -> type:
    """The ``torch.nn.Module`` subclass ``target`` names, imported; anything else (a function,
    a builtin such as ``os:system``, another class) is refused in one line, never called."""
    obj = _import(target)
    if inspect.isclass(obj) and issubclass(obj, torch.nn.Module):
        return obj
    what = (f"the class {obj.__module__}.{obj.__qualname__}, not a torch.nn.Module subclass"
            if inspect.isclass(obj) else f"a {type(obj).__name__}, not a torch.nn.Module class")
    raise ConfigError(f"model.target = {target!r} is {what}; pyrovae calls only the module "
                      f"class of a model (package.module:Class) and did not call it")


def local_origin(target: str) -> str | None:
    """Where the class of ``target`` was defined when no other process can import it: a
    notebook or script (module ``__main__``) or a function (``<locals>`` in its name); None
    for an import path."""
    module_name, _, attr = target.partition(":")
    if module_name == "__main__":
        return "a notebook or script (__main__)"
    if "<locals>" in attr:
        return "a function"
    return None


def target_name(target: str) -> str:
    """The class name of ``target``: ``"__main__:MyVAE"`` -> ``"MyVAE"``."""
    return target.partition(":")[2].rsplit(".", 1)[-1]


def local_refusal(config: ModuleConfig, fix: str) -> ConfigError | None:
    """The one-line refusal to rebuild a run whose class was defined in a notebook, a script
    or a function (None for an importable target); ``fix`` is the call that does it, in which
    ``{name}`` stands for the class name."""
    origin = local_origin(config.target)
    if origin is None:
        return None
    name = target_name(config.target)
    return ConfigError(f"model.target = {config.target!r}: {name} was defined in {origin}, so "
                       f"it cannot be imported here; in Python, where {name} is defined, call "
                       f"{fix.format(name=name)}")


def build_user_module(config: ModuleConfig, input_shape, factory=None) -> torch.nn.Module:
    """``target(**args)`` (with ``input_shape`` when the target takes it), ``target`` being a
    ``torch.nn.Module`` subclass (:func:`module_class`); ``factory``, when given, is called in
    place of importing ``target`` (``pyrovae.load(RUN, model=MyVAE)``: the caller's own class).

    Whoever builds from a run folder's config asks for consent first
    (``runs.load.refuse_unimportable``: :func:`consent_refusal`); a config the user passes
    (training) is consent to its target."""
    if not config.target:
        raise ConfigError("model.kind = \"module\" needs model.target = "
                          "\"package.module:Class\", the import path of your model")
    imported = factory is None  # (not model=: the caller's class, whatever its module)
    if imported:
        refusal = local_refusal(config, 'pyrovae.load("RUN", model={name}) or '
                                        'pyrovae.train({name}, data, out="RUN", resume=True)')
        if refusal is not None:
            raise refusal
        factory = module_class(config.target)
    kwargs = dict(config.args)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if SHAPE_ARGUMENT in params:
        kwargs[SHAPE_ARGUMENT] = tuple(input_shape)
    try:
        module = factory(**kwargs)
    except TypeError as err:
        if err.__traceback__.tb_next is not None:  # raised inside __init__: the module's own
            raise
        raise ConfigError(f"model.target = {config.target!r} does not take model.args = "
                          f"{config.args!r} ({err})") from None
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model.target = {config.target!r} made a "
                          f"{type(module).__name__}, not a torch.nn.Module")
    if imported:
        _BUILT_TARGETS.add(config.target)
    return module


def given_module(model, config, input_shape, where: str) -> torch.nn.Module:
    """The module of a run rebuilt from what the caller passes as ``model=``: a class (or
    factory), called with the run's recorded args, or an instance, used as it is. Refused in
    one line for a run of a built-in kind, or a name other than the recorded one."""
    instance = isinstance(model, torch.nn.Module)
    if not instance and not callable(model):
        raise ConfigError(f"model= takes the model's class or an instance of it, not a "
                          f"{type(model).__name__}")
    name = type(model).__name__ if instance else getattr(model, "__name__", repr(model))
    recorded = target_name(config.target)
    if name != recorded:
        raise ConfigError(f"model={name} does not match {where}, which was trained on "
                          f"{recorded} (model.target = {config.target!r}); pass "
                          f"model={recorded}")
    return model if instance else build_user_module(config, input_shape, factory=model)


def module_config(module: torch.nn.Module, *, strict: bool = True,
                  **settings) -> ModuleConfig:
    """The config that rebuilds ``module``: its class's ``module:qualname`` and constructor
    arguments (module docstring); ``settings`` fill the other fields (``elbo``,
    ``num_particles``). A module's own ``elbo``/``num_particles`` attributes are its defaults.

    ``strict=False`` (a run without a folder, which nothing rebuilds) records the arguments it
    can read and leaves out the others, where ``strict`` refuses them in one line."""
    cls = type(module)
    args = getattr(module, "init_args", None)
    if args is None:
        args = _constructor_args(module, strict)
    elif not strict:
        args = {k: v for k, v in args.items() if isinstance(k, str) and _plain(v)}
    for key in ("elbo", "num_particles"):
        if key not in settings and isinstance(getattr(module, key, None), (str, int)):
            settings[key] = getattr(module, key)
    return ModuleConfig(target=f"{cls.__module__}:{cls.__qualname__}", args=dict(args),
                        **settings)


def _constructor_args(module: torch.nn.Module, strict: bool) -> dict:
    """Each ``__init__`` argument of ``module``'s class read back from the attribute of the
    same name (tuples as lists); without ``strict``, those missing or not plain are left out."""
    cls, args = type(module), {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name == SHAPE_ARGUMENT or p.kind in (p.VAR_POSITIONAL,
                                                                   p.VAR_KEYWORD):
            continue
        if not hasattr(module, name):
            if p.default is p.empty and strict:
                raise ConfigError(
                    f"cannot record how to rebuild {cls.__name__}: its argument '{name}' "
                    f"is not kept as self.{name}; store it (self.{name} = {name}) or give "
                    f"the module an init_args dict")
            continue
        value = getattr(module, name)
        value = list(value) if isinstance(value, tuple) else value
        if strict or _plain(value):
            args[name] = value
    return args


def _plain(value) -> bool:
    """Whether a config file can hold ``value`` (numbers, strings, booleans, lists, tables)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, (str, int, float, bool))


MODEL_KINDS.register("module", build_user_module, config=ModuleConfig, given_model=given_module,
                     unimportable=local_refusal, consent=consent_refusal)
