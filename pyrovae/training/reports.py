"""The pictures and metrics file of a finished run."""

from __future__ import annotations

from ..data import Dataset
from ..files import write_json
from ..interface import has
from ..reports import save_elbo_curves, save_reconstructions, save_samples
from ..runs import Run


def write_reports(run: Run, data: Dataset) -> None:
    """metrics.json and the PNGs of a finished run (samples and reconstructions when the
    model has those capabilities)."""
    out, module = run.path, run.vae
    if has(module, "sample") and hasattr(module, "input_shape"):
        save_samples(module, out / "samples.png", seed=run.config.train.seed)
    if has(module, "reconstruct") and hasattr(module, "input_shape"):
        run.metrics["reconstruction_mse"] = save_reconstructions(module, data.test_data(),
                                                                 out / "reconstructions.png")
    save_elbo_curves(run.history, out / "elbo.png")
    write_json(out / "metrics.json", run.metrics)
