"""Global Pyro parameters of a run in its checkpoint, and back into Pyro's param store.

A ``pyro.param("sigma", init, constraint=...)`` statement in a model or guide that is not one
of its module's own parameters lives in Pyro's global param store (``pyro.get_param_store()``),
which keeps the *unconstrained* tensor and the constraint. The trainer trains such parameters
with the module's (``pyrovae.training.global_params``); a checkpoint keeps them beside the
module's state dict, as plain data that ``torch.load(weights_only=True)`` reads::

    "pyro_params":       {name: unconstrained tensor}  the values the run is (with train.ema:
                                                       the average, as "model" is)
    "pyro_constraints":  {name: constraint spec}       see :func:`constraint_spec`
    "train_pyro_params": {name: unconstrained tensor}  with train.ema only: the live values
                                                       training continues from
    "pyro_module_params": [name, ...]                  the store's names of the module's own
                                                       PyroParams

The keys are absent for a run without such parameters. Reading a checkpoint
(``load_checkpoint``, hence ``pyrovae.load``) puts its "pyro_params" into the param store
under their names, replacing what the store held there, so the rebuilt model runs with the
trained values; and drops the store's entries under "pyro_module_params", which a PyroModule
would otherwise adopt in place of the PyroParams just loaded into it. The store holds one
value per name: the run trained or loaded last wins.
"""

from __future__ import annotations

import inspect
import numbers

import pyro
import torch
from pyro.distributions import constraints
from torch.distributions.constraints import Constraint

from pyrovae.runtime.errors import CheckpointError


def _public_constraints() -> dict:
    """name -> constraint object or constraint class, as ``pyro.distributions.constraints``
    exports them."""
    return {name: getattr(constraints, name) for name in constraints.__all__}


def constraint_spec(constraint: Constraint) -> dict | None:
    """``constraint`` as plain data: ``{"name": "positive"}`` for one of the exported
    constraint objects, ``{"name": "interval", "args": {"lower_bound": 0.0, ...}}`` for an
    exported constraint class whose arguments are numbers, tensors or such constraints (as
    ``{"constraint": spec}``); None for any other (it cannot be written to a checkpoint)."""
    public = _public_constraints()
    for name, obj in public.items():
        if obj is constraint:
            return {"name": name}
    for name, obj in public.items():
        if isinstance(obj, type) and type(constraint) is obj:
            args = _constructor_args(constraint, obj)
            return None if args is None else {"name": name, "args": args}
    return None


def _constructor_args(constraint: Constraint, cls: type) -> dict | None:
    """The arguments that rebuild ``constraint`` with ``cls(**args)``, read from the attributes
    of the same names; None when one is missing or not plain data."""
    args = {}
    for arg in list(inspect.signature(cls.__init__).parameters)[1:]:
        value = getattr(constraint, arg, None)
        if isinstance(value, Constraint):
            spec = constraint_spec(value)
            if spec is None:
                return None
            args[arg] = {"constraint": spec}
        elif isinstance(value, (numbers.Number, torch.Tensor)):
            args[arg] = value
        else:
            return None
    return args


def constraint_from_spec(spec: dict, name: str = "?") -> Constraint:
    """The constraint a :func:`constraint_spec` describes (``name``: the parameter's, for the
    error)."""
    obj = _public_constraints().get(spec.get("name")) if isinstance(spec, dict) else None
    if obj is None:
        raise CheckpointError(f"the checkpoint's pyro.param '{name}' has constraint {spec!r}, "
                              f"which this Pyro does not export; use the Pyro the run was "
                              f"trained with")
    if "args" not in spec:
        return obj
    args = {key: constraint_from_spec(value["constraint"], name) if isinstance(value, dict)
            else value for key, value in spec["args"].items()}
    return obj(**args)


def set_param(name: str, unconstrained: torch.Tensor, constraint: Constraint) -> None:
    """Make ``unconstrained`` (the very tensor, made a leaf that requires grad) the param
    store's value of ``name`` under ``constraint``, replacing any entry of that name."""
    store = pyro.get_param_store()
    if name in store:
        del store[name]
    store.set_state({"params": {name: unconstrained.requires_grad_(True)},
                     "constraints": {name: constraint}})


def restore_param_store(payload: dict) -> None:
    """Put a checkpoint's "pyro_params" into Pyro's param store and drop its entries under
    "pyro_module_params" (module docstring)."""
    store = pyro.get_param_store()
    for name in payload.get("pyro_module_params") or []:
        if name in store:
            del store[name]
    saved = payload.get("pyro_params") or {}
    specs = payload.get("pyro_constraints") or {}
    for name, value in saved.items():
        if name not in specs or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"the checkpoint's pyro.param '{name}' lacks its value or "
                                  f"constraint; it is incomplete or corrupt")
        set_param(name, value.detach().clone(), constraint_from_spec(specs[name], name))
