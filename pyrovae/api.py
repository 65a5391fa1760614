"""The public face above the SVI loop: ``train()`` resolves the config (a model config of any
kind, a RunConfig, or a user's module), checks the run folder, builds the kind's Trainer with
its callbacks, resumes from a checkpoint, runs the loop and writes the reports.

The wiring lives here, not in the loop: :class:`RunCallbacks` hands the Trainer the
end-of-epoch evaluation (``pyrovae.evaluation``), the TensorBoard writer and the end-of-run
pictures (``pyrovae.reports``); a user's module becomes its ``ModuleConfig`` here
(:func:`resolve_config`). ``pyrovae.train`` and ``pyrovae.training.train`` are :func:`train`.
"""

from __future__ import annotations

import signal
from pathlib import Path

import torch

from pyrovae.config import RunConfig
from pyrovae.data import Dataset
from pyrovae.data.fingerprint import data_fingerprint
from pyrovae.evaluation import evaluate_elbo
from pyrovae.evaluation.bits import bpd_keys
from pyrovae.kinds.resolve import resolve_config
from pyrovae.reports import save_elbo_curves, save_reconstructions, save_samples
from pyrovae.reports.model_card import write_model_card
from pyrovae.reports.tensorboard import TensorBoard
from pyrovae.runs import (CHECKPOINT_NAME, Run, check_run_dir, config_text, create_run_dir,
                          load_checkpoint)
from pyrovae.runs.checkpoint import checkpoint_config, unsaved_run_error
from pyrovae.runs.folder import clean_temp_files, discard_unsaved_run, missing_folders
from pyrovae.runs.load import given_model, refuse_unimportable
from pyrovae.runtime import distributed
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.files import atomic_write, write_csv, write_json
from pyrovae.runtime.interface import has
import pyrovae.training
from pyrovae.training import failures
from pyrovae.training.callbacks import Callbacks, install_default
from pyrovae.training.checks import check_data_plate, check_resumable, check_same_data
from pyrovae.training.failures import activity
from pyrovae.training.guards import TrainingInterrupted, stop_on_signals
from pyrovae.training.trainer import Trainer, trainer_class

__all__ = ["train", "resolve_config", "Trainer", "RunCallbacks", "write_reports"]


class RunCallbacks(Callbacks):
    """The loop's calls out for a real run: the test ELBO (``evaluate_elbo``: analytic KL
    where one exists, the same expectation as every objective with less variance), bits per
    dimension, TensorBoard (``train.tensorboard``), :func:`write_reports`, and the experiment
    tracker of ``config.train.tracking`` (``pyrovae.integrations.tracking``, docs/tracking.md)
    when built with the run's ``config``."""

    evaluate = staticmethod(evaluate_elbo)
    bits = staticmethod(bpd_keys)

    def __init__(self, config: RunConfig | None = None):
        self.config, self.tracker = config, None

    def board(self, enabled: bool, out_dir: Path | None):
        """TensorBoard, with the tracker beside it (a missing package is refused now)."""
        tensorboard = TensorBoard(enabled, out_dir)
        if self.config is None or self.config.train.tracking == "none":
            return tensorboard
        from pyrovae.integrations.tracking import Boards, make_tracker

        self.tracker = make_tracker(self.config, out_dir)
        return tensorboard if self.tracker is None else Boards(tensorboard, self.tracker)

    def reports(self, run: Run, data: Dataset) -> None:
        write_reports(run, data)
        if self.tracker is not None:  # metrics.json and the pictures, then the run ends
            self.tracker.finish(run)


install_default(RunCallbacks)  # for a Trainer built without callbacks


def write_reports(run: Run, data: Dataset) -> None:
    """metrics.json, history.csv, the PNGs of a finished run (samples and reconstructions
    when the model has those capabilities) and its model card, README.md (last: it shows the
    numbers of metrics.json).

    metrics.json is written first, so a run stopped while the pictures are drawn still has
    its numbers, and again at the end with the numbers the pictures add; history.csv is
    rewritten from the history (the checkpoint's), so resuming a finished run repairs it."""
    out, module = run.path, run.model
    write_json(out / "metrics.json", run.metrics)
    write_csv(out / "history.csv", run.history)
    if has(module, "sample") and hasattr(module, "input_shape"):
        save_samples(module, out / "samples.png", seed=run.config.train.seed)
    if has(module, "reconstruct") and hasattr(module, "input_shape"):
        run.metrics["reconstruction_mse"] = save_reconstructions(module, data.test_data(),
                                                                 out / "reconstructions.png")
    save_elbo_curves(run.history, out / "elbo.png")
    write_json(out / "metrics.json", run.metrics)
    write_model_card(run)  # README.md: what, on which data, the numbers, how to load it


def train(config, data: Dataset, out: str | Path | None = None, force: bool = False,
          resume: bool = False, **train_options) -> Run:
    """Train a model on ``data`` and (if ``out`` is given) write a run folder there.

    ``config`` is a model config (:class:`VAEConfig`, :class:`SSVAEConfig`, ...; then
    ``train_options`` such as ``epochs=10``, ``batch_size=128``, ``lr=1e-3``, ``seed=0``,
    ``device="cpu"`` fill the train section), a whole :class:`RunConfig`, or your own
    ``PyroModule`` following the model interface (``pyrovae.runtime.interface``; it is trained as it
    is and recorded by import path and constructor arguments, so ``pyrovae.load`` and every
    command can rebuild it; a class defined in a notebook, a script or a function is recorded
    as such, and ``pyrovae.load(out, model=MyVAE)`` rebuilds it). ``resume=True`` continues
    the run in ``out`` from its checkpoint (``epochs`` may be raised); for a module the run
    may then be given as its class, ``train(MyVAE, data, out=..., resume=True)``, which is
    called with the recorded arguments. Returns a :class:`Run` with the trained model, the
    per-epoch history and the final metrics (ELBOs in nats per data point, higher is better).

    A run that fails (or is stopped) before its first checkpoint leaves no half-made folder: a
    folder this call made is removed, one that existed keeps all but training's files; a
    folder holding a checkpoint is kept, to resume. Your module raising anywhere (its import,
    ``__init__``, ``model``/``guide`` at any step) is a one-line :class:`ModuleFailed` naming
    the module and the ``file:line`` where it failed (the original exception is its cause).

    Started by ``torchrun --nproc_per_node=R`` (WORLD_SIZE > 1), it trains data-parallel: each
    process takes 1/R of every batch, the gradients are averaged, rank 0 alone writes ``out``
    (the other ranks' Run has no path); see docs/distributed.md.
    """
    if isinstance(config, type) and issubclass(config, torch.nn.Module):
        config = _resumed_module(config, out, resume)
    module = config if isinstance(config, torch.nn.Module) else None
    config = resolve_config(config, data, train_options, strict=out is not None)
    # under torchrun: join the other processes; rank 0 alone writes the run folder
    context = distributed.init(config.train.device)
    context.run_dir = out
    writer = context.writer
    # the data's sha256, recorded in the checkpoint and metrics.json, checked on resume
    fingerprint = data_fingerprint(data) if out is not None else None

    # the folders this call makes (taken back, with what it wrote, if it fails before the
    # first checkpoint); None: it makes none (resume, no out=, not the writing rank)
    created = missing_folders(out) if out is not None and writer and not resume else None
    made = []  # [True] once this call prepares the folder (create_run_dir): it is then ours

    def setup():  # on every rank; a refusal on any rank stops all of them (context.agree)
        payload, run_config = None, config
        if resume:
            if out is None:
                raise ConfigError("resume=True needs out= the run folder to continue")
            out_dir = Path(out)
            _refuse_unsaved(out_dir, writer)
            payload = load_checkpoint(out_dir)
            saved = checkpoint_config(payload, out_dir)
            run_config = check_resumable(saved, config, out_dir)
            check_same_data(payload, fingerprint, out_dir)
            if module is None:  # (pyrovae train --resume)
                refuse_unimportable(run_config.model, f'pyrovae.train({{name}}, data, '
                                                      f'out="{out_dir}", resume=True)')
        elif out is not None:
            out_dir = check_run_dir(out, force) if writer else Path(out)
        else:
            out_dir = None
        try:
            # (checks the device, the data and the model)
            trainer = trainer_class(run_config)(run_config, data, out_dir if writer else None,
                                                module, callbacks=RunCallbacks(run_config))
            if run_config.model.kind == "module":  # a plate that ignores n_data: one line
                check_data_plate(trainer.model,
                                 trainer.data.train_data(1, run_config.train.seed)[:2], trainer.n)
        except Exception as err:  # the user's module failing: one line naming it and where
            raise_module_failure(err, run_config, module)
        if writer and out_dir is not None and payload is None:
            made.append(True)
            create_run_dir(out_dir, force)  # (also removes stale temporary files)
        return trainer, run_config, out_dir, payload

    trainer = None
    try:
        trainer, config, out_dir, payload = context.agree(setup)
        trainer.data_fingerprint = fingerprint
        if payload is not None:
            if writer:
                clean_temp_files(out_dir)  # those of a write killed mid-way (e.g. kill -9)
            trainer.restore(payload)
            trainer.save()  # the checkpoint now carries the resumed config (e.g. more epochs)
        if out_dir is not None and writer:
            atomic_write(out_dir / "config.toml", config_text(config))
        test = trainer.run()
        if out_dir is None or not writer:
            return Run(trainer.model.eval(), config, None, trainer.history, trainer.metrics(test))
        return _finish(trainer, config, out_dir, test, fingerprint)
    except BaseException as err:
        if trainer is not None and getattr(trainer.callbacks, "tracker", None) is not None:
            trainer.callbacks.tracker.fail(err)  # the tracked run ends as failed or killed
        failed = None
        if trainer is not None and isinstance(err, Exception):
            failed = module_failure(err, config, trainer.model, trainer)
        if made and created is not None:  # a folder of this call without a checkpoint
            discard_unsaved_run(Path(out), created)
        if failed is None:
            raise
        raise failed from err


def raise_module_failure(err: Exception, config: RunConfig, module, trainer=None):
    """Raise ``err`` as a :class:`ModuleFailed` (from ``err``) where it is the user's module
    failing (:func:`module_failure`), else ``err`` itself."""
    failed = module_failure(err, config, module, trainer)
    if failed is None:
        raise err
    raise failed from err


def module_failure(err: BaseException, config: RunConfig, module, trainer=None):
    """:func:`failures.module_failure` for a run of a user's module (None for another kind):
    where it failed, and, when the run folder keeps a checkpoint, how to resume it."""
    if config.model.kind != "module":
        return None
    where = activity(err, *((trainer.step, trainer.epoch) if trainer is not None else ()))
    out_dir = getattr(trainer, "out_dir", None)
    after = (f", or resume its last checkpoint: pyrovae train --resume {out_dir}"
             if out_dir is not None and (out_dir / CHECKPOINT_NAME).exists() else "")
    return failures.module_failure(err, config.model.target, module, where, after)


def _refuse_unsaved(out_dir: Path, writer: bool) -> None:
    """Refuse to resume a folder whose training stopped before its first checkpoint (killed
    while writing it: its temporary file is removed) in one line saying how to start again."""
    refusal = unsaved_run_error(out_dir)
    if refusal is not None:
        if writer:
            clean_temp_files(out_dir)
        raise refusal


def _resumed_module(cls: type, out, resume: bool) -> torch.nn.Module:
    """``train(MyVAE, data, out=RUN, resume=True)``: the class called with the arguments that
    RUN recorded (its checkpoint's config); a class without ``resume`` is refused in one line."""
    if not resume or out is None:
        raise ConfigError(f"train() got the class {cls.__name__}, not a model: pass an instance, "
                          f"{cls.__name__}(...), to start a run (a class is rebuilt from a run's "
                          f"recorded arguments only to resume it: out=RUN, resume=True)")
    _refuse_unsaved(Path(out), distributed.is_writer())
    payload = load_checkpoint(Path(out))
    saved = checkpoint_config(payload, out)
    try:
        return given_model(cls, saved.model, payload["input_shape"], f"run '{out}'")
    except Exception as err:  # the class's __init__ failing: one line naming it and where
        raise_module_failure(err, saved, None)


def _finish(trainer: Trainer, config: RunConfig, out_dir: Path, test: dict,
            fingerprint: str | None) -> Run:
    """metrics.json and the pictures of a trained run, under the same SIGINT/SIGTERM guard as
    the loop: a first signal lets them finish (a second cuts them short; the checkpoint is
    already whole), then training ends with the interrupted message and status 128+N."""
    where = f"(step {trainer.step}, epoch {config.train.epochs})"
    with stop_on_signals() as stop:
        run = Run(trainer.model.eval(), config, out_dir, trainer.history, trainer.metrics(test))
        if fingerprint is not None:
            run.metrics["data_sha256"] = fingerprint
        try:
            with trainer._disk_errors(out_dir):
                trainer.write_reports(run)
        except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler could be set
            raise TrainingInterrupted(
                f"training interrupted while writing the end-of-run reports {where}; "
                f"checkpoint saved; write them with: pyrovae train --resume {out_dir}",
                stop.signum or signal.SIGINT) from None
    if stop:
        raise TrainingInterrupted(
            f"training interrupted while writing the end-of-run reports {where}; they were "
            f"finished first: the run in {out_dir} is complete", stop.signum)
    return run


# ``pyrovae.training.train`` is :func:`train` for one release: set from here, so the loop's
# package does not import this layer above it
pyrovae.training.train = train
pyrovae.training.resolve_config = resolve_config
