"""Polyak averaging of the weights: an exponential moving average (EMA) of the parameters
over the optimizer's steps (``train.ema``).

After step t = 1, 2, ... (theta_t: the parameters Adam just wrote)::

    theta_bar_t = d_t theta_bar_{t-1} + (1 - d_t) theta_t,    d_t = min(ema, (1 + t) / (10 + t))

with theta_bar_0 the starting parameters. The ramp in d_t (a short memory early on, when the
starting point is far from anything worth averaging) reaches ``ema`` after ~10 / (1 - ema)
steps; the average then spans about 1 / (1 - ema) steps. Averaged iterates of a stochastic
optimizer have less noise than the last one (Polyak & Juditsky 1992), which shows as a
better test ELBO/NLL at the same number of steps.

The average is what the run *is*: the per-epoch test numbers, the end-of-run reports and the
checkpoint's ``"model"`` (read by ``pyrovae evaluate`` and every application) hold theta_bar;
training continues from theta, kept in the checkpoint as ``"train_model"``, so a resumed run
takes the same steps bit for bit. Only parameters are averaged; buffers are the live ones.
Parameters outside the module (a run's global ``pyro.param`` sites, ``global_params.py``)
are averaged with them when given as ``extra``; their averages are :meth:`averaged_extra`.
"""

from __future__ import annotations

import contextlib

import torch


def decay_at(ema: float, step: int) -> float:
    """d_t of the average after optimizer step ``step`` (1-based)."""
    return min(ema, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """theta_bar of ``module``'s parameters and of the ``extra`` tensors (name -> tensor the
    optimizer steps), one tensor each, same device/dtype."""

    def __init__(self, module: torch.nn.Module, ema: float, extra: dict | None = None):
        if not 0.0 < ema < 1.0:
            raise ValueError(f"ema = {ema!r} must be in (0, 1)")
        self.ema = ema
        extra = extra or {}
        self.names = [name for name, _ in module.named_parameters()]  # the module's, first
        self.extra_names = list(extra)
        self.params = [p for p in module.parameters()] + list(extra.values())
        self.average = [p.detach().clone() for p in self.params]

    def reset(self) -> None:
        """theta_bar = theta (the start of a run)."""
        with torch.no_grad():
            torch._foreach_copy_(self.average, [p.detach() for p in self.params])

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the parameters after optimizer step ``step`` (1-based)."""
        weight = 1.0 - decay_at(self.ema, step)
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], weight)

    @contextlib.contextmanager
    def applied(self):
        """The module holds theta_bar inside the block and theta again after it."""
        live = [p.detach().clone() for p in self.params]
        self.copy_to_module()
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], live)

    @torch.no_grad()
    def copy_to_module(self) -> None:
        """Write theta_bar into the module's parameters (for good: e.g. when training ends)."""
        torch._foreach_copy_([p.data for p in self.params], self.average)

    def averaged_state_dict(self, module: torch.nn.Module) -> dict:
        """``module.state_dict()`` with theta_bar in place of every parameter (on the CPU side
        as the module's own tensors are; buffers as they are)."""
        state = module.state_dict()
        for name, avg in zip(self.names, self.average[:len(self.names)]):
            state[name] = avg.detach().clone()
        return state

    def averaged_extra(self) -> dict:
        """name -> theta_bar of each ``extra`` tensor (copies)."""
        return {name: avg.detach().clone()
                for name, avg in zip(self.extra_names, self.average[len(self.names):])}

    @torch.no_grad()
    def load_state_dict(self, state: dict, extra: dict | None = None) -> None:
        """theta_bar from a state dict written by :meth:`averaged_state_dict` and, for the
        ``extra`` tensors, a dict written by :meth:`averaged_extra`."""
        extra = extra or {}
        missing = ([name for name in self.names if name not in state]
                   + [name for name in self.extra_names if name not in extra])
        if missing:
            raise KeyError(f"the averaged weights lack {missing[0]!r}")
        saved = [state[name] for name in self.names] + [extra[name] for name in self.extra_names]
        torch._foreach_copy_(self.average, [value.to(avg.device, avg.dtype)
                                            for value, avg in zip(saved, self.average)])
