"""Weights & Biases tracking of a training run (``train.tracking = "wandb"``), offline only:
no network call, no account needed.

Each training call is one offline W&B run in the project ``train.experiment``, written into
the run folder::

    RUN/wandb/offline-run-<time>-<id>/
        run-<id>.wandb     the run's records: config, per-epoch history, summary
        files/             config.toml, metrics.json, history.csv, the PNGs (copies)

named after the run folder and grouped by it (a resumed run is a new W&B run in the same
group). The config is W&B's config (dotted keys, as MLflow's params), each history row is
logged at step = epoch as ``epoch/<column>``, and metrics.json's values go to the run's
summary (what is logged: ``pyrovae.integrations.tracker``).
``wandb sync RUN/wandb/offline-run-*`` uploads it later, if you choose to.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pyrovae.integrations.tracker import Tracker, flat_config, numbers
from pyrovae.runtime.errors import ConfigError

INSTALL_HINT = "pip install 'pyrovae[wandb]'"


def import_wandb():
    """The ``wandb`` module, or the one-line ConfigError naming the pip command."""
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"train.tracking = 'wandb' needs Weights & Biases: "
                          f"{INSTALL_HINT}") from None
    return wandb


class WandbTracker(Tracker):
    """A training run as an offline W&B run (see the module docstring)."""

    name = "wandb"

    @classmethod
    def check(cls, train) -> None:
        import_wandb()

    def __init__(self, config, out_dir: Path):
        super().__init__(config, out_dir)
        self.run = None

    def start(self, resumed: bool) -> None:
        wandb = import_wandb()
        settings = wandb.Settings(mode="offline", silent=True, console="off",
                                  x_disable_stats=True, disable_git=True, save_code=False)
        self.run = wandb.init(project=self.config.train.experiment, dir=str(self.out_dir),
                              name=self.out_dir.name, group=self.out_dir.name,
                              config=flat_config(self.config), mode="offline",
                              reinit="create_new", settings=settings)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish_run(self, metrics: dict, step: int, files: list[Path]) -> None:
        kept = {k: v for k, v in metrics.items() if isinstance(v, str)}
        self.run.summary.update({**kept, **numbers(metrics)})
        folder = Path(self.run.dir)  # files/ of the offline run: copies, no links
        for path in files:
            shutil.copy2(path, folder / path.name)
            self.run.save(str(folder / path.name), base_path=str(folder), policy="now")

    def end(self, failed: bool, killed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)
