"""Stochastic variational inference: fit a VAE's model and guide by maximising an ELBO.

Each step takes a minibatch x [B, D] sliced from the training tensor (shuffled each epoch,
the last partial batch dropped so every step has the same shape), computes the chosen Pyro
ELBO's differentiable loss -ELBO (scaled to the whole data set by the model's plate),
back-propagates, and takes one Adam step over all parameters (one torch optimizer, not one per
parameter). After each epoch the test ELBO is evaluated, a history row and a checkpoint written.

``fast = true`` (default): the objective's compiled form (``trace`` runs as JitTrace_ELBO,
``meanfield`` as the fixed JitTraceMeanField_ELBO), fused Adam, Pyro's argument validation on
the first step only, and the loss copied to the host only every ``log_every`` steps.
``fast = false`` (the generic path, and always for ``tracegraph``): the Python ELBO, plain Adam,
validation and a host sync on every step. Both compute the same loss from the same Pyro model,
guide and estimator (tested on fixed parameters and draws).

Checkpoints (every ``checkpoint_every`` steps, at epoch ends, and on SIGINT/SIGTERM) hold the
parameters, Adam's state, the random state and the position in the epoch, so ``resume=True``
continues bit for bit where the run stopped. A NaN/inf loss stops training with an error that
names the step, the parameters and the sites, before any checkpoint is overwritten; so does a
distribution that refuses NaN/inf parameters under Pyro's validation (the first step validates),
and Pyro's own "Encountered NaN" warnings are silenced so that the guard's line comes alone.

Global ``pyro.param`` sites of the model or guide (values in Pyro's param store, not in the
module) are found before the first step and trained, averaged, checkpointed and resumed with
the module's parameters (global_params.py).

A KL decomposition with parameters of its own (FactorVAE's discriminator,
objectives/factor_vae.py) is ``self.side``: stepped by its own optimizer after each VAE step,
never by the VAE's, and checkpointed and resumed with the run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from pyrovae.runtime import distributed
from pyrovae.config import RunConfig
from pyrovae.data import Dataset
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.traces import eval_mode, point_traces
from pyrovae.runtime.files import write_csv
from pyrovae.runtime.interface import check_interface, data_view, max_plate_nesting
from pyrovae.objectives.schedules import beta_at
from pyrovae.objectives import (BoundObjective, compiled_form, has_differentiable_loss,
                          objective_for, objective_name)
from pyrovae.runtime.registry import KL_DECOMPOSITIONS, MODEL_KINDS
from pyrovae.runtime.rng import seed_everything, seeded
from pyrovae.runs import describe_device, make_model
from pyrovae.training.averaging import WeightAverage
from pyrovae.training.checkpointing import Checkpointing
from pyrovae.training.callbacks import Callbacks, default_callbacks
from pyrovae.training.checks import check_compatible
from pyrovae.training.global_params import GlobalParams
from pyrovae.training.failures import nonfinite_refusal
from pyrovae.training.guards import FiniteWatch, TrainingInterrupted, silent_nan_warnings, stop_on_signals
from pyrovae.training.lr_schedule import lr_at
from pyrovae.training.programs import bind_programs
from pyrovae.training.optimizer import make_adam
from pyrovae.training.metrics import loop_metrics
from pyrovae._moved import renamed

_PERM_SEED_OFFSET = 7919  # the data order uses a stream apart from dynamic binarization


class Trainer(Checkpointing):
    """The SVI loop of one run; :func:`train` is its public face. It knows no model kind.

    A model kind that needs more than one ELBO step per minibatch registers a subclass as its
    ``trainer`` (``MODEL_KINDS.register(name, build, config=..., trainer=...)``) overriding
    the per-run hooks ``setup_data``, ``make_objective``, ``prepare``, ``epoch_data``,
    ``train_step``, ``evaluate``, ``history_row``, ``metrics`` and ``write_reports``; the loop
    itself is shared.

    ``callbacks`` (:class:`pyrovae.training.callbacks.Callbacks`) are its calls out: the
    end-of-epoch evaluation, the TensorBoard writer and the end-of-run reports; ``pyrovae.api``
    passes them (and installs them as the default, for a Trainer built without any).
    ``model`` is the module being trained (``vae``: its old name, kept for one release).
    """

    def __init__(self, config: RunConfig, data: Dataset, out_dir: Path | None,
                 module: torch.nn.Module | None = None, callbacks: Callbacks | None = None):
        self.config, self.tc, self.out_dir = config, config.train, out_dir
        self.callbacks = callbacks if callbacks is not None else default_callbacks()
        self.kind = MODEL_KINDS.entry(config.model.kind)
        self.dist = distributed.current()  # data-parallel hooks; the identity when alone
        self.device = self.dist.device_for(describe_device(self.tc.device))
        self.dist.check_divisible(self.tc.batch_size, "train.batch_size")
        seed_everything(self.tc.seed)
        try:
            built = module if module is not None else make_model(config.model, data.shape)
            check_interface(built)
            self.model = built.to(self.device)
        except (RuntimeError, MemoryError) as err:  # e.g. latent_dim = 10**8
            if "memory" not in str(err).lower() and not isinstance(err, MemoryError):
                raise
            raise ConfigError(f"the model does not fit in memory on {self.device} "
                              f"({str(err).splitlines()[0][:100]}); make model.latent_dim, "
                              f"hidden or channels smaller") from None
        self.data = data_view(self.model, data).to(self.device)  # as the model reads it
        first_epoch = self.data.train_data(1, self.tc.seed)  # one draw, for both uses below
        check_compatible(config, self.data, self.model, first_epoch)
        self._check_programs(first_epoch[:2])
        self.n = self.setup_data()
        prior = getattr(self.model, "prior", None)  # (an SSVAE has the fixed N(0, I))
        if hasattr(prior, "init_from_data"):  # e.g. VampPrior's pseudo-inputs
            prior.init_from_data(first_epoch, torch.Generator().manual_seed(self.tc.seed))
        kl = getattr(config.model, "kl", None)  # a kind without a KL weight takes no beta
        self.kl = kl if self.kind.capabilities.get("beta") else None
        self._beta_const = (torch.tensor(kl.beta, device=self.device)
                            if self.kl is not None and kl.schedule == "constant" else None)
        self.elbo = self.make_objective()
        self.side = self.side_training()
        self._check_objective(first_epoch[:2])
        self._validated = False
        # the fast path needs a loss tensor (TraceGraph_ELBO only gives loss_and_grads)
        self.fast = self.tc.fast and has_differentiable_loss(self.elbo)
        self.optimizer = make_adam(self.trained_parameters(), self.tc.lr, fused=self.fast)
        self.average = (WeightAverage(self.model, self.tc.ema, extra=self.global_params.named())
                        if self.tc.ema > 0 else None)
        self.bsz = self.tc.batch_size
        self.steps_per_epoch = self.n // self.bsz
        self.history: list[dict] = []
        self.epoch, self.batch, self.step, self.seconds = 1, 0, 0, 0.0
        self.loss_sum = torch.zeros((), device=self.device)
        self.watch = FiniteWatch(self.device)
        self._last_batch = self.data.train_x[:self.bsz]
        # the per-step/epoch writer (TensorBoard: refuses a missing package now)
        self.board = self.callbacks.board(self.tc.tensorboard, out_dir)

    vae = renamed("model")  # the old name of the trained module, kept for one release

    def _check_programs(self, x: torch.Tensor) -> None:
        """Run the guide and the model once on two rows, outside the run's random stream and
        in eval mode, so a module that breaks the interface (a site outside the data plate, no
        observed site) is refused before anything is written or trained; the same run finds
        and claims the programs' global pyro.param sites (``self.global_params``)."""
        with seeded(0), eval_mode(self.model):
            self.global_params = GlobalParams.found_by(
                self.model, lambda: point_traces(self.model, x, enumerate="none"), self.device)
        self._store_names = set(pyro.get_param_store().keys())  # for check_complete
        self._complete = False  # (checked after this process's first step)

    def trained_parameters(self) -> list[torch.Tensor]:
        """Every tensor Adam steps: the module's parameters, then the global pyro.param
        sites' unconstrained values."""
        return [*self.model.parameters(), *self.global_params.tensors]

    def _check_global_params(self) -> None:
        """Refuse a pyro.param that appeared after the run was set up (it is not trained)."""
        self.global_params.check_complete(self._store_names, self.model)
        self._complete = True

    def _check_objective(self, x: torch.Tensor) -> None:
        """Draw a bound's particles once on two rows (as :meth:`_check_programs`), so an
        estimator the model cannot serve (a pathwise gradient for a sampled discrete site) is
        refused before the run folder is written."""
        if isinstance(self.elbo, BoundObjective):
            with seeded(0), eval_mode(self.model), torch.no_grad():
                self.elbo.draw(self.model.model, self.model.guide, x)

    def side_training(self):
        """The KL decomposition's own trained part (FactorVAE's discriminator and its Adam),
        or None (objectives/decompositions.py, ``Decomposition.side_training``)."""
        decomposition = getattr(self.elbo, "decomposition", None)
        if decomposition is None:
            return None
        return decomposition.side_training(getattr(self.config.model, "latent_dim", None),
                                           self.device, self.tc.seed)

    def setup_data(self) -> int:
        """Number of training rows one epoch passes over (here: all of them)."""
        return self.data.num_train

    def make_objective(self):
        """The ELBO estimator; the fast path runs its compiled form where one exists (for
        kinds that allow compiling)."""
        config = self.config.model
        decomposition = getattr(getattr(config, "kl", None), "decomposition", "none")
        compiles = (self.tc.fast and self.kind.capabilities.get("compile", False)
                    and KL_DECOMPOSITIONS.capability(decomposition, "compiles", True))
        elbo = objective_for(config, max_plate_nesting(self.model), compiled=compiles)
        self.objective = objective_name(config, False) if isinstance(elbo, BoundObjective) else (
            compiled_form(config.elbo) if compiles else config.elbo)
        return elbo

    def epoch_data(self, epoch: int) -> torch.Tensor:
        """The [n, D] rows that ``epoch`` shuffles into minibatches."""
        return self.data.train_data(epoch, self.tc.seed)

    # ---- the loop ---------------------------------------------------------------------------

    def _compile(self) -> None:
        """Trace JIT objectives once, outside the run's random stream (so resumed and
        uninterrupted runs draw the same numbers)."""
        if self.objective.startswith("jit-"):
            with seeded(0):
                x0 = self.dist.shard(self.data.train_x[:self.bsz])  # the shape and support
                x0 = x0 if self.data.binarize == "none" else x0.round()
                self.elbo.differentiable_loss(self.model_fn, self.guide_fn, *self.step_args(x0),
                                              n_data=self.n)

    def beta_tensor(self) -> torch.Tensor | None:
        """beta_t of the current step as a 0-d tensor (an input of compiled objectives), or
        None for a kind without a KL weight."""
        if self._beta_const is not None:
            return self._beta_const
        if self.kl is None:
            return None
        return torch.tensor(beta_at(self.kl, self.step), device=self.device)

    def step_args(self, xb: torch.Tensor) -> tuple:
        """The positional arguments of model and guide for the minibatch xb: (x, beta_t) for
        kinds with a KL weight, else (x,)."""
        beta = self.beta_tensor()
        return (xb,) if beta is None else (xb, beta)

    def _apply_lr(self) -> None:
        """Set Adam's rate to the schedule's lr_t for this step (constant: left as built)."""
        tc = self.tc
        if tc.lr_schedule != "constant":
            lr = lr_at(tc.lr_schedule, tc.lr, tc.lr_min, self.step, tc.epochs * self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def train_step(self, xb: torch.Tensor) -> torch.Tensor:
        """One SVI step on the minibatch xb [B, D]; returns the loss (-ELBO * N) on the device."""
        args = self.step_args(xb)
        # fast: Pyro's argument checks on the first step only; generic: on every step
        with pyro.validation_enabled(not (self._validated and self.fast)):
            self.optimizer.zero_grad(set_to_none=True)
            if self.differentiable:
                loss = self.elbo.differentiable_loss(self.model_fn, self.guide_fn, *args,
                                                     n_data=self.n)
                loss.backward()
                loss = loss.detach()
            else:
                loss = torch.as_tensor(self.elbo.loss_and_grads(self.model_fn, self.guide_fn,
                                                                *args, n_data=self.n))
        self._validated = True
        self.optimizer_step()
        return loss

    def _guarded_step(self, xb: torch.Tensor) -> torch.Tensor:
        """:meth:`train_step`, where a distribution refusing NaN/inf parameters under Pyro's
        validation (the first step validates) is the NaN guard's error, not a traceback."""
        try:
            with distributed.draws():  # (for kinds whose step bypasses self.guide_fn)
                loss = self.train_step(xb)
                if self.side is not None:  # e.g. FactorVAE's discriminator, on this step's z
                    self.side.step(lambda ps: self.dist.average_gradients(
                        ps, getattr(self, "stop", None)))
                return loss
        except ValueError as err:
            if not nonfinite_refusal(err):
                raise
        self.watch.mark(self.step + 1)
        self._check_finite()  # raises the guard's NonFiniteError
        raise FloatingPointError(f"a distribution refused NaN/inf values at step "
                                 f"{self.step + 1}")  # (the guard found nothing: unreachable)

    def optimizer_step(self) -> None:
        """Average the gradients over the processes (when data-parallel), clip, step Adam."""
        params = self.trained_parameters()
        self.dist.average_gradients(params, getattr(self, "stop", None))
        if self.tc.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, self.tc.clip_norm)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.step + 1)  # (self.step counts this step after it)

    def averaged(self):
        """A context in which the module holds the averaged weights (``train.ema``), or the
        live ones where there is no average."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def _end_epoch(self, epoch_seconds: float) -> dict:
        self._check_finite()  # before any of this epoch's numbers are written
        self.loss_sum = self.dist.mean(self.loss_sum)  # each rank's sum estimates one process's
        train_elbo = -float(self.loss_sum) / (self.steps_per_epoch * self.n)
        with self.averaged():  # the run's numbers are those of the weights it keeps
            test = self.evaluate()
            self.history.append(self.history_row(train_elbo, test, epoch_seconds))
        self.epoch, self.batch = self.epoch + 1, 0
        self.loss_sum = torch.zeros((), device=self.device)
        if self.out_dir is not None:
            with self._disk_errors(self.out_dir / "history.csv"):
                write_csv(self.out_dir / "history.csv", self.history)
        with self.averaged():
            self.board.epoch(self, self.history[-1])
        self.save()
        return test

    def evaluate(self) -> dict:
        """Test-set numbers after an epoch: the evaluation callback's dict (``elbo``,
        ``elbo_se``, ``log_px_z``, ``kl``, ``kl_estimator``)."""
        return self.callbacks.evaluate(self.model, self.data.test_data(),
                                       self.tc.eval_batch_size, seed=self.tc.seed)

    def history_row(self, train_elbo: float, test: dict, epoch_seconds: float) -> dict:
        row = {"epoch": self.epoch, "step": self.step, "train_elbo": train_elbo,
               "test_elbo": test["elbo"], "test_log_px_z": test["log_px_z"],
               "test_kl": test["kl"]}
        if test.get("objective", test["elbo"]) != test["elbo"]:  # a weighted KL (beta != 1)
            row["test_objective"] = test["objective"]
        layers = getattr(self.model, "latent_layers", ())
        if len(layers) > 1 and "kl_sites" in test:  # a hierarchy: each layer's share of test_kl
            row.update({f"test_kl_{name}": test["kl_sites"][name] for name in layers})
        if self.kl is not None:
            row["beta"] = beta_at(self.kl, self.step - 1)
        if self.side is not None:  # e.g. FactorVAE's discriminator: its loss, accuracy, TC
            row.update(self.side.epoch_metrics())
        return {**row, "seconds": epoch_seconds}

    def prepare(self) -> None:
        """Bind the model and guide programs once, as ``model_fn`` and ``guide_fn`` (JIT
        objectives key on their ids), and compile."""
        model, guide = bind_programs(self.model)
        self.model_fn, self.guide_fn = model, distributed.draws(guide)  # draws independent of ranks
        self.differentiable = has_differentiable_loss(self.elbo)
        self._compile()

    def run(self) -> dict:
        """Train from the current position to the last epoch; returns the final test numbers."""
        self.prepare()
        self.dist.broadcast_module(self.model)  # every rank starts from rank 0's parameters
        if self.average is not None and self.step == 0:
            self.average.reset()  # theta_bar_0: the (broadcast) starting weights
        tc, test = self.tc, None
        done = (self.epoch - 1) * self.steps_per_epoch + self.batch
        bar = tqdm(total=tc.epochs * self.steps_per_epoch, initial=done,
                   disable=not (tc.progress and self.dist.writer),
                   unit="step", dynamic_ncols=True, desc="train")
        with stop_on_signals() as stop, silent_nan_warnings():
            self.stop = stop = self.dist.shared_stop(stop)  # all ranks stop at the same step
            while self.epoch <= tc.epochs:
                start = epoch_start = time.perf_counter()
                x_epoch = self.epoch_data(self.epoch)
                gen = torch.Generator().manual_seed(tc.seed * _PERM_SEED_OFFSET + self.epoch)
                order = torch.randperm(self.n, generator=gen).to(self.device)
                self.model.train()
                while self.batch < self.steps_per_epoch:
                    i = self.batch
                    xb = x_epoch[self.dist.shard(order[i * self.bsz:(i + 1) * self.bsz])]
                    self._last_batch = xb
                    self._apply_lr()
                    loss = self._guarded_step(xb)
                    if not self._complete:  # a pyro.param the first step made is not trained
                        self._check_global_params()
                    self.loss_sum += loss
                    self.watch.update(loss, self.step + 1)
                    self.step, self.batch = self.step + 1, self.batch + 1
                    bar.update(1)
                    self.board.step(self, loss)
                    if self.step % tc.log_every == 0 or not self.fast:  # generic: sync each step
                        self._check_finite()
                        bar.set_postfix(epoch=self.epoch, elbo=f"{-float(loss) / self.n:.2f}")
                    if stop or (tc.checkpoint_every and self.step % tc.checkpoint_every == 0):
                        self.seconds += time.perf_counter() - start
                        start = time.perf_counter()
                        self.save()
                    if stop:
                        bar.close()
                        self._interrupted(stop.signum)
                self.seconds += time.perf_counter() - start
                test = self._end_epoch(time.perf_counter() - epoch_start)
                bar.set_postfix(epoch=self.epoch - 1, train_elbo=f"{self.history[-1]['train_elbo']:.2f}",
                                test_elbo=f"{test['elbo']:.2f}")
        bar.close()
        self.board.close()
        if self.average is not None:  # training is over: the run is the averaged weights
            self.average.copy_to_module()
        if test is None:  # resumed a finished run: evaluate what it ended with
            test = self.evaluate()
        return test

    def _interrupted(self, signum: int):
        where = (f"checkpoint saved; resume with: pyrovae train --resume {self.out_dir}"
                 if self.out_dir is not None else "no run folder, nothing saved")
        raise TrainingInterrupted(f"training interrupted at step {self.step} (epoch "
                                  f"{self.epoch}); {where}", signum)

    def write_reports(self, run) -> None:
        """The finished run's files, by the reports callback."""
        self.callbacks.reports(run, self.data)

    def metrics(self, test: dict) -> dict:
        """metrics.json's numbers from the final test numbers (training/metrics.py)."""
        return loop_metrics(self, test)


def trainer_class(config: RunConfig) -> type[Trainer]:
    """The Trainer for the config's model kind: the one its registration names, else this
    generic one."""
    return MODEL_KINDS.capability(config.model.kind, "trainer") or Trainer
