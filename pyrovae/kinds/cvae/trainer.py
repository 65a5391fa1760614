"""Training a CVAE: the shared SVI loop (:class:`pyrovae.training.trainer.Trainer`) as it is,
with the run's pictures replaced: a CVAE has no unconditional p(x) to draw ``samples.png`` from,
so a finished run gets ``predictions.png`` (quadrants: test images completed from their visible
quadrants) or ``by_class.png`` (label: one row per class) beside ``elbo.png``.

The history's and metrics' ELBOs are conditional: bounds on log p(x_out | x_in) per example.
"""

from __future__ import annotations

from pyrovae.runtime.files import write_csv, write_json
from pyrovae.reports import save_elbo_curves
from pyrovae.training.trainer import Trainer
from pyrovae.kinds.cvae.pictures import save_run_pictures


class CVAETrainer(Trainer):
    """The SVI loop for ``model.kind = "cvae"``."""

    def metrics(self, test: dict) -> dict:
        mc = self.config.model
        return {**super().metrics(test), "condition": mc.condition,
                "visible": mc.visible if mc.condition == "quadrants" else None,
                "input_dim": self.model.in_dim, "output_dim": self.model.out_dim}

    def write_reports(self, run) -> None:
        out = run.path
        write_json(out / "metrics.json", run.metrics)
        write_csv(out / "history.csv", run.history)
        save_run_pictures(run.model, self.data.test_data(), out, seed=self.tc.seed)
        save_elbo_curves(run.history, out / "elbo.png")
        write_json(out / "metrics.json", run.metrics)
        from pyrovae.reports.model_card import write_model_card

        write_model_card(run)  # README.md, as every run's (pyrovae.api.write_reports)
