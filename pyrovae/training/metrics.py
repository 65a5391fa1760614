"""The numbers of a finished run's metrics.json that the loop itself knows (its kind's
trainer adds its own), and the versions a run was trained with."""

from __future__ import annotations

import platform

import pyro
import torch

from pyrovae._version import __version__
from pyrovae.objectives import objective_name


def loop_metrics(trainer, test: dict) -> dict:
    """metrics.json's numbers of ``trainer`` after its last epoch, from the final test
    numbers ``test`` (the evaluation callback's dict; bits per dimension by the callbacks)."""
    return {
        "train_elbo": trainer.history[-1]["train_elbo"], "test_elbo": test["elbo"],
        "test_elbo_se": test["elbo_se"],
        **trainer.callbacks.bits(trainer.model, test_bpd=-test["elbo"]),
        "test_log_px_z": test["log_px_z"],
        "test_kl": test["kl"], "epochs": trainer.tc.epochs, "steps": trainer.step,
        "seconds": trainer.seconds,
        "train_samples_per_second": trainer.step * trainer.bsz / max(trainer.seconds, 1e-9),
        "objective": objective_name(trainer.config.model, particles=False),
        "fast": trainer.fast, "num_particles": trainer.config.model.num_particles,
        "objective_run": type(trainer.elbo).__name__,
        "optimizer": type(trainer.optimizer).__name__ + (" (fused)" if trainer.fast else ""),
        "test_kl_estimator": test["kl_estimator"],
        "num_train": trainer.n, "num_test": int(trainer.data.test_x.shape[0]),
        "device": str(trainer.device), "versions": versions(), **trainer.dist.metrics(),
    }


def versions() -> dict:
    """The versions a run was trained with (its metrics.json's ``versions``)."""
    return {"pyrovae": __version__, "pyro": pyro.__version__, "torch": torch.__version__,
            "python": platform.python_version()}
