"""The experiment tracker every backend shares (``train.tracking``, chosen in
``pyrovae.integrations.tracking``): what one training run logs, and when.

    params       the resolved config, flattened to dotted keys (``model.latent_dim``,
                 ``model.prior.name``, ``train.lr``, ...); each value as JSON text, a string
                 bare (``[128]``, ``0.003``, ``true``, ``meanfield``)
    epoch/<c>    every numeric column c of history.csv (train_elbo, test_elbo, test_kl,
                 beta, seconds, ...) at step = the epoch (1, 2, ...)
    <key>        every number of metrics.json (test_elbo, train_elbo, reconstruction_mse,
                 seconds, ...) at step = the last epoch
    artifacts    config.toml, metrics.json, history.csv, the model card and the PNGs of the
                 run folder (not the checkpoint)

A tracker is called like the TensorBoard writer (``step``, ``epoch``, ``flush``, ``close``;
``pyrovae.training.callbacks``), then ``finish(run)`` after the run's reports are written, or
``fail(err)`` when training stops with an error. The backend's run starts at the first call.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pyrovae.runs.checkpoint import CHECKPOINT_NAME
from pyrovae.runs.folder import MODEL_CARD
from pyrovae.training.guards import TrainingInterrupted

#: the run folder's files logged as artifacts (with every ``*.png`` beside them)
ARTIFACT_FILES = ("config.toml", "metrics.json", "history.csv", MODEL_CARD)


def flat_config(config) -> dict[str, str]:
    """The run's config as ``{"model.latent_dim": "8", "train.lr": "0.003", ...}``: nested
    tables joined with dots, each value as JSON text (a string bare)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value if isinstance(value, str) else json.dumps(value, default=str)

    walk("", config.to_dict())
    return flat


def numbers(values: dict, skip=()) -> dict[str, float]:
    """The finite int and float entries of ``values`` (not bools), as floats."""
    return {k: float(v) for k, v in values.items()
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def run_files(out_dir: Path) -> list[Path]:
    """The run folder's files that are logged as artifacts (:data:`ARTIFACT_FILES` and the
    PNGs), those that exist."""
    named = [out_dir / name for name in ARTIFACT_FILES]
    return [p for p in named + sorted(out_dir.glob("*.png")) if p.is_file()]


class Tracker:
    """One tracked training run; a backend fills in ``check``, ``start``, ``log``,
    ``finish_run`` and ``end``.

    The backend's run starts at the first call (so a run refused before training leaves
    none), with ``resumed`` true when the run folder already held a checkpoint."""

    name = ""

    def __init__(self, config, out_dir: Path):
        self.config, self.out_dir = config, out_dir
        self.started = self.ended = False

    @classmethod
    def check(cls, train) -> None:
        """Import the backend's package or raise the one-line ConfigError naming the fix."""
        raise NotImplementedError

    def _ensure(self) -> None:
        if not self.started:
            self.started = True
            self.start(resumed=(self.out_dir / CHECKPOINT_NAME).exists())

    def step(self, trainer, loss) -> None:
        if not self.started:
            self._ensure()

    def epoch(self, trainer, row: dict) -> None:
        self._ensure()
        values = numbers(row, skip=("epoch", "step"))
        self.log({f"epoch/{key}": value for key, value in values.items()}, row["epoch"])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """End of the loop: the run stays open for :meth:`finish` (the reports)."""

    def finish(self, run) -> None:
        """After the reports: metrics.json's numbers and the run folder's files, then end."""
        self._ensure()
        last = run.history[-1]["epoch"] if run.history else 0
        self.finish_run(dict(run.metrics), last, run_files(self.out_dir))
        self.ended = True
        self.end(failed=False)

    def fail(self, err: BaseException) -> None:
        """Training stopped: end a started run as killed (a signal) or failed."""
        if self.started and not self.ended:
            self.ended = True
            self.end(failed=True, killed=isinstance(err, (KeyboardInterrupt,
                                                         TrainingInterrupted)))

    # the backend's part
    def start(self, resumed: bool) -> None:
        raise NotImplementedError

    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish_run(self, metrics: dict, step: int, files: list[Path]) -> None:
        raise NotImplementedError

    def end(self, failed: bool, killed: bool = False) -> None:
        raise NotImplementedError
