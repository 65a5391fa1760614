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
(``purge_step``), so the curves have no doubled stretch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import ConfigError, PyroVAEError
from ..evaluation.diagnostics import layer_diagnostics
from ..evaluation.traces import eval_mode
from ..interface import has
from ..kl import beta_at
from ..rng import seeded
from .plots import reconstruction_grid, sample_grid

TENSORBOARD_DIR = "tensorboard"
LAYER_POINTS = 1000  # test points for the per-layer KL of each epoch
INSTALL_HINT = "pip install 'pyrovae[tensorboard]'"


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError naming the fix."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        raise ConfigError(f"train.tensorboard = true needs the tensorboard package; install "
                          f"it with: {INSTALL_HINT} (or set train.tensorboard = false)") from None
    return SummaryWriter


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
