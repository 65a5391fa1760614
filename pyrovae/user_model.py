"""Models you write yourself: ``model.kind = "module"``.

Any ``PyroModule`` that follows the model interface (``pyrovae.interface``) trains, resumes,
evaluates, compares and exports like the built-in kinds. Its run records how to rebuild it::

    [model]
    kind = "module"
    target = "mypkg.models:TwoLayerVAE"     # import path of a class (or factory function)
    args = {hidden = 200, latent = [100, 50]}  # its keyword arguments

``pyrovae.train(module, data, out=...)`` fills these from the instance: the class's import
path, and each argument of its ``__init__`` read back from the attribute of the same name
(the scikit-learn convention), or from an ``init_args`` dict attribute when the module has
one. An argument named ``input_shape`` is given the data's shape when the module is rebuilt
and is not recorded. ``pyrovae.load(RUN)`` imports ``target`` (the current folder is searched
too, as ``python -m`` does) and calls it with ``args``; the checkpoint itself is still read
with ``weights_only``, so no code runs from a checkpoint file.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

import torch

from .config import ModuleConfig
from .errors import ConfigError
from .registry import MODEL_KINDS

SHAPE_ARGUMENT = "input_shape"


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


def build_user_module(config: ModuleConfig, input_shape) -> torch.nn.Module:
    """``target(**args)`` (with ``input_shape`` when the target takes it)."""
    if not config.target:
        raise ConfigError("model.kind = \"module\" needs model.target = "
                          "\"package.module:Class\", the import path of your model")
    factory = _import(config.target)
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
        raise ConfigError(f"model.target = {config.target!r} does not take model.args = "
                          f"{config.args!r} ({err})") from None
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model.target = {config.target!r} made a "
                          f"{type(module).__name__}, not a torch.nn.Module")
    return module


def module_config(module: torch.nn.Module, **settings) -> ModuleConfig:
    """The config that rebuilds ``module``: its class's import path and constructor arguments
    (module docstring); ``settings`` fill the other fields (``elbo``, ``num_particles``).
    A module's own ``elbo``/``num_particles`` attributes are its defaults."""
    cls = type(module)
    target = f"{cls.__module__}:{cls.__qualname__}"
    if "<locals>" in cls.__qualname__:
        raise ConfigError(f"{cls.__qualname__} is defined inside a function, so it cannot be "
                          f"imported to rebuild the run; define it at the top of a module")
    if cls.__module__ == "__main__":
        raise ConfigError(f"{cls.__qualname__} is defined in the script being run (__main__), "
                          f"so other commands cannot import it to rebuild the run; move it into "
                          f"a module and import it from there (or run the script with python -m)")
    args = getattr(module, "init_args", None)
    if args is None:
        args = {}
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or name == SHAPE_ARGUMENT or p.kind in (p.VAR_POSITIONAL,
                                                                       p.VAR_KEYWORD):
                continue
            if not hasattr(module, name):
                if p.default is p.empty:
                    raise ConfigError(
                        f"cannot record how to rebuild {cls.__name__}: its argument '{name}' "
                        f"is not kept as self.{name}; store it (self.{name} = {name}) or give "
                        f"the module an init_args dict")
                continue
            value = getattr(module, name)
            args[name] = list(value) if isinstance(value, tuple) else value
    for key in ("elbo", "num_particles"):
        if key not in settings and isinstance(getattr(module, key, None), (str, int)):
            settings[key] = getattr(module, key)
    return ModuleConfig(target=target, args=dict(args), **settings)


MODEL_KINDS.register("module", build_user_module, config=ModuleConfig)
