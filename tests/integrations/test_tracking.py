"""Experiment tracking (``train.tracking``): runs trained on digits are read back through
MLflow's own client and W&B's offline run file, and compared with the run folder's files
(config.toml, history.csv, metrics.json, the PNGs)."""

from __future__ import annotations

import csv
import json
import struct
import sys
import time
import tomllib
from pathlib import Path

import pytest

from pyrovae import VAEConfig, load_dataset, train
from pyrovae.cli import main
from pyrovae.config import DataConfig, RunConfig, TrainConfig
from pyrovae.runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
PICTURES = {"samples.png", "reconstructions.png", "elbo.png"}
MISSING_MLFLOW = "train.tracking = 'mlflow' needs MLflow: pip install 'pyrovae[mlflow]'"

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def small(tracking: str = "none", epochs: int = 2, **train_keys) -> RunConfig:
    return RunConfig(model=VAEConfig(latent_dim=4, hidden=(32,)),
                     data=DataConfig(name="digits", train_size=256, test_size=100),
                     train=TrainConfig(epochs=epochs, batch_size=64, progress=False, fast=False,
                                       tracking=tracking, **train_keys))


def flatten(table: dict, prefix: str = "") -> dict[str, str]:
    """config.toml's keys joined with dots, values as the params' text (strings bare)."""
    flat = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def history_columns(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """history.csv as {column: [(epoch, value), ...]} for its numeric columns."""
    with open(run_dir / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [(int(r["epoch"]), float(r[key])) for r in rows]
            for key in rows[0] if key not in ("epoch", "step")}


def same_curve(logged, expected) -> bool:
    """[(step, value)] lists with the same steps and (to rounding) the same values."""
    return ([s for s, _ in logged] == [s for s, _ in expected]
            and [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-12))


def final_numbers(run_dir: Path) -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ---- MLflow -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    pytest.importorskip("mlflow")
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def tracked(mlflow_store, tmp_path_factory):
    """A digits run of 2 epochs tracked into the store; (client, its MLflow run, folder)."""
    from mlflow.tracking import MlflowClient

    out = tmp_path_factory.mktemp("tracked") / "run"
    config = small("mlflow", tracking_uri=mlflow_store, experiment="train-test")
    train(config, load_dataset(config.data), out=out)
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("train-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0], out


def test_the_run_is_finished_and_named_after_its_folder(tracked):
    _, run, out = tracked
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run"
    assert run.data.tags["pyrovae.run_dir"] == str(out.resolve())
    assert run.data.tags["pyrovae.data_sha256"] == json.loads(
        (out / "metrics.json").read_text())["data_sha256"]


def test_params_are_the_flattened_config(tracked):
    _, run, out = tracked
    with open(out / "config.toml", "rb") as fh:
        expected = flatten(tomllib.load(fh))
    assert run.data.params == expected
    assert run.data.params["model.latent_dim"] == "4"
    assert run.data.params["model.hidden"] == "[32]"
    assert run.data.params["train.tracking"] == "mlflow"


def test_epoch_metrics_are_history_csv(tracked):
    client, run, out = tracked
    columns = history_columns(out)
    assert {"train_elbo", "test_elbo", "test_kl", "seconds"} <= set(columns)
    for key, expected in columns.items():
        logged = sorted((m.step, m.value) for m in
                        client.get_metric_history(run.info.run_id, f"epoch/{key}"))
        assert [s for s, _ in logged] == [1, 2] and same_curve(logged, expected), key


def test_final_metrics_are_metrics_json(tracked):
    client, run, out = tracked
    expected = final_numbers(out)
    assert {"test_elbo", "train_elbo", "reconstruction_mse", "epochs"} <= set(expected)
    logged = {k: v for k, v in run.data.metrics.items() if not k.startswith("epoch/")}
    assert logged == pytest.approx(expected, rel=1e-12)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_elbo")] == [2]


def test_artifacts_are_the_pictures_and_the_run_files(tracked, tmp_path):
    client, run, out = tracked
    names = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert PICTURES | {"config.toml", "metrics.json", "history.csv"} <= names
    assert "checkpoint.pt" not in names
    local = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert Path(local).read_bytes() == (out / "metrics.json").read_bytes()


def test_a_resumed_run_continues_its_mlflow_run(mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    config = small("mlflow", epochs=1, tracking_uri=mlflow_store, experiment="resume-test")
    data = load_dataset(config.data)
    out = tmp_path / "run"
    train(config, data, out=out)
    train(config, data, out=out, resume=True, epochs=2)
    client = MlflowClient(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("resume-test").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    logged = sorted((m.step, m.value) for m in
                    client.get_metric_history(runs[0].info.run_id, "epoch/test_elbo"))
    assert len(logged) == 2 and same_curve(logged, history_columns(out)["test_elbo"])
    assert runs[0].data.params["train.epochs"] == "1"  # the params it started with
    # --force starts over: a new MLflow run for the same folder
    train(config, data, out=out, force=True)
    assert len(client.search_runs([runs[0].info.experiment_id])) == 2


def test_compare_logs_each_cell_as_a_run_of_one_experiment(mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    from pyrovae.experiments import Settings, compare

    base = small("mlflow", epochs=1, tracking_uri=mlflow_store, experiment="compare-test")
    out = tmp_path / "grid"
    result = compare(base, ["latent_dim=2,3"], out, settings=Settings(
        nll_samples=25, eval_points=50, grad_draws=2), log=lambda message: None)
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("compare-test")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(row["run"] for row in result.rows) and len(runs) == 2
    for row in result.rows:
        run = runs[row["run"]]
        assert run.data.tags["pyrovae.compare"] == str(out.resolve())
        assert run.data.tags["pyrovae.combination"] == row["combination"]
        assert run.data.params["model.latent_dim"] == str(row["latent_dim"])
        for key in ("test_elbo", "test_nll", "active_units", "grad_var_total"):
            assert run.data.metrics[f"compare/{key}"] == pytest.approx(float(row[key]))
        assert run.data.metrics["test_elbo"] == pytest.approx(  # and the training's own
            final_numbers(out / row["run"])["test_elbo"])


def test_the_store_of_each_tracking_uri(tmp_path, monkeypatch):
    from pyrovae.integrations.mlflow_tracking import store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    here = tmp_path.resolve()
    assert store("") == (f"sqlite:///{here / 'mlflow.db'}", here / "mlartifacts")
    assert store("runs/mlflow") == (f"sqlite:///{here / 'runs/mlflow/mlflow.db'}",
                                    here / "runs/mlflow/mlartifacts")
    assert (here / "runs/mlflow").is_dir()
    assert store("a/b.db") == (f"sqlite:///{here / 'a/b.db'}", here / "a/mlartifacts")
    assert store("sqlite:///c/d.db") == (f"sqlite:///{here / 'c/d.db'}", here / "c/mlartifacts")
    assert store("file:./mlruns") == ("file:./mlruns", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert store("") == ("sqlite:///elsewhere.db", None)


# ---- missing packages and bad settings --------------------------------------------------------

def test_a_missing_mlflow_is_one_line_before_anything_is_written(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    config = small("mlflow")
    with pytest.raises(ConfigError) as err:
        train(config, load_dataset(config.data), out=tmp_path / "api")
    assert str(err.value) == MISSING_MLFLOW
    assert not (tmp_path / "api").exists()
    assert main(["train", DIGITS, "--set", "tracking=mlflow", "--set", "epochs=1",
                 "--out", str(tmp_path / "cli")]) == 2
    assert capsys.readouterr().err.strip() == f"pyrovae: error: {MISSING_MLFLOW}"
    assert not (tmp_path / "cli").exists()
    assert main(["compare", DIGITS, "--vary", "latent_dim=2,3", "--set", "tracking=mlflow",
                 "--out", str(tmp_path / "grid")]) == 2
    assert capsys.readouterr().err.strip().endswith(MISSING_MLFLOW)
    assert not (tmp_path / "grid").exists()


def test_a_missing_wandb_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    config = small("wandb")
    with pytest.raises(ConfigError, match=r"^train.tracking = 'wandb' needs Weights & Biases: "
                                          r"pip install 'pyrovae\[wandb\]'$"):
        train(config, load_dataset(config.data), out=tmp_path / "run")


def test_bad_tracking_settings_are_refused():
    with pytest.raises(ConfigError, match="train.tracking = 'neptune' is not one of: none, "
                                          "mlflow, wandb"):
        TrainConfig(tracking="neptune")
    with pytest.raises(ConfigError, match="tracking_uri is where MLflow stores runs"):
        TrainConfig(tracking="wandb", tracking_uri="runs/mlflow")
    with pytest.raises(ConfigError, match="train.experiment is empty"):
        TrainConfig(experiment=" ")
    assert TrainConfig().tracking == "none"


# ---- Weights & Biases, offline ----------------------------------------------------------------

def wandb_records(path: Path) -> list:
    """The records of an offline run's .wandb file (a LevelDB-style log of protobuf
    ``Record`` messages: a 7-byte file header, then 32 KiB blocks of chunks, each with a
    7-byte header: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:  # the block's tail is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0:  # zeros: padding to the end of a block
            pos += 32768 - pos % 32768
            continue
        if pos + 7 + length > len(raw):  # a chunk still being written
            break
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def item_key(item) -> str:
    """A record item's key (W&B stores a key with a "/" as its ``nested_key``)."""
    return item.key or ".".join(item.nested_key)


def test_wandb_writes_an_offline_run_inside_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = small("wandb", experiment="offline-test")
    out = tmp_path / "run"
    train(config, load_dataset(config.data), out=out)
    offline = list((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    (log_file,) = offline[0].glob("run-*.wandb")
    for _ in range(300):  # W&B's service writes the file after finish() returns: until "exit"
        records = wandb_records(log_file)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds:
            break
        time.sleep(0.1)
    assert "exit" in kinds
    assert "run" in kinds and "history" in kinds and "summary" in kinds
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "offline-test" and run.display_name == "run"
    config_items = {item_key(item): json.loads(item.value_json) for item in run.config.update}
    assert config_items["model.latent_dim"] == "4"
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {item_key(item): json.loads(item.value_json) for item in r.history.item}
            history[r.history.step.num] = items
    expected = history_columns(out)
    for key in ("train_elbo", "test_elbo", "test_kl"):
        assert same_curve([(s, history[s][f"epoch/{key}"]) for s in sorted(history)],
                          expected[key]), key
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({item_key(i): json.loads(i.value_json) for i in r.summary.update})
    final = final_numbers(out)
    assert {k: summary[k] for k in final} == pytest.approx(final, rel=1e-12)
    files = offline[0] / "files"
    assert PICTURES <= {p.name for p in files.iterdir()}
    assert (files / "metrics.json").read_bytes() == (out / "metrics.json").read_bytes()
