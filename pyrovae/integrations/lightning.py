"""Train a pyrovae model with PyTorch Lightning: the same SVI step as ``pyrovae.train``, driven by
Lightning's ``Trainer`` (its loggers, callbacks, checkpoints and single-device strategies).

    from lightning.pytorch import Trainer
    from pyrovae.integrations.lightning import PyroVAEModule

    module = PyroVAEModule(config, data, seed=0)      # a model config, a RunConfig or a PyroModule
    Trainer(max_epochs=module.epochs, accelerator="cpu").fit(module, datamodule=module.datamodule())
    run = module.to_run()                              # a pyrovae Run; to_run(out=...) writes a folder

:class:`PyroVAEModule` builds its pyrovae run exactly as ``pyrovae.train`` does: the kind's
``Trainer`` with the config and seed (parameters, VampPrior pseudo-inputs, the check of the
programs, the global ``pyro.param`` sites, the objective). Its ``training_step`` takes one minibatch
x [B, D] and returns the objective's differentiable surrogate of -ELBO * N (the data plate scales
the B rows to the N of the data set): ``elbo.differentiable_loss(model, guide, x, beta_t,
n_data=N)``, the very object and call pyrovae's loop differentiates (``TraceGraph_ELBO``: its
score-function surrogate). Lightning then does what pyrovae's loop does after it: zero the
gradients, back-propagate, clip to ``train.clip_norm``, take one Adam step over every parameter
(the module's and the global ``pyro.param`` sites'). beta_t (the KL schedule) and lr_t (the
learning-rate schedule) are functions of the step, as in pyrovae.

:class:`PyroVAEDataModule` (``lightning_data.py``) serves the minibatches of pyrovae's loop:
epoch e (1-based) binarizes the training set with ``Dataset.train_data(e, seed)``, permutes it
with ``randperm(N, Generator().manual_seed(seed * 7919 + e))`` and cuts N // B batches of B rows
(the last partial batch dropped). Its validation and test loaders give the whole test set as one batch,
which ``validation_step`` scores with pyrovae's own evaluation (``evaluate_elbo``, seeded with the
run seed: the numbers ``pyrovae.train`` reports).

What differs, and what is refused in one line (:class:`pyrovae.runtime.errors.ConfigError`):

- ``train.fast``: Lightning runs pyrovae's generic path, as ``train.fast = false`` (the Python
  objective, not its JIT form; plain Adam, not fused; Pyro's checks on every step). The run's
  config records ``fast = false``; on a CPU it takes the steps of ``pyrovae.train(...,
  fast=False)`` bit for bit.
- refused: ``train.ema`` (Polyak averaging), ``train.tensorboard`` (pass Lightning a
  ``TensorBoardLogger``), a model kind whose trainer takes its own step (e.g. the M2 model's
  labelled and unlabelled batches), more than one process (Lightning's DDP, torchrun: pyrovae's
  data-parallel step is ``pyrovae.train`` under torchrun), ``accumulate_grad_batches`` > 1, a
  Lightning device other than ``train.device``, a ``train.lr_schedule`` other than constant when
  the Lightning run is not ``train.epochs`` epochs of N // B steps, and a parameter the optimizer
  would leave untrained.
- ignored: ``train.progress``, ``log_every`` and ``checkpoint_every`` (Lightning's progress bar
  and ``ModelCheckpoint`` do these jobs).

Logged: ``train_loss`` (-ELBO per data point of each step's batch, and ``lr``) every step;
``train_elbo`` (the epoch's mean, pyrovae's history column) and ``test_elbo``, ``test_elbo_se``,
``test_log_px_z``, ``test_kl`` every epoch.

Needs the optional ``lightning`` package (``pip install 'pyrovae[lightning]'``); importing this
module without it is a one-line ConfigError. Nothing in pyrovae imports this module or
``lightning_data``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pyro
import torch

from pyrovae.data import Dataset
from pyrovae.data.fingerprint import data_fingerprint
from pyrovae.runs import Run, check_run_dir, config_text, create_run_dir
from pyrovae.runtime import distributed
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.files import atomic_write
from pyrovae.runtime.rng import seeded
from pyrovae.runtime.traces import eval_mode, point_traces
from pyrovae.kinds.resolve import resolve_config
from pyrovae.training.checks import check_data_plate
from pyrovae.training import failures
from pyrovae.training.failures import nonfinite_refusal
from pyrovae.training.lr_schedule import lr_at
from pyrovae.training.optimizer import make_adam
from pyrovae.training.state import capture_rng, restore_rng
from pyrovae.training.trainer import Trainer, trainer_class
from pyrovae.integrations.lightning_data import PyroVAEDataModule, lightning_package

pl = lightning_package()

#: the Trainer hooks that make a kind's step differ from the generic one (refused)
_OWN_STEP_HOOKS = ("train_step", "setup_data", "epoch_data", "prepare", "optimizer_step")


class PyroVAEModule(pl.LightningModule):
    """A pyrovae model and objective as a ``LightningModule`` (module docstring).

    ``config``: a model config (``VAEConfig``, ...; then ``train_options`` such as ``seed=0``,
    ``batch_size=64``, ``lr=3e-3``, ``epochs=3`` fill its train section, as for
    ``pyrovae.train``), a whole ``RunConfig``, or your own ``PyroModule`` following the model
    interface. ``data``: the pyrovae Dataset it trains on (its size N scales the minibatches;
    give the same data to :meth:`datamodule`). ``model`` is the trained PyroModule, usable by
    ``pyrovae.evaluation`` as it is; :meth:`to_run` returns a pyrovae ``Run``."""

    def __init__(self, config, data: Dataset, **train_options):
        super().__init__()
        module = config if isinstance(config, torch.nn.Module) else None
        config = resolve_config(config, data, train_options, strict=False,
                                caller="PyroVAEModule")
        _refuse_unmatched(config)
        config = replace(config, train=replace(config.train, fast=False))  # (module docstring)
        cls = trainer_class(config)
        own = [h for h in _OWN_STEP_HOOKS if getattr(cls, h) is not getattr(Trainer, h)]
        if own:
            raise ConfigError(f"model.kind = {config.model.kind!r} trains with its own step "
                              f"({cls.__name__}.{own[0]}), which the Lightning module does not "
                              f"take; train this kind with pyrovae.train")
        try:
            trainer = cls(config, data, None, module)  # (pyrovae.api's callbacks: evaluate_elbo)
            if config.model.kind == "module":  # a plate that ignores n_data: one line
                check_data_plate(trainer.model, trainer.data.train_data(1, config.train.seed)[:2],
                                 trainer.n)
        except Exception as err:  # the user's module failing: one line naming it and where
            failed = (failures.module_failure(err, config.model.target, module,
                                              failures.activity(err))
                      if config.model.kind == "module" else None)
            if failed is None:
                raise
            raise failed from err
        trainer.prepare()  # the bound model and guide programs
        self.config, self.source = config, data
        self.model = trainer.model
        self._pyrovae = trainer
        self._start_rng = capture_rng()  # the stream pyrovae's first step would draw from
        self._test, self._test_step, self._last_test = None, None, None
        self._epoch_start = self._batch_start = 0.0

    # ---- what the module offers ----------------------------------------------------------------

    @property
    def pyrovae_trainer(self) -> Trainer:
        """The pyrovae Trainer this module steps (its objective, programs, data and history)."""
        return self._pyrovae

    @property
    def epochs(self) -> int:
        """``train.epochs``: pass ``Trainer(max_epochs=module.epochs)``."""
        return self.config.train.epochs

    @property
    def history(self) -> list[dict]:
        """One row per finished epoch, with pyrovae's columns (history.csv)."""
        return self._pyrovae.history

    def datamodule(self) -> PyroVAEDataModule:
        """The loaders of this run: its data as the model reads it, ``train.batch_size``, the
        run seed."""
        tc = self.config.train
        return PyroVAEDataModule(self._pyrovae.data, tc.batch_size, tc.seed)

    def trained_parameters(self) -> list[torch.Tensor]:
        """Every tensor the optimizer must step: the module's parameters, then the global
        pyro.param sites' unconstrained values."""
        return self._pyrovae.trained_parameters()

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        """The surrogate loss of the rows x [B, D]: -ELBO * N's differentiable estimate."""
        return self._loss(x)[1]

    # ---- the step --------------------------------------------------------------------------------

    def _loss(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(-ELBO * N estimate, its differentiable surrogate) of the minibatch xb [B, D], by the
        run's objective on the step's arguments (x, beta_t)."""
        run = self._pyrovae
        args = run.step_args(xb)
        with pyro.validation_enabled(True), distributed.draws():  # (the generic path's checks)
            if run.differentiable:
                loss = run.elbo.differentiable_loss(run.model_fn, run.guide_fn, *args,
                                                    n_data=run.n)
                return loss.detach(), loss
            surrogate = getattr(run.elbo, "_loss_and_surrogate_loss", None)
            if surrogate is None:
                raise ConfigError(f"objective {type(run.elbo).__name__} gives no differentiable "
                                  f"loss for Lightning to back-propagate; choose another "
                                  f"model.elbo")
            elbo, loss = surrogate(run.model_fn, run.guide_fn, args, {"n_data": run.n})
            return -torch.as_tensor(elbo).detach(), loss

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        run, tc = self._pyrovae, self.config.train
        run.step = self.global_step  # beta_t and lr_t are functions of the step
        run._last_batch = batch
        if tc.lr_schedule != "constant":
            lr = lr_at(tc.lr_schedule, tc.lr, tc.lr_min, run.step, tc.epochs * run.steps_per_epoch)
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = lr
        try:
            value, loss = self._loss(batch)
        except ValueError as err:  # a distribution refusing NaN/inf: the NaN guard's line
            if not nonfinite_refusal(err):
                raise
            run.watch.mark(run.step + 1)
            run._check_finite()
            raise
        run.loss_sum += value
        run.watch.update(value, run.step + 1)
        self.log("train_loss", value / run.n, on_step=True, on_epoch=False, prog_bar=True,
                 batch_size=batch.shape[0])
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True,
                 on_epoch=False, batch_size=batch.shape[0])
        return loss

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        run = self._pyrovae
        run.step, run.batch = self.global_step, run.batch + 1
        if not run._complete:  # a pyro.param or a parameter the first step made is refused
            run._check_global_params()
            self._check_optimizer()
        run._check_finite()  # the generic path's NaN guard, every step
        run.seconds += time.perf_counter() - self._batch_start

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One Adam (not fused) over :meth:`trained_parameters` at ``train.lr``: pyrovae's
        generic optimizer. A parameter still to be created lazily is created first by one run
        of the programs."""
        if self._uninitialized():
            with seeded(0), eval_mode(self.model), torch.no_grad():
                point_traces(self.model, self._pyrovae.data.train_x[:2], enumerate="none")
        lazy = self._uninitialized()
        if lazy:
            raise ConfigError(f"parameter '{lazy[0]}' is still uninitialized after a run of "
                              f"model and guide, so the optimizer cannot train it; give it a "
                              f"shape in __init__ or use it on every run of the programs")
        self._pyrovae.optimizer = make_adam(self.trained_parameters(), self.config.train.lr,
                                        fused=False)
        return self._pyrovae.optimizer

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        """``train.clip_norm`` over every trained tensor (as pyrovae's loop), then Lightning's
        own ``gradient_clip_val`` when one is given."""
        if self.config.train.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.trained_parameters(), self.config.train.clip_norm)
        if gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- checks before and after the first step -----------------------------------------------

    def _uninitialized(self) -> list[str]:
        lazy = torch.nn.parameter.UninitializedParameter
        return [name for name, p in self.model.named_parameters() if isinstance(p, lazy)]

    def _check_optimizer(self) -> None:
        """Refuse a parameter (or global pyro.param site) no optimizer of the Trainer steps."""
        stepped = {id(p) for opt in self.trainer.optimizers for g in opt.param_groups
                   for p in g["params"]}
        named = [*self.model.named_parameters(),
                 *((f"pyro.param '{k}'", t) for k, t in self._pyrovae.global_params.named().items())]
        left = [name for name, p in named if id(p) not in stepped]
        if left:
            raise ConfigError(f"parameter {left[0]} is in no optimizer of the Lightning Trainer "
                              f"({len(left)} in all), so it would not be trained; optimize "
                              f"PyroVAEModule.trained_parameters() (configure_optimizers)")

    def on_fit_start(self) -> None:
        trainer, run, tc = self.trainer, self._pyrovae, self.config.train
        if trainer.world_size > 1:
            raise ConfigError(f"the Lightning module trains in one process, not "
                              f"{trainer.world_size}: pyrovae's data-parallel step (each process "
                              f"1/R of every batch, draws independent of R) is pyrovae.train "
                              f"under torchrun (docs/distributed.md); pass devices=1")
        if trainer.accumulate_grad_batches != 1:
            raise ConfigError(f"accumulate_grad_batches = {trainer.accumulate_grad_batches} "
                              f"changes pyrovae's step (one Adam step per minibatch); leave it "
                              f"at 1 and raise train.batch_size instead")
        if not _same_device(torch.device(self.device), run.device):
            raise ConfigError(f"train.device = {tc.device!r} holds the data and pyro.param sites "
                              f"on {run.device} but the Lightning Trainer runs on {self.device}; "
                              f"set train.device to match or pass accelerator="
                              f"{run.device.type!r}")
        total = tc.epochs * run.steps_per_epoch
        if tc.lr_schedule != "constant" and trainer.estimated_stepping_batches != total:
            raise ConfigError(f"train.lr_schedule = {tc.lr_schedule!r} runs over train.epochs * "
                              f"(N // batch_size) = {total} steps but this Lightning run takes "
                              f"{trainer.estimated_stepping_batches}; pass max_epochs="
                              f"{tc.epochs} and the module's datamodule()")

    def on_train_start(self) -> None:
        self._check_optimizer()
        if self.global_step == 0 and self._start_rng is not None:
            restore_rng(self._start_rng)  # what ran since __init__ does not shift the draws
            self._start_rng = None

    # ---- epochs and evaluation --------------------------------------------------------------

    def on_train_epoch_start(self) -> None:
        run = self._pyrovae
        run.epoch, run.batch = self.current_epoch + 1, 0
        run.loss_sum = torch.zeros((), device=run.device)
        self._epoch_start = time.perf_counter()

    def _score(self, batch: torch.Tensor, batch_idx: int) -> dict:
        """pyrovae's test numbers of the rows ``batch`` (the end-of-epoch evaluation), logged."""
        run = self._pyrovae
        test = run.callbacks.evaluate(run.model, batch, self.config.train.eval_batch_size,
                                      seed=self.config.train.seed)
        for key in ("elbo", "elbo_se", "log_px_z", "kl"):
            self.log(f"test_{key}", test[key], on_step=False, on_epoch=True,
                     batch_size=batch.shape[0])
        return test

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        test = self._score(batch, batch_idx)
        if self.trainer.sanity_checking:
            return
        # one batch (the datamodule's whole test set): the epoch's numbers, kept for its row
        self._test = test if batch_idx == 0 else None
        self._test_step = self.global_step

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._score(batch, batch_idx)

    def on_train_epoch_end(self) -> None:
        """The epoch's history row (pyrovae's columns): the validation's numbers of this step,
        or pyrovae's evaluation of the test set where no validation ran."""
        run = self._pyrovae
        run._check_finite()
        steps = max(run.batch, 1)
        train_elbo = -float(run.loss_sum) / (steps * run.n)
        test = (self._test if self._test is not None and self._test_step == self.global_step
                else run.evaluate())
        run.step = self.global_step
        run.history.append(run.history_row(train_elbo, test,
                                           time.perf_counter() - self._epoch_start))
        self._last_test = test
        self.log("train_elbo", train_elbo, on_step=False, on_epoch=True)
        run.epoch, run.batch = run.epoch + 1, 0
        run.loss_sum = torch.zeros((), device=run.device)

    # ---- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Lightning's checkpoint also holds the global pyro.param sites and the history."""
        run = self._pyrovae
        checkpoint["pyrovae"] = {"pyro_params": {k: t.detach().clone() for k, t in
                                                 run.global_params.named().items()},
                                 "history": list(run.history), "seconds": run.seconds}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("pyrovae")
        if saved is not None:
            self._pyrovae.global_params.load(saved["pyro_params"])
            self._pyrovae.history[:] = saved["history"]
            self._pyrovae.seconds = saved["seconds"]

    # ---- the run ------------------------------------------------------------------------------

    def to_run(self, out: str | Path | None = None, force: bool = False) -> Run:
        """The trained run as a pyrovae :class:`~pyrovae.runs.Run` (model, config, history,
        metrics: the numbers ``pyrovae.train`` reports). With ``out``: also a run folder there
        (checkpoint, config.toml, metrics.json, history.csv, pictures), which ``pyrovae.load``
        and every command read."""
        run = self._pyrovae
        if not run.history:
            raise ConfigError("to_run() needs a trained epoch: call Trainer.fit(module, ...) "
                              "first")
        run.step = self.global_step
        test = self._last_test if self._last_test is not None else run.evaluate()
        metrics = run.metrics(test)
        if out is None:
            return Run(self.model.eval(), self.config, None, run.history, metrics)
        out_dir = check_run_dir(out, force)
        create_run_dir(out_dir, force)
        atomic_write(out_dir / "config.toml", config_text(self.config))
        run.out_dir = out_dir
        run.data_fingerprint = data_fingerprint(self.source)
        # (checked after the first step; entries of runs since then are not this run's)
        run._store_names |= set(pyro.get_param_store().keys())
        try:
            run.save()
        finally:
            run.out_dir = None
        result = Run(self.model.eval(), self.config, out_dir, run.history, metrics)
        result.metrics["data_sha256"] = run.data_fingerprint
        run.write_reports(result)
        return result


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether a and b are one device ("cuda" is the current GPU, any index)."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _refuse_unmatched(config) -> None:
    """Refuse, in one line, the train settings whose numbers Lightning cannot reproduce."""
    tc = config.train
    if tc.ema > 0:
        raise ConfigError(f"train.ema = {tc.ema} (Polyak averaging) is not reproduced by the "
                          f"Lightning module; set train.ema = 0, or train with pyrovae.train")
    if tc.tensorboard:
        raise ConfigError("train.tensorboard = true is pyrovae's own writer; under Lightning set "
                          "it to false and pass Trainer(logger=TensorBoardLogger(...))")
    tracking = getattr(tc, "tracking", "none")  # (pyrovae's own experiment tracker)
    if tracking != "none":
        raise ConfigError(f"train.tracking = {tracking!r} is pyrovae's own tracker; under "
                          f"Lightning set it to 'none' and pass Trainer(logger=...) (e.g. "
                          f"MLFlowLogger, WandbLogger)")
    if distributed.launched():
        raise ConfigError("the Lightning module trains in one process: pyrovae's data-parallel "
                          "step is pyrovae.train under torchrun (docs/distributed.md)")
