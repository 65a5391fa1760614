"""The ``pyrovae train`` command line (pyrovae/cli.py), end to end on scikit-learn's digits."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.runtime.errors import CheckpointError, ConfigError, DataError, DeviceError, PyroVAEError
from tests.support.one_line import assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
FAST = ["--set", "epochs=2", "--set", "progress=false"]
RUN_FILES = ("config.toml", "checkpoint.pt", "metrics.json", "history.csv", "samples.png",
             "reconstructions.png", "elbo.png", "README.md")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m pyrovae ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "pyrovae", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def train_in_process(out: Path, *extra: str, config: str = DIGITS) -> int:
    return main(["train", config, *FAST, *extra, "--out", str(out)])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One real ``python -m pyrovae train configs/digits.toml`` run (2 epochs)."""
    work = tmp_path_factory.mktemp("e2e")
    out = work / "run"
    proc = run_cli("train", DIGITS, *FAST, "--out", str(out), cwd=work)
    return proc, out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run folder written in-process; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train_in_process(out) == 0
    return out


# ---- end to end ----------------------------------------------------------------------------


def test_train_end_to_end_exit_code_and_stdout(e2e):
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    assert summary["epochs"] == 2
    assert f"run written to {out}" in proc.stdout


def test_train_end_to_end_writes_every_file(e2e):
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)  # no temp files left

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_elbo", "test_elbo"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key])
        assert metrics[key] < 0
    assert metrics["epochs"] == 2
    assert metrics["device"] == "cpu" and metrics["objective"] == "meanfield"
    assert metrics["num_train"] == 1500 and metrics["num_test"] == 297
    assert metrics["versions"]["pyrovae"] == pyrovae.__version__
    assert metrics["versions"]["torch"] == torch.__version__
    assert set(metrics["versions"]) >= {"pyrovae", "pyro", "torch", "python"}
    summary = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    assert summary["test_elbo"] == metrics["test_elbo"]
    assert summary["train_elbo"] == metrics["train_elbo"]

    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_elbo"]) == pytest.approx(metrics["test_elbo"], abs=1e-9)
    assert float(rows[-1]["train_elbo"]) == pytest.approx(metrics["train_elbo"], abs=1e-9)
    assert int(rows[-1]["step"]) == metrics["steps"] == 2 * (1500 // 64)

    for name in ("samples.png", "reconstructions.png", "elbo.png"):
        blob = (out / name).read_bytes()
        assert blob[:8] == PNG_SIGNATURE, name
        assert blob[12:16] == b"IHDR" and len(blob) > 1000, name


def test_written_config_reloads_to_the_config_that_ran(e2e):
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    written = pyrovae.load_config(out / "config.toml")
    assert written == pyrovae.load_config(DIGITS, ["epochs=2", "progress=false"])
    assert written.model.hidden == (128,) and written.train.epochs == 2
    assert written.train.progress is False


def test_loaded_run_reproduces_test_elbo(e2e):
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    run = pyrovae.load(out)
    assert run.config == pyrovae.load_config(out / "config.toml")
    assert len(run.history) == 2
    data = pyrovae.load_dataset(run.config.data)
    result = pyrovae.evaluate_elbo(run.vae, data.test_data(), seed=run.config.train.seed)
    assert result["elbo"] == pytest.approx(run.metrics["test_elbo"], abs=1e-6)


def test_same_config_and_seed_give_identical_metrics(e2e, finished_run, tmp_path):
    """Two in-process runs and the subprocess run agree exactly (CPU determinism)."""
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    assert train_in_process(tmp_path / "again") == 0
    runs = [json.loads((d / "metrics.json").read_text())
            for d in (out, finished_run, tmp_path / "again")]
    for key in ("test_elbo", "train_elbo", "test_kl", "reconstruction_mse"):
        assert runs[0][key] == runs[1][key] == runs[2][key], key
    assert train_in_process(tmp_path / "other", "--set", "train.seed=1") == 0
    other = json.loads((tmp_path / "other" / "metrics.json").read_text())
    assert other["test_elbo"] != runs[0]["test_elbo"]  # the seed matters


def test_default_out_folder_is_runs_config_stem(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", DIGITS, *FAST, "--set", "epochs=1"]) == 0
    assert (tmp_path / "runs" / "digits" / "metrics.json").is_file()
    assert "runs/digits" in capsys.readouterr().out


# ---- errors: exit 2, one line, no traceback ------------------------------------------------


def test_subprocess_error_is_one_line_exit_2(tmp_path):
    proc = run_cli("train", DIGITS, *FAST, "--set", "latnet_dim=3", "--out",
                   str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    line = assert_one_line_error(proc.stderr)
    assert "did you mean 'model.latent_dim'" in line
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_subprocess_bad_data_exit_2(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((20, 64), np.nan, np.float32))
    proc = run_cli("train", DIGITS, *FAST, "--set", f"data.name={tmp_path / 'nan.npy'}",
                   "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "NaN" in assert_one_line_error(proc.stderr)


def _npy(tmp_path: Path, name: str, array: np.ndarray) -> str:
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def _grey(n=120, d=64):
    return np.random.default_rng(0).random((n, d)).astype(np.float32)


def _nan_data(tmp_path):
    x = _grey()
    x[::3, 5] = np.nan  # in both the train and the test split
    return ["--set", f"data.name={_npy(tmp_path, 'nan.npy', x)}"]


ERROR_CASES = {
    # name: (extra args or a function of tmp_path giving them, words the message must contain;
    #        a tuple of words means any one of them)
    "unknown key": (["--set", "latnet_dim=3"], ["latnet_dim", "did you mean 'model.latent_dim'"]),
    "unknown bare key": (["--set", "epoch=3"], ["did you mean 'train.epochs'"]),
    "ambiguous key": (["--set", "seed=3"], ["data.seed", "train.seed"]),
    "no equals": (["--set", "epochs"], ["key=value"]),
    "bad value": (["--set", "latent_dim=0"], ["model.latent_dim", ">= 1"]),
    "bad choice": (["--set", "elbo=foo"], ["model.elbo", "meanfield", "jit-trace"]),
    "bad type": (["--set", "progress=yes"], ["train.progress", "true or false"]),
    "nan lr": (["--set", "lr=nan"], ["train.lr", "finite"]),
    "unknown data set": (["--set", "data.name=cifar"], ["unknown data set 'cifar'", "digits"]),
    "batch too large": (["--set", "batch_size=5000"], ["train.batch_size", "5000", "1500"]),
    "conv no channels": (["--set", "network=conv", "--set", "channels=[]"], ["model.channels"]),
    "nan data": (_nan_data, ["NaN"]),
    "grey 0-255 dynamic": (lambda t: ["--set", f"data.name={_npy(t, 'g.npy', _grey() * 255)}",
                                      "--set", "binarize=dynamic"],
                           ["binarize", "[0, 1]", "255"]),
    "empty array": (lambda t: ["--set", f"data.name={_npy(t, 'e.npy', np.zeros((0, 64)))}"],
                    [("got 0", "0 examples")]),
    "grey with bernoulli": (lambda t: ["--set", f"data.name={_npy(t, 'g.npy', _grey())}",
                                       "--set", "binarize=none"],
                            ["bernoulli", "binarize", "gaussian"]),
    "batch larger than file": (lambda t: ["--set", f"data.name={_npy(t, 'b.npy', _grey() > .5)}",
                                          "--set", "batch_size=200"],
                               ["train.batch_size", "108"]),
    "conv on vectors": (lambda t: ["--set", f"data.name={_npy(t, 'v.npy', _grey() > .5)}",
                                   "--set", "network=conv"], ["conv", "mlp"]),
    "txt file": (lambda t: (t.joinpath("data.txt").write_text("1 2\n"),
                            ["--set", f"data.name={t / 'data.txt'}"])[1],
                 ["data.txt", ".npy"]),
    "missing data file": (lambda t: ["--set", f"data.name={t / 'nope.npy'}"],
                          ["nope.npy", "does not exist"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_input_error_exits_2_with_one_line(case, tmp_path, capsys):
    extra, words = ERROR_CASES[case]
    extra = extra(tmp_path) if callable(extra) else extra
    out = tmp_path / "out"
    assert train_in_process(out, *extra) == 2
    captured = capsys.readouterr()
    line = assert_one_line_error(captured.err)
    for word in words:
        assert any(w in line for w in (word if isinstance(word, tuple) else (word,))), (word, line)
    assert not (out / "metrics.json").exists() and not (out / "config.toml").exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "nope.toml" in line and "does not exist" in line


def test_invalid_toml_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlatent_dim = 3\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "bad.toml" in line and "not valid TOML" in line


def test_unknown_key_in_config_file(tmp_path, capsys):
    cfg = tmp_path / "typo.toml"
    cfg.write_text('[data]\nname = "digits"\n[train]\nepoch = 2\n')
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "did you mean 'train.epochs'" in assert_one_line_error(capsys.readouterr().err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_device_on_cpu_machine(tmp_path, capsys):
    out = tmp_path / "out"
    assert train_in_process(out, "--set", "device=cuda") == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "cuda" in line and "device=cpu" in line
    assert not (out / "config.toml").exists()


def test_existing_run_is_refused_and_left_unchanged(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = snapshot(out)
    assert sorted(before) == sorted(RUN_FILES)
    assert train_in_process(out, "--set", "latent_dim=4") == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "already holds a run" in line and "--force" in line
    assert snapshot(out) == before  # same files, same bytes


def test_force_overwrites_existing_run(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = snapshot(out)
    assert train_in_process(out, "--set", "latent_dim=4", "--force") == 0
    assert capsys.readouterr().err == ""
    after = snapshot(out)
    assert sorted(after) == sorted(RUN_FILES)
    for name in ("config.toml", "checkpoint.pt", "metrics.json", "history.csv"):
        assert after[name] != before[name], name
    run = pyrovae.load(out)  # a consistent folder: config.toml matches the checkpoint
    assert run.config.model.latent_dim == 4 and run.vae.config.latent_dim == 4


def test_out_path_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("keep me")
    assert train_in_process(out) == 2
    assert "is a file" in assert_one_line_error(capsys.readouterr().err)
    assert out.read_text() == "keep me"


def test_multi_line_error_message_is_printed_on_one_line(tmp_path, capsys, monkeypatch):
    import pyrovae.config

    def broken(*args, **kwargs):
        raise ConfigError("first part\nsecond part")

    monkeypatch.setattr(pyrovae.config, "load_config", broken)
    assert main(["train", DIGITS, "--out", str(tmp_path / "o")]) == 2
    assert assert_one_line_error(capsys.readouterr().err) == (
        "pyrovae: error: first part second part")


# ---- --debug -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["after", "before"])
def test_debug_reraises_config_error(tmp_path, capsys, where):
    args = ["train", DIGITS, "--set", "latent_dim=0", "--out", str(tmp_path / "o")]
    args = args + ["--debug"] if where == "after" else ["--debug", *args]
    with pytest.raises(ConfigError, match="model.latent_dim"):
        main(args)
    assert "pyrovae: error" not in capsys.readouterr().err


@pytest.mark.parametrize("extra,error", [
    (["--set", "data.name=cifar"], DataError),
    (["--set", "batch_size=5000"], ConfigError),
])
def test_debug_reraises_other_input_errors(tmp_path, extra, error):
    with pytest.raises(error) as err:
        main(["--debug", "train", DIGITS, *FAST, *extra, "--out", str(tmp_path / "o")])
    assert isinstance(err.value, PyroVAEError)


def test_debug_reraises_existing_run(finished_run):
    with pytest.raises(CheckpointError, match="already holds a run"):
        main(["train", DIGITS, *FAST, "--out", str(finished_run), "--debug"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_debug_reraises_device_error(tmp_path):
    with pytest.raises(DeviceError):
        main(["train", DIGITS, *FAST, "--set", "device=cuda", "--out", str(tmp_path / "o"),
              "--debug"])


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        main([])
    assert err.value.code == 2
    assert "usage: pyrovae" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["train", DIGITS, "--no-such-flag"])
    assert err.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err
