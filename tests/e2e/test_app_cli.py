"""The commands on a trained run (sample, reconstruct, interpolate, traverse, latent-map,
anomaly, impute), end to end on scikit-learn's digits: exit status, the PNG and JSON/CSV each
writes, their numbers where a known answer exists, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.applications import auroc
from pyrovae.applications.runs import as_run, resolve_data
from pyrovae.cli import main
from pyrovae.runtime.files import read_csv

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
QUIET = ["--set", "progress=false"]
PNG = b"\x89PNG\r\n\x1a\n"
COMMANDS = {  # command -> (extra arguments, files it writes)
    "sample": (["--n", "16", "--temperature", "0.8", "--save-npy"],
               ["sample.png", "sample.json", "sample.npy"]),
    "reconstruct": (["--n", "8"], ["reconstruct.png", "reconstruct.json"]),
    "interpolate": (["--a", "3", "--b", "7", "--steps", "6"],
                    ["interpolate.png", "interpolate.json"]),
    "traverse": (["--top", "4", "--steps", "5"], ["traverse.png", "traverse.json"]),
    "latent-map": ([], ["latent_map.png", "latent_map.json", "latent_map.csv"]),
    "anomaly": (["--labels-anomalous", "9", "--no-progress"],
                ["anomaly.png", "anomaly.json", "anomaly_scores.csv"]),
    "impute": (["--mask", "left-half", "--samples", "30", "--no-progress"],
               ["impute.png", "impute.json"]),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def train(out: Path, *extra: str) -> Path:
    assert main(["train", DIGITS, *QUIET, *extra, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The digits config trained in full (30 epochs, about a second)."""
    return train(tmp_path_factory.mktemp("apps") / "digits")


@pytest.fixture(scope="module")
def run_0to8(tmp_path_factory):
    return train(tmp_path_factory.mktemp("apps") / "d0to8",
                 "--set", "classes=[0,1,2,3,4,5,6,7,8]")


@pytest.fixture(scope="module")
def run_z2(tmp_path_factory):
    return train(tmp_path_factory.mktemp("apps") / "z2", "--set", "latent_dim=2",
                 "--set", "epochs=5")


def run_command(capsys, name, run, out, *extra):
    status = main([name, str(run), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return status, captured


def one_line_error(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_end_to_end(name, digits_run, tmp_path, capsys):
    extra, files = COMMANDS[name]
    status, captured = run_command(capsys, name, digits_run, tmp_path, *extra)
    assert status == 0, captured.err
    for f in files:
        assert (tmp_path / f).is_file(), f
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    stdout = json.loads(captured.out)
    saved = json.loads((tmp_path / files[1]).read_text())
    assert {k: saved[k] for k in stdout} == stdout


def test_default_output_is_the_run_folder_and_the_run_is_untouched(digits_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    proc = subprocess.run([sys.executable, "-m", "pyrovae", "sample", str(run), "--n", "5",
                           "--save-npy", "--mode", "sample"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert np.load(run / "sample.npy").shape == (5, 1, 8, 8)
    values = np.unique(np.load(run / "sample.npy"))
    assert set(values.tolist()) <= {0.0, 1.0}            # draws from the Bernoulli p(x|z)
    assert {n: (run / n).read_bytes() for n in before} == before


def test_interpolation_endpoints_decode_the_endpoint_means(digits_run, tmp_path, capsys):
    assert run_command(capsys, "interpolate", digits_run, tmp_path, "--a", "2", "--b", "9")[0] == 0
    result = json.loads((tmp_path / "interpolate.json").read_text())
    run = as_run(digits_run)
    x, y, _ = resolve_data(run, "test")
    mu = run.vae.encode(x[[2, 9]])[0]
    assert result["kinds"] == ["linear", "spherical"] and result["label_a"] == int(y[2])
    for kind in result["kinds"]:
        z = torch.tensor(result["paths"][kind]["z"])
        assert len(z) == 10
        assert torch.allclose(z[[0, -1]], mu, atol=1e-6)
        assert torch.allclose(run.vae.decode(z[[0, -1]]), run.vae.reconstruct(x[[2, 9]]),
                              atol=1e-5)
    norms = result["paths"]
    assert min(norms["spherical"]["norms"]) >= min(norms["linear"]["norms"]) - 1e-4


def test_traverse_orders_by_kl_and_inactive_dimensions_change_little(digits_run, tmp_path,
                                                                     capsys):
    assert run_command(capsys, "traverse", digits_run, tmp_path)[0] == 0
    result = json.loads((tmp_path / "traverse.json").read_text())
    kls = [r["kl"] for r in result["ranking"]]
    assert kls == sorted(kls, reverse=True) and len(kls) == 8
    assert result["dims"] == [r["dim"] for r in result["ranking"]][:8]
    top, last = result["ranking"][0]["dim"], result["ranking"][-1]["dim"]
    assert run_command(capsys, "traverse", digits_run, tmp_path, "--dims", str(top),
                       str(last))[0] == 0
    result = json.loads((tmp_path / "traverse.json").read_text())
    assert result["dims"] == [top, last]
    assert result["mean_abs_change"][0] > result["mean_abs_change"][1]


def test_latent_map_of_a_2d_latent_draws_the_manifold(run_z2, digits_run, tmp_path, capsys):
    assert run_command(capsys, "latent-map", run_z2, tmp_path, "--grid", "6")[0] == 0
    result = json.loads((tmp_path / "latent_map.json").read_text())
    assert result["projection"] == "identity" and result["axes"] == ["z0", "z1"]
    assert (tmp_path / "latent_manifold.png").read_bytes()[:8] == PNG
    rows = read_csv(tmp_path / "latent_map.csv")
    assert len(rows) == result["n"] == 297
    run = as_run(run_z2)
    x, y, _ = resolve_data(run, "test")
    mu = run.vae.encode(x)[0]
    assert [r["u"] for r in rows] == pytest.approx(mu[:, 0].tolist(), abs=1e-5)
    assert [r["label"] for r in rows] == y.tolist()
    out = tmp_path / "pca"
    assert run_command(capsys, "latent-map", digits_run, out, "--n", "100")[0] == 0
    result = json.loads((out / "latent_map.json").read_text())
    assert result["n"] == 100 and result["projection"] == "pca"
    assert 0 < sum(result["variance_ratio"]) <= 1 and not (out / "latent_manifold.png").exists()


def test_anomaly_train_on_0_to_8_detect_9(run_0to8, tmp_path, capsys):
    status, captured = run_command(capsys, "anomaly", run_0to8, tmp_path, "--no-progress")
    assert status == 0, captured.err
    result = json.loads((tmp_path / "anomaly.json").read_text())
    rows = read_csv(tmp_path / "anomaly_scores.csv")
    labels = np.array([r["label"] for r in rows])
    assert result["data"] == "test:all" and 9 in labels          # excluded class came back
    assert result["n_anomalous"] == int((labels == 9).sum()) > 0
    assert [r["anomalous"] for r in rows] == (labels == 9).astype(int).tolist()
    scores = np.array([r["score"] for r in rows])
    assert result["auroc"] == pytest.approx(auroc(scores, labels == 9))
    assert result["auroc"] > 0.6
    ratio = tmp_path / "ratio"
    assert run_command(capsys, "anomaly", run_0to8, ratio, "--score", "ratio",
                       "--no-progress")[0] == 0
    assert 0 <= json.loads((ratio / "anomaly.json").read_text())["auroc"] <= 1
    latent = tmp_path / "latent"
    assert run_command(capsys, "anomaly", run_0to8, latent, "--score", "latent",
                       "--neighbours", "2", "--no-progress")[0] == 0
    assert 0 <= json.loads((latent / "anomaly.json").read_text())["auroc"] <= 1
    own = tmp_path / "own"                                        # only trained classes: no AUROC
    assert run_command(capsys, "anomaly", run_0to8, own, "--data", "test", "--no-progress")[0] == 0
    assert json.loads((own / "anomaly.json").read_text())["auroc"] is None


def test_anomaly_nll_score_is_the_importance_sampled_likelihood(digits_run, tmp_path, capsys):
    from pyrovae.evaluation import log_likelihood

    args = ("--score", "nll", "--samples", "20", "--data", "test", "--labels-anomalous", "9",
            "--no-progress")
    assert run_command(capsys, "anomaly", digits_run, tmp_path, *args)[0] == 0
    rows = read_csv(tmp_path / "anomaly_scores.csv")
    run = as_run(digits_run)
    x, _, _ = resolve_data(run, "test")
    expected = -log_likelihood(run.vae, x, num_samples=20, batch_size=100, seed=0)
    assert [r["score"] for r in rows] == pytest.approx(expected.tolist(), rel=1e-6)


def test_impute_beats_the_mean_image_baseline(digits_run, tmp_path, capsys):
    for mask in ("left-half", "random:0.5", "center"):
        out = tmp_path / mask.replace(":", "")
        status, captured = run_command(capsys, "impute", digits_run, out, "--mask", mask,
                                       "--no-progress", "--samples", "50")
        assert status == 0, captured.err
        result = json.loads((out / "impute.json").read_text())
        assert result["mse_hidden_imputed"] < result["mse_hidden_baseline"], result
        expected = {"left-half": 0.5, "center": 0.25}.get(mask)
        if expected:
            assert result["hidden_fraction"] == expected


def test_data_specs(run_0to8):
    run = as_run(run_0to8)
    x, y, _ = resolve_data(run, "test")
    assert 9 not in y.tolist()
    x_all, y_all, _ = resolve_data(run, "test:all")
    assert 9 in y_all.tolist() and len(x_all) == 297
    _, y_train, _ = resolve_data(run, "train:all")
    assert len(y_train) == 1500
    x_cfg, _, _ = resolve_data(run, f"{DIGITS}:train")
    assert len(x_cfg) == 1500
    x_name, _, _ = resolve_data(run, "digits")
    assert torch.equal(x_name, x_all)


@pytest.mark.parametrize("args, message", [
    (["interpolate", "--a", "5000"], "out of range"),
    (["traverse", "--dims", "8"], "out of range"),
    (["impute", "--mask", "diagonal"], "not one of"),
    (["impute", "--mask", "random:2"], "0 < P < 1"),
    (["anomaly", "--data", "nonexistent.npz"], "does not exist"),
    (["anomaly", "--data", f"{DIGITS}:all"], ":all"),
    (["sample", "--temperature", "-1"], "> 0"),
    (["latent-map", "--n", "1"], "at least 2"),
])
def test_bad_input_is_one_line_error(args, message, digits_run, tmp_path, capsys):
    status, captured = run_command(capsys, args[0], digits_run, tmp_path, *args[1:])
    assert status == 2
    assert message in one_line_error(captured.err)


def test_not_a_run_folder(tmp_path, capsys):
    for name in COMMANDS:
        assert main([name, str(tmp_path)]) == 2
        assert "not a run folder" in one_line_error(capsys.readouterr().err)
