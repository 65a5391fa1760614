"""Training the M2 model with the shared SVI loop (:class:`pyrovae.training.trainer.Trainer`).

An epoch is one pass over the unlabelled points in batches of ``train.batch_size``; each step
also takes ``label_batch_size`` labelled points, cycling through the labelled set in an order
drawn per round from (seed, round), so the labelled batch is a function of the step and a
resumed run takes the same steps. The loss is :func:`objective.ss_loss`; the ``train_elbo``
of the history is the unlabelled bound U(x) per point. After each epoch: the test ELBO
(test images as unlabelled), and the accuracy of argmax q(y|x) on the validation and test
sets; the metrics add the test accuracy at the epoch of best validation accuracy.
"""

from __future__ import annotations

import pyro
import torch

from pyrovae.runtime.errors import ConfigError
from pyrovae.objectives import objective_for, objective_name
from pyrovae.training.trainer import Trainer
from pyrovae.kinds.ssvae.evaluate import accuracy, evaluate_ssvae
from pyrovae.kinds.ssvae.labels import check_labels, split_labels
from pyrovae.kinds.ssvae.objective import make_ss_elbo, ss_loss
from pyrovae.kinds.ssvae.sampling import save_by_class

_LABEL_SEED_OFFSET = 104729  # the labelled order is a stream apart from the unlabelled one


class SSVAETrainer(Trainer):
    """The SVI loop for ``model.kind = "ssvae"``."""

    def setup_data(self) -> int:
        mc = self.config.model
        self.split = split_labels(self.data.train_y, mc.labels, mc.validation, mc.num_classes,
                                  seed=self.config.data.seed).to(self.device)
        if self.data.test_y is not None:  # (scored by test_accuracy)
            check_labels(self.data.test_y, mc.num_classes, "the test labels")
        self.n_labelled = self.split.labelled.numel()
        self.label_bsz = min(mc.label_batch_size, self.n_labelled)
        self.dist.check_divisible(self.label_bsz, "the labelled batch (model.label_batch_size, "
                                  "at most the number of labels)")
        self.y_labelled = self.data.train_y[self.split.labelled]
        fixed = self.data.train_data(0, self.tc.seed)  # one draw no epoch trains on
        self.x_val = fixed[self.split.validation]
        self.y_val = self.data.train_y[self.split.validation]
        n = self.split.unlabelled.numel()
        if self.tc.batch_size > n:
            raise ConfigError(f"train.batch_size = {self.tc.batch_size} is larger than the "
                              f"{n} unlabelled points; lower it")
        self._round, self._label_order = -1, None
        return n

    def make_objective(self):
        """U(x)'s estimator: TraceEnum_ELBO / Trace_ELBO (``model.elbo``), or the bound and
        gradient estimator of ``[model.objective]`` (y sampled: score, vimco, rws)."""
        config = self.config.model
        if config.objective.default:
            self.objective = config.elbo
            return make_ss_elbo(self.objective)
        self.objective = objective_name(config, particles=False)
        return objective_for(config)

    def prepare(self) -> None:
        self.model_fn, self.guide_fn = self.model.model, self.model.guide
        self.differentiable = True

    def epoch_data(self, epoch: int) -> torch.Tensor:
        x = self.data.train_data(epoch, self.tc.seed)
        self.x_labelled = x[self.split.labelled]  # this epoch's binarization of the labels
        return x[self.split.unlabelled]

    def labelled_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled minibatch (x [b, D], y [b]) of the current step."""
        per_round = self.n_labelled // self.label_bsz
        rnd, pos = divmod(self.step, per_round)
        if rnd != self._round:
            gen = torch.Generator().manual_seed(self.tc.seed * _LABEL_SEED_OFFSET + rnd)
            self._label_order = torch.randperm(self.n_labelled, generator=gen).to(self.device)
            self._round = rnd
        idx = self._label_order[pos * self.label_bsz:(pos + 1) * self.label_bsz]
        idx = self.dist.shard(idx)  # data-parallel: this rank's share, as for the unlabelled
        return self.x_labelled[idx], self.y_labelled[idx]

    def train_step(self, xb: torch.Tensor) -> torch.Tensor:
        """One step on the unlabelled batch xb [B, D] and the step's labelled batch; returns
        the unlabelled part of the loss, -(N_u / B) sum U(x)."""
        x_l, y_l = self.labelled_batch()
        with pyro.validation_enabled(not (self._validated and self.fast)):
            self.optimizer.zero_grad(set_to_none=True)
            loss, unlabelled = ss_loss(self.elbo, self.model, xb, x_l, y_l, self.n,
                                       self.n_labelled, self.config.model.alpha)
            loss.backward()
        self._validated = True
        self.optimizer_step()
        return unlabelled.detach()

    def evaluate(self) -> dict:
        test = evaluate_ssvae(self.model, self.data.test_data(), self.data.test_y,
                              self.tc.eval_batch_size, seed=self.tc.seed)
        test["val_accuracy"] = (accuracy(self.model, self.x_val, self.y_val,
                                         self.tc.eval_batch_size)
                                if self.x_val.shape[0] else float("nan"))
        return test

    def history_row(self, train_elbo: float, test: dict, epoch_seconds: float) -> dict:
        row = super().history_row(train_elbo, test, epoch_seconds)
        row.pop("beta", None)
        seconds = row.pop("seconds")
        return {**row, "val_accuracy": test["val_accuracy"], "test_accuracy": test["accuracy"],
                "seconds": seconds}

    def metrics(self, test: dict) -> dict:
        out = super().metrics(test)
        scored = [r for r in self.history if r["val_accuracy"] == r["val_accuracy"]]  # not NaN
        best = max(scored, key=lambda r: r["val_accuracy"]) if scored else None
        mc = self.config.model
        return {"test_accuracy": test["accuracy"], "val_accuracy": test["val_accuracy"],
                "best_val_epoch": best["epoch"] if best else None,
                "best_val_accuracy": best["val_accuracy"] if best else None,
                "test_accuracy_at_best_val": best["test_accuracy"] if best else None,
                **out, "labels": self.n_labelled, "num_unlabelled": self.n,
                "num_validation": int(self.split.validation.numel()),
                "alpha": mc.alpha, "enumerate": mc.enumerate if mc.elbo == "enum" else None}

    def write_reports(self, run) -> None:
        super().write_reports(run)
        save_by_class(run.model, run.path / "by_class.png", n_columns=10, seed=self.tc.seed)
        save_by_class(run.model, run.path / "analogies.png", n_columns=10,
                      x=self.data.test_data()[:10])
