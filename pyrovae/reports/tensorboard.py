"""TensorBoard view of a training run (``train.tensorboard = true``).

Needs the optional ``tensorboard`` package (``pip install 'pyrovae[tensorboard]'``); without it
a run asking for TensorBoard is refused in one line before its run folder is written. The
events go to RUN/tensorboard/ and are written by one process only (rank 0 when
``torch.distributed`` is initialized). They are a view: history.csv and metrics.json stay the
record, and every ``epoch/...`` scalar below is a column of history.csv at the same step.

Scalars, against the global optimizer step:

    step/elbo        the minibatch ELBO estimate per data point (-loss / N, as on the
                     progress bar), every ``train.log_every`` steps
    step/lr          Adam's learning rate at that step (``train.lr_schedule``)
    step/beta        the KL weight beta_t at that step (kinds with one)
    step/grad_norm   the global L2 norm of the gradient Adam applied (after ``clip_norm``)
    epoch/<column>   every numeric column of history.csv (train_elbo, test_elbo,
                     test_log_px_z, test_kl, beta, seconds, ...) at the epoch's last step
    epoch/kl_<site>  for a model with several latent layers (a ``latent_layers`` attribute):
                     each layer's KL on the first ``LAYER_POINTS`` test points
                     (:func:`pyrovae.evaluation.diagnostics.layer_diagnostics`)

Images per epoch: ``samples`` and ``reconstructions``, the grids of samples.png and
reconstructions.png, when the model has the ``sample`` / ``reconstruct`` capabilities.
Everything is computed in eval mode under a fixed seed, so a run with TensorBoard trains the
same numbers as one without; a resumed run hides the events past its checkpoint
(``purge_step``), so the curves have no doubled stretch. A run that ``train --force`` starts
over an old one removes the old run's event files (those of RUN/tensorboard/, TensorBoard on or
off in the new run) at its first step, so none of them is shown as the new run's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from pyrovae.runtime.errors import ConfigError, PyroVAEError
from pyrovae.evaluation.diagnostics import layer_diagnostics
from pyrovae.runtime.traces import eval_mode
from pyrovae.runtime.files import WriteError, reason
from pyrovae.runtime.interface import has
from pyrovae.objectives.schedules import beta_at
from pyrovae.runtime.rng import seeded
from pyrovae.runs.checkpoint import CHECKPOINT_NAME
from pyrovae.runs.folder import RUN_FILES
from pyrovae.reports.plots import reconstruction_grid, sample_grid

TENSORBOARD_DIR = "tensorboard"
EVENT_FILES = "events.out.tfevents.*"  # the files SummaryWriter writes (glob pattern)
LAYER_POINTS = 1000  # test points for the per-layer KL of each epoch
INSTALL_HINT = "pip install 'pyrovae[tensorboard]'"


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError naming the fix."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        raise ConfigError(f"train.tensorboard = true needs the tensorboard package; install "
                          f"it with: {INSTALL_HINT} (or set train.tensorboard = false, also "
                          f"to resume: --set tensorboard=false)") from None
    return SummaryWriter


def remove_event_files(folder: Path) -> list[Path]:
    """Remove the TensorBoard event files directly in ``folder`` (plain files only: nothing
    else, no sub-folder, no link), then ``folder`` itself if that left it empty; returns the
    files. A file that cannot be removed is a one-line WriteError."""
    removed = []
    if not folder.is_dir() or folder.is_symlink():
        return removed
    for path in sorted(folder.glob(EVENT_FILES)):
        if path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except OSError as err:
                raise WriteError(f"could not remove '{path}' of the old run ({reason(err)}); "
                                 f"fix the folder's permissions or choose another --out",
                                 path, err) from None
            removed.append(path)
    if removed:
        try:
            folder.rmdir()  # when nothing else is in it (a run without TensorBoard now)
        except OSError:
            pass
    return removed


def secondary_rank() -> bool:
    """True in a ``torch.distributed`` process other than rank 0 (which alone writes)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


class TensorBoard:
    """The trainer's TensorBoard hooks; every method does nothing when it is off.

    Built before the run folder is written (so a missing package is refused first); the event
    file is opened at the first write, by rank 0 only.
    """

    def __init__(self, enabled: bool, out_dir: Path | None):
        self.writer_class, self.writer, self.folder = None, None, None
        self.skipped: set[str] = set()  # pictures the model refused to draw
        # a folder that holds a run now is resumed, or replaced by train --force: which one is
        # known at the first step (create_run_dir has then removed a replaced run's checkpoint)
        self.replaced: Path | None = None
        if out_dir is not None and not secondary_rank() and any(
                (Path(out_dir) / name).exists() for name in RUN_FILES):
            self.replaced = Path(out_dir)
        if not enabled:
            return
        if out_dir is None:
            if not secondary_rank():
                warnings.warn("train.tensorboard = true but the run has no folder (out=None): "
                              "no TensorBoard events are written", stacklevel=3)
            return
        self.writer_class = summary_writer_class()
        self.folder = Path(out_dir) / TENSORBOARD_DIR

    @property
    def active(self) -> bool:
        return self.writer_class is not None and not secondary_rank()

    def _start(self) -> None:
        """At the first hook: a run that replaced an old one (``--force``: the folder held a
        run, and now has no checkpoint) removes the old run's event files before any of its
        own; a resumed run (its checkpoint is there) keeps them."""
        run_dir, self.replaced = self.replaced, None
        if not (run_dir / CHECKPOINT_NAME).exists():
            remove_event_files(run_dir / TENSORBOARD_DIR)

    def _open(self, step: int):
        if self.writer is None:
            resumed = self.folder.is_dir() and any(self.folder.iterdir())
            # a resumed run: hide what an earlier process wrote from this step on
            self.writer = self.writer_class(str(self.folder),
                                            purge_step=step if resumed else None)
        return self.writer

    def step(self, trainer, loss: torch.Tensor) -> None:
        """After each optimizer step (``trainer.step`` already counts it); writes every
        ``log_every`` steps."""
        if self.replaced is not None:
            self._start()
        if not self.active:
            return
        writer, step = self._open(trainer.step), trainer.step
        if step % trainer.tc.log_every:
            return
        writer.add_scalar("step/elbo", -float(loss) / trainer.n, step)
        writer.add_scalar("step/lr", trainer.optimizer.param_groups[0]["lr"], step)
        if trainer.kl is not None:  # the weight this step used (as history.csv's beta)
            writer.add_scalar("step/beta", beta_at(trainer.kl, step - 1), step)
        writer.add_scalar("step/grad_norm", grad_norm(trainer.vae.parameters()), step)

    def epoch(self, trainer, row: dict) -> None:
        """After an epoch's history row: its numbers, the per-layer KL and the pictures."""
        if self.replaced is not None:
            self._start()
        if not self.active:
            return
        step = row["step"]
        writer = self._open(step)
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                writer.add_scalar(f"epoch/{key}", value, step)
        vae, seed = trainer.vae, trainer.tc.seed
        with eval_mode(vae), seeded(seed), torch.no_grad():
            if getattr(vae, "latent_layers", None):
                test = trainer.data.test_data()[:LAYER_POINTS]
                layers = layer_diagnostics(vae, test, seed=seed)
                for site in layers["layers"]:
                    writer.add_scalar(f"epoch/kl_{site}", layers[f"kl_{site}"], step)
            pictures = (("samples", "sample", lambda: sample_grid(vae, seed=seed)),
                        ("reconstructions", "reconstruct",
                         lambda: reconstruction_grid(vae, trainer.data.test_data())[0]))
            for name, capability, draw in pictures:
                if (has(vae, capability) and hasattr(vae, "input_shape")
                        and name not in self.skipped):
                    self._picture(writer, name, draw, step)
        writer.flush()

    def _picture(self, writer, name: str, draw, step: int) -> None:
        try:
            writer.add_image(name, draw(), step)
        except PyroVAEError as err:  # a model that needs more to draw it (e.g. a condition)
            self.skipped.add(name)
            warnings.warn(f"TensorBoard: no {name} grid for this model ({err})", stacklevel=2)

    def flush(self) -> None:
        """With each checkpoint: the events up to it are on disk before it is."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def grad_norm(params) -> float:
    """The global L2 norm of the parameters' gradients (0 when none has one)."""
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
