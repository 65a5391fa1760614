"""MLflow tracking of a training run (``train.tracking = "mlflow"``) and of the cells of
``pyrovae compare``, into a local store: no server.

Where the runs go (``train.tracking_uri``, resolved by :func:`store`):

    ""                     $MLFLOW_TRACKING_URI when it is set (passed to MLflow as it is),
                           else the SQLite database ./mlflow.db of the current directory
                           (MLflow's own default, which ``mlflow ui`` opens there)
    a folder, e.g. runs/mlflow      FOLDER/mlflow.db, artifacts in FOLDER/mlartifacts/
    a file ending in .db            that SQLite database, artifacts in mlartifacts/ beside it
    an MLflow URI (sqlite:///x.db, file:./mlruns, ...)   passed to MLflow as it is

A new experiment in a SQLite store keeps its artifacts in ``mlartifacts/`` beside the
database (an absolute path, so the current directory does not matter later). MLflow 3
refuses a ``file:`` store unless MLFLOW_ALLOW_FILE_STORE=true; a SQLite one needs nothing.

One MLflow run per run folder, named after the folder and tagged ``pyrovae.run_dir`` (its
absolute path): a resumed run (``--resume``) continues the newest MLflow run with that tag,
keeping the params it started with; ``--force`` starts a new one. What is logged is listed in
``pyrovae.integrations.tracker``. ``pyrovae compare`` adds to each cell's run its row of
compare.csv as ``compare/<column>`` metrics (:func:`log_compare_row`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pyrovae._version import __version__
from pyrovae.integrations.tracker import Tracker, flat_config, numbers
from pyrovae.runtime.errors import ConfigError

INSTALL_HINT = "pip install 'pyrovae[mlflow]'"
RUN_DIR_TAG = "pyrovae.run_dir"
#: MLflow's limits per log_batch call (params, metrics) and on a param value's length
BATCH_PARAMS, BATCH_METRICS, PARAM_CHARS = 100, 1000, 6000


def import_mlflow():
    """The ``mlflow`` module, or the one-line ConfigError naming the pip command."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"train.tracking = 'mlflow' needs MLflow: {INSTALL_HINT}") from None
    return mlflow


def store(tracking_uri: str) -> tuple[str, Path | None]:
    """(the MLflow tracking URI, the artifact folder of a new experiment or None for
    MLflow's default) of ``train.tracking_uri``; see the module docstring. The folder of a
    SQLite database is made here."""
    if not tracking_uri:
        env = os.environ.get("MLFLOW_TRACKING_URI", "")
        if env:
            return env, None
        db = Path("mlflow.db")
    elif tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
    elif len(scheme := tracking_uri.partition(":")[0]) > 1 and ":" in tracking_uri \
            and scheme.replace("+", "").isalnum():
        return tracking_uri, None  # another URI scheme (file:, postgresql:, http:, ...)
    else:
        path = Path(tracking_uri).expanduser()
        db = path if path.suffix == ".db" else path / "mlflow.db"
    db = db.expanduser().resolve()
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"train.tracking_uri: cannot make the folder '{db.parent}' of the "
                          f"MLflow database ({err.strerror or err}); choose another "
                          f"tracking_uri") from None
    return f"sqlite:///{db}", db.parent / "mlartifacts"


@contextlib.contextmanager
def quiet_store():
    """MLflow's INFO lines on making a new database (its tables), hidden while opening it."""
    loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def open_experiment(tracking_uri: str, name: str):
    """(an ``MlflowClient`` of the store, the id of experiment ``name``, made if new); a store
    MLflow cannot open is a one-line ConfigError."""
    mlflow = import_mlflow()
    uri, artifacts = store(tracking_uri)
    try:
        with quiet_store():
            client = mlflow.tracking.MlflowClient(uri)
            found = client.get_experiment_by_name(name)
            if found is not None:
                return client, found.experiment_id
            try:
                return client, client.create_experiment(
                    name, artifact_location=artifacts.as_uri() if artifacts else None)
            except mlflow.exceptions.MlflowException:  # made meanwhile by another process
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
                return client, found.experiment_id
    except mlflow.exceptions.MlflowException as err:
        message = str(err).splitlines()[0][:300]
        raise ConfigError(f"train.tracking = 'mlflow' cannot use the store '{uri}' "
                          f"({message}); fix train.tracking_uri") from None


def run_of(client, experiment_id: str, run_dir: Path):
    """The newest MLflow run of the experiment tagged with ``run_dir`` (None if none)."""
    value = str(run_dir.resolve())
    quote = "'" if "'" not in value else '"'
    if quote in value:
        return None
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.`{RUN_DIR_TAG}` = {quote}{value}{quote}",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def new_run(client, experiment_id: str, config, run_dir: Path, tags: dict | None = None):
    """A new MLflow run for ``run_dir`` with the flattened config as its params."""
    from mlflow.entities import Param

    tags = {RUN_DIR_TAG: str(run_dir.resolve()), "pyrovae.version": __version__,
            "pyrovae.kind": config.model.kind, "pyrovae.data": config.data.name, **(tags or {})}
    run = client.create_run(experiment_id, run_name=run_dir.name, tags=tags)
    params = [Param(k, v[:PARAM_CHARS]) for k, v in flat_config(config).items()]
    for i in range(0, len(params), BATCH_PARAMS):
        client.log_batch(run.info.run_id, params=params[i:i + BATCH_PARAMS])
    return run.info.run_id


def log_numbers(client, run_id: str, values: dict[str, float], step: int) -> None:
    """``values`` as metrics at ``step``, in batches MLflow takes."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, v in values.items()]
    for i in range(0, len(metrics), BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH_METRICS])


class MLflowTracker(Tracker):
    """A training run as an MLflow run (see the module docstring)."""

    name = "mlflow"

    @classmethod
    def check(cls, train) -> None:
        import_mlflow()

    def __init__(self, config, out_dir: Path):
        super().__init__(config, out_dir)
        train = config.train
        # opened now, before training: a store MLflow cannot open is refused first
        self.client, self.experiment_id = open_experiment(train.tracking_uri, train.experiment)
        self.run_id = None

    def start(self, resumed: bool) -> None:
        earlier = run_of(self.client, self.experiment_id, self.out_dir) if resumed else None
        if earlier is not None:
            self.run_id = earlier.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = new_run(self.client, self.experiment_id, self.config, self.out_dir)

    def log(self, metrics: dict[str, float], step: int) -> None:
        log_numbers(self.client, self.run_id, metrics, step)

    def finish_run(self, metrics: dict, step: int, files: list[Path]) -> None:
        log_numbers(self.client, self.run_id, numbers(metrics), step)
        for key, value in metrics.items():  # e.g. data_sha256
            if isinstance(value, str):
                self.client.set_tag(self.run_id, f"pyrovae.{key}", value)
        for path in files:
            self.client.log_artifact(self.run_id, str(path))

    def end(self, failed: bool, killed: bool = False) -> None:
        status = "KILLED" if killed else "FAILED" if failed else "FINISHED"
        self.client.set_terminated(self.run_id, status)


def log_compare_row(config, run_dir: Path, row: dict, compare_dir: Path) -> str:
    """``pyrovae compare``: the row of one cell (``config``, trained in ``run_dir``) as
    ``compare/<column>`` metrics of the cell's MLflow run (a new one, with the config as
    params, when the cell was trained without tracking), tagged with the comparison's folder
    and combination; returns the MLflow run's id."""
    train = config.train
    client, experiment_id = open_experiment(train.tracking_uri, train.experiment)
    found = run_of(client, experiment_id, run_dir)
    tags = {"pyrovae.compare": str(Path(compare_dir).resolve()),
            "pyrovae.combination": str(row.get("combination", "")),
            "pyrovae.seed": str(row.get("seed", ""))}
    if found is None:
        run_id = new_run(client, experiment_id, config, run_dir, tags)
    else:
        run_id = found.info.run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    step = int(row.get("epochs") or 0)
    values = numbers(row, skip=("seed",))
    log_numbers(client, run_id, {f"compare/{k}": v for k, v in values.items()}, step)
    if found is None:
        client.set_terminated(run_id, "FINISHED")
    return run_id
