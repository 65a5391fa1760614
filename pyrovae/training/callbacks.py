"""What the SVI loop calls out to, passed in as one object: the end-of-epoch test numbers,
the per-step and per-epoch writer (TensorBoard) and the end-of-run reports.

The loop knows only this protocol, not the evaluation or the pictures behind it: the layer
above it (``pyrovae.api``) passes the real ones to every Trainer it builds, and installs them
(:func:`install_default`) for a Trainer built without any. The base class here does nothing
(no test numbers: :meth:`Callbacks.evaluate` refuses).
"""

from __future__ import annotations

from pathlib import Path

import torch


class NoBoard:
    """A per-step/epoch writer that writes nothing (the protocol of ``reports.TensorBoard``)."""

    def __init__(self, enabled: bool = False, out_dir: Path | None = None):
        pass

    def step(self, trainer, loss: torch.Tensor) -> None:
        pass

    def epoch(self, trainer, row: dict) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Callbacks:
    """The loop's calls out; each may be overridden or replaced on an instance.

    ``evaluate(model, x, batch_size, seed=)``  test numbers of x [N, D]: a dict with at least
        ``elbo``, ``elbo_se``, ``log_px_z``, ``kl``, ``kl_estimator`` (nats per point)
    ``bits(model, **nats)``   {key: bits per dimension} of each ``key=nats``, or {}
    ``board(enabled, out_dir)``  the writer the loop calls each step and epoch (``NoBoard``)
    ``reports(run, data)``    the finished run's files (metrics.json, history.csv, pictures)
    """

    board = NoBoard

    def evaluate(self, model, x: torch.Tensor, batch_size: int, seed: int = 0) -> dict:
        raise NotImplementedError("this Trainer has no evaluation: pass callbacks= (e.g. "
                                  "pyrovae.api.RunCallbacks())")

    def bits(self, model, **nats) -> dict:
        return {}

    def reports(self, run, data) -> None:
        pass


_DEFAULT: list = [Callbacks]


def install_default(factory) -> None:
    """Make ``factory()`` the callbacks of a Trainer built without any (``pyrovae.api`` does)."""
    _DEFAULT[0] = factory


def default_callbacks() -> Callbacks:
    """The installed default callbacks (:func:`install_default`), a fresh instance."""
    return _DEFAULT[0]()
