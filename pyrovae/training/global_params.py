"""The global ``pyro.param`` sites of a run: trained, checkpointed and resumed like the module's
parameters.

A model or guide may write ``sigma = pyro.param("sigma", torch.tensor(1.0),
constraint=constraints.positive)``: its value lives in Pyro's global param store, not in the
module (a ``PyroParam`` attribute of a ``PyroModule`` is a module parameter, trained as one).
Before training, the trainer runs the programs once in an empty param store
(``param_store.scope()``); every parameter registered there whose unconstrained tensor is not
one of the module's parameters is a global one of the run. The run then *owns* those names:

- claimed at the start of the run: the store's entry under each name is replaced by the
  code's initial value (a copy, on the run's device), so a run never inherits the values an
  earlier run or load left in the store under the same name. The store's entries under the
  names of the module's own parameters (those a ``PyroModule`` or ``pyro.module`` registers)
  are dropped too: a ``PyroParam`` read while its module's Pyro context is active (in
  ``forward`` or a ``pyro_method``) would otherwise adopt an earlier run's tensor in place of
  its own, which Adam does not step (the checkpoint lists such names as "pyro_module_params",
  which loading it drops from the store as well);
- trained: Adam steps the unconstrained tensor the store holds, with the module's parameters
  (gradient clipping, data-parallel averaging and the ``train.ema`` average cover it too);
- checkpointed under its name with its constraint (``pyrovae.runs.param_store``) and copied
  back in place on resume, bit for bit; ``pyrovae.load`` puts it back into the store.

Refused in one line: a constraint a checkpoint cannot record, and a ``pyro.param`` that first
appears after that first run of the programs (in a branch taken only in training, or only
sometimes), which would otherwise go untrained.
"""

from __future__ import annotations

from typing import Callable

import pyro
import torch

from pyrovae.runtime.errors import CheckpointError
from pyrovae.runtime.interface import InterfaceError
from pyrovae.runs.param_store import constraint_spec, set_param


class GlobalParams:
    """The global pyro.param sites of one run: names, unconstrained tensors (the very tensors
    the param store holds, in the order found) and constraints."""

    def __init__(self, entries: dict, module_names: list[str] = (), adopting: list[str] = ()):
        self.names = list(entries)  # entries: name -> (unconstrained tensor, constraint)
        self.tensors = [t for t, _ in entries.values()]
        self.constraints = {name: c for name, (_, c) in entries.items()}
        self.module_names = list(module_names)  # the store's names of module parameters
        self.adopting = list(adopting)  # those of them that are PyroParams

    @classmethod
    def found_by(cls, module: torch.nn.Module, run_programs: Callable[[], object],
                 device=None) -> GlobalParams:
        """Run ``run_programs()`` (model and guide of ``module``, once) in an empty param store,
        collect the parameters that are not ``module``'s, and claim them (module docstring)."""
        store = pyro.get_param_store()
        with store.scope() as state:
            run_programs()
        own = {id(p) for p in module.parameters()}
        entries, module_names = {}, []
        for name, tensor in state["params"].items():
            if id(tensor) in own:
                module_names.append(name)
                continue
            constraint = state["constraints"][name]
            if constraint_spec(constraint) is None:
                raise InterfaceError(
                    f"pyro.param '{name}' has constraint {constraint!r}, which a checkpoint "
                    f"cannot record; use one of pyro.distributions.constraints (e.g. positive, "
                    f"interval(a, b)) or make it a PyroParam of the module")
            entries[name] = (tensor.detach().to(device).clone(), constraint)
        params = {name for name, _ in module.named_parameters()}
        found = cls(entries, module_names,
                    [name for name in module_names if f"{name}_unconstrained" in params])
        found.claim()
        return found

    def named(self) -> dict:
        """name -> the unconstrained tensor Adam steps."""
        return dict(zip(self.names, self.tensors))

    def claim(self) -> None:
        """Make these tensors the param store's values of their names (replacing any), and
        drop the store's entries under the module's names (it registers its own on use)."""
        store = pyro.get_param_store()
        for name in self.module_names:
            if name in store:
                del store[name]
        for name, tensor in zip(self.names, self.tensors):
            set_param(name, tensor, self.constraints[name])

    def check_complete(self, known: set, module: torch.nn.Module) -> None:
        """Refuse a pyro.param that the store gained since ``known`` (its names when the run
        was set up) and that is neither the module's (by tensor, or by the name PyroModule or
        pyro.module gives it) nor one of these: it is not trained."""
        own = {id(p) for p in module.parameters()} | {id(t) for t in self.tensors}
        names = {name for name, _ in module.named_parameters()}
        late = [name for name, tensor in pyro.get_param_store().named_parameters()
                if name not in known and id(tensor) not in own
                and name.replace("$$$", ".") not in names and f"{name}_unconstrained" not in names]
        if late:
            raise InterfaceError(
                f"pyro.param '{late[0]}' first appeared after the first run of model and guide, "
                f"so it would not be trained; call it on every run of the model or guide (not "
                f"only in training mode or in some branches), or make it a module parameter")

    def checkpoint_entries(self, average=None) -> dict:
        """The checkpoint keys of these parameters (``pyrovae.runs.param_store``): their live
        values, or with ``average`` (a WeightAverage) the averaged ones as "pyro_params" and
        the live ones as "train_pyro_params"; and the store's names of the module's
        PyroParams as "pyro_module_params". {} when there are none of either."""
        entries = {"pyro_module_params": list(self.adopting)} if self.adopting else {}
        if not self.names:
            return entries
        live = {name: t.detach().clone() for name, t in zip(self.names, self.tensors)}
        entries["pyro_constraints"] = {name: constraint_spec(c)
                                       for name, c in self.constraints.items()}
        if average is None:
            return {**entries, "pyro_params": live}
        return {**entries, "pyro_params": average.averaged_extra(), "train_pyro_params": live}

    @torch.no_grad()
    def load(self, saved: dict) -> None:
        """Copy a checkpoint's values into these tensors in place (the optimizer and compiled
        objectives hold them); refuse a checkpoint of other pyro.param sites."""
        if set(saved) != set(self.names):
            raise CheckpointError(
                f"the checkpoint holds the pyro.param sites {sorted(saved)} but the module's "
                f"programs have {sorted(self.names)}; resume with the code the run was trained "
                f"with, or start a new run")
        for name, tensor in zip(self.names, self.tensors):
            tensor.copy_(saved[name])
