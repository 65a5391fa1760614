"""The pictures and metrics file of a finished run."""

from __future__ import annotations

import platform

import pyro
import torch

from pyrovae._version import __version__
from pyrovae.data import Dataset
from pyrovae.runtime.files import write_csv, write_json
from pyrovae.runtime.interface import has
from pyrovae.reports import save_elbo_curves, save_reconstructions, save_samples
from pyrovae.runs import Run


def write_reports(run: Run, data: Dataset) -> None:
    """metrics.json, history.csv and the PNGs of a finished run (samples and reconstructions
    when the model has those capabilities).

    metrics.json is written first, so a run stopped while the pictures are drawn still has
    its numbers, and again at the end with the numbers the pictures add; history.csv is
    rewritten from the history (the checkpoint's), so resuming a finished run repairs it."""
    out, module = run.path, run.vae
    write_json(out / "metrics.json", run.metrics)
    write_csv(out / "history.csv", run.history)
    if has(module, "sample") and hasattr(module, "input_shape"):
        save_samples(module, out / "samples.png", seed=run.config.train.seed)
    if has(module, "reconstruct") and hasattr(module, "input_shape"):
        run.metrics["reconstruction_mse"] = save_reconstructions(module, data.test_data(),
                                                                 out / "reconstructions.png")
    save_elbo_curves(run.history, out / "elbo.png")
    write_json(out / "metrics.json", run.metrics)


def versions() -> dict:
    """The versions a run was trained with (its metrics.json's ``versions``)."""
    return {"pyrovae": __version__, "pyro": pyro.__version__, "torch": torch.__version__,
            "python": platform.python_version()}
