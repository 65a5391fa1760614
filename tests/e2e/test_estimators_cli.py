"""The bound and its gradient estimator as config axes ([model.objective]), end to end: the
``train`` and ``compare`` commands, config files, resume, the semi-supervised VAE, the one-line
refusals, and a bound registered by a plug-in. The estimators' math: tests/objectives/test_estimators.py."""

from __future__ import annotations

import csv
import json
import math
import signal
import tomllib
from pathlib import Path

import pytest
import torch

import pyrovae
from pyrovae import load, load_config, load_dataset
from pyrovae.cli import main
from pyrovae.config import ObjectiveConfig, RunConfig
from pyrovae.runtime.errors import ConfigError
from pyrovae.objectives import BoundObjective, objective_for
from pyrovae.objectives.bounds import Bound
from pyrovae.runtime.registry import BOUNDS
from pyrovae.runs import load_checkpoint
from pyrovae.training.guards import TrainingInterrupted
from pyrovae.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
SSVAE_DIGITS = str(ROOT / "configs" / "ssvae-digits.toml")
# 256 training points in batches of 64: 4 steps an epoch
TINY = ["--set", "epochs=1", "--set", "progress=false", "--set", "data.train_size=256",
        "--set", "data.test_size=100"]
# the ssvae: 300 points, 50 validation, 20 labelled (10 a step), 4 unlabelled steps of 50
SS_TINY = ["--set", "epochs=1", "--set", "progress=false", "--set", "data.train_size=300",
           "--set", "data.test_size=100", "--set", "labels=20", "--set", "validation=50",
           "--set", "label_batch_size=10"]
IWAE_DREG = ["--set", "objective.bound=iwae", "--set", "objective.gradient=dreg",
             "--set", "num_particles=3"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def one_line_error(capsys) -> str:
    """stderr is exactly one line 'pyrovae: error: ...', no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("pyrovae: error: "), err
    return lines[0]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def finite_history(run_dir: Path) -> list[dict]:
    rows = read_rows(run_dir / "history.csv")
    assert rows
    for row in rows:
        assert math.isfinite(float(row["train_elbo"])) and math.isfinite(float(row["test_elbo"]))
    return rows


def strip_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic", train_size=256, test_size=100)


# ---- 1. pyrovae train with a (bound, gradient) pair --------------------------------------------

@pytest.fixture(scope="module")
def iwae_dreg_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("iwae-dreg") / "run"
    assert main(["train", DIGITS, *TINY, *IWAE_DREG, "--out", str(out)]) == 0
    return out


def test_train_cli_runs_the_chosen_bound_and_estimator(iwae_dreg_run):
    out = iwae_dreg_run
    for name in ("config.toml", "checkpoint.pt", "metrics.json", "history.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"] == "iwae/dreg" and metrics["num_particles"] == 3
    assert metrics["objective_run"] == "BoundObjective"  # not model.elbo's Pyro estimator
    assert metrics["steps"] == 4 and math.isfinite(metrics["test_elbo"])
    finite_history(out)


def test_written_config_holds_the_objective_table_and_loads_back(iwae_dreg_run):
    written = tomllib.loads((iwae_dreg_run / "config.toml").read_text())
    table = written["model"]["objective"]
    assert table["bound"] == "iwae" and table["gradient"] == "dreg"
    assert written["model"]["num_particles"] == 3
    expected = ObjectiveConfig(bound="iwae", gradient="dreg")
    assert load_config(iwae_dreg_run / "config.toml").model.objective == expected
    run = load(iwae_dreg_run)
    assert run.config.model.objective == expected and run.config.model.num_particles == 3
    rebuilt = objective_for(run.config.model)
    assert isinstance(rebuilt, BoundObjective)
    assert (rebuilt.bound_name, rebuilt.gradient_name, rebuilt.num_particles) == ("iwae", "dreg", 3)


# ---- 2. a config file with a [model.objective] table ----------------------------------------

MIWAE_TOML = """
[model]
latent_dim = 4
hidden = [32]
elbo = "meanfield"        # the default pair's estimator; [model.objective] overrides it
num_particles = 2

[model.objective]
bound = "miwae"
groups = 2
gradient = "reparam"

[data]
name = "digits"
binarize = "dynamic"
train_size = 256
test_size = 100

[train]
epochs = 1
batch_size = 64
progress = false
"""


def test_config_file_objective_table_trains_through_the_python_api(tmp_path):
    path = tmp_path / "miwae.toml"
    path.write_text(MIWAE_TOML)
    config = load_config(path)
    assert config.model.objective == ObjectiveConfig(bound="miwae", gradient="reparam", groups=2)
    elbo = objective_for(config.model)
    assert isinstance(elbo, BoundObjective) and elbo.bound.particles == 4  # M * K draws
    run = pyrovae.train(config, load_dataset(config.data), out=tmp_path / "run")
    assert run.metrics["objective"] == "miwae/reparam M=2"
    assert run.metrics["num_particles"] == 2 and run.metrics["objective_run"] == "BoundObjective"
    assert math.isfinite(run.metrics["test_elbo"]) and math.isfinite(run.metrics["train_elbo"])
    assert load(tmp_path / "run").config.model.objective.groups == 2


# ---- 3. resume is bit for bit -------------------------------------------------------------------

def iwae_dreg_config(epochs: int) -> RunConfig:
    config = load_config(DIGITS, [*(s for s in IWAE_DREG if s != "--set"), "latent_dim=4",
                                  "hidden=[32]", "progress=false", "data.train_size=256",
                                  "data.test_size=100", f"epochs={epochs}"])
    assert config.model.objective.gradient == "dreg"
    return config


@pytest.fixture(scope="module")
def whole_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    pyrovae.train(iwae_dreg_config(2), digits, out=out)
    return out


def assert_same_run(a: Path, b: Path):
    pa, pb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert strip_seconds(load(a).history) == strip_seconds(load(b).history)


def test_resume_at_an_epoch_end_is_bit_exact_with_a_bound_objective(digits, whole_run, tmp_path):
    cut = tmp_path / "cut"
    pyrovae.train(iwae_dreg_config(1), digits, out=cut)
    assert load_checkpoint(cut)["step"] == 4
    resumed = pyrovae.train(iwae_dreg_config(2), digits, out=cut, resume=True)
    assert resumed.metrics["objective"] == "iwae/dreg" and load_checkpoint(cut)["step"] == 8
    assert_same_run(whole_run, cut)


def test_resume_mid_epoch_is_bit_exact_with_a_bound_objective(digits, whole_run, tmp_path,
                                                              monkeypatch):
    step = Trainer.train_step

    def stop_at_5(self, xb):  # the second epoch's second step
        if self.step == 5:
            signal.raise_signal(signal.SIGTERM)
        return step(self, xb)

    monkeypatch.setattr(Trainer, "train_step", stop_at_5)
    with pytest.raises(TrainingInterrupted):
        pyrovae.train(iwae_dreg_config(2), digits, out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "train_step", step)
    assert load_checkpoint(tmp_path / "cut")["step"] == 6
    pyrovae.train(iwae_dreg_config(2), digits, out=tmp_path / "cut", resume=True)
    assert_same_run(whole_run, tmp_path / "cut")


# ---- 4. pyrovae compare over the gradient axis -------------------------------------------------

def test_compare_varies_the_estimator_of_one_bound(tmp_path):
    out = tmp_path / "cmp"
    status = main(["compare", DIGITS, "--vary", "objective.gradient=reparam,dreg",
                   "--set", "objective.bound=iwae", "--set", "num_particles=3",
                   "--set", "epochs=1", "--set", "progress=false", "--set", "latent_dim=4",
                   "--set", "hidden=[32]", "--set", "data.train_size=128",
                   "--set", "data.test_size=50", "--nll-samples", "25", "--eval-points", "50",
                   "--grad-draws", "3", "--grad-batch", "16", "--out", str(out)])
    assert status == 0
    rows = read_rows(out / "compare.csv")
    assert [r["objective.gradient"] for r in rows] == ["reparam", "dreg"]
    for row in rows:
        config = load_config(out / row["run"] / "config.toml")
        assert config.model.objective == ObjectiveConfig(bound="iwae",
                                                         gradient=row["objective.gradient"])
        assert config.model.num_particles == 3
        assert math.isfinite(float(row["test_elbo"])) and float(row["grad_var_total"]) > 0
    same = read_rows(out / "gradients.csv")
    assert [(r["combination"], r["objective"], r["own"]) for r in same] == [
        ("objective.gradient=reparam", "iwae/reparam K=3", "True"),
        ("objective.gradient=reparam", "iwae/dreg K=3", "False"),
        ("objective.gradient=dreg", "iwae/reparam K=3", "False"),
        ("objective.gradient=dreg", "iwae/dreg K=3", "True")]
    # at the same parameters and draws DReG changes the guide's gradient only: the decoder's
    # (sum_k w~_k grad_theta log w_k) is the same
    for first, second in (same[0:2], same[2:4]):
        assert float(first["var_total_decoder"]) == pytest.approx(
            float(second["var_total_decoder"]), rel=1e-4)
        assert float(first["var_total_encoder"]) != pytest.approx(
            float(second["var_total_encoder"]), rel=1e-3)


# ---- 5. the semi-supervised VAE with y sampled ---------------------------------------------

@pytest.mark.parametrize("bound, gradient, k", [("elbo", "score", 2), ("iwae", "vimco", 3),
                                                ("iwae", "rws", 3)])
def test_ssvae_trains_with_sampled_y_estimators(bound, gradient, k, tmp_path):
    out = tmp_path / "run"
    assert main(["train", SSVAE_DIGITS, *SS_TINY, "--set", "elbo=trace",
                 "--set", f"objective.bound={bound}", "--set", f"objective.gradient={gradient}",
                 "--set", f"num_particles={k}", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"] == f"{bound}/{gradient}" and metrics["num_particles"] == k
    assert metrics["objective_run"] == "BoundObjective"
    assert math.isfinite(metrics["train_elbo"]) and math.isfinite(metrics["test_elbo"])
    assert 0 <= metrics["test_accuracy"] <= 1
    finite_history(out)


def test_ssvae_dreg_names_the_sampled_site_in_one_line(tmp_path, capsys):
    status = main(["train", SSVAE_DIGITS, *SS_TINY, "--set", "elbo=trace",
                   "--set", "objective.bound=iwae", "--set", "objective.gradient=dreg",
                   "--set", "num_particles=3", "--out", str(tmp_path / "run")])
    assert status == 2
    line = one_line_error(capsys)
    # refused when the config is read (kind ssvae samples y), naming the estimators that work
    assert "gradient = \"dreg\" needs reparameterised sites" in line and "y ~ q(y|x)" in line
    assert "rws, score, vimco" in line


def test_ssvae_dreg_refusal_leaves_no_run_behind(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", SSVAE_DIGITS, *SS_TINY, "--set", "elbo=trace", "--set", "num_particles=3",
            "--set", "objective.bound=iwae", "--out", str(out)]
    assert main([*args, "--set", "objective.gradient=dreg"]) == 2
    capsys.readouterr()
    assert main([*args, "--set", "objective.gradient=rws"]) == 0, capsys.readouterr().err


# ---- 6. refusals on the command line -------------------------------------------------------

@pytest.mark.parametrize("sets, expected", [
    (["objective.bound=elbo", "objective.gradient=rws"],
     ['gradient = "rws" is not defined for bound = "elbo"', "it works with bound = iwae"]),
    (["objective.bound=iwae", "objective.gradient=stl", "num_particles=3", "elbo=trace"],
     ['gradient = "stl" is biased for bound = "iwae"', "objective.biased = true"]),
    (["objective.bound=renyi", "objective.renyi_alpha=-0.5"], ["not a lower bound"]),
    (["objective.gradient=stl"], ['set model.elbo = "trace"', 'model.elbo = "meanfield"']),
    (["objective.bound=foo"],
     ["model.objective.bound = 'foo' is not one of: elbo, iwae, renyi, miwae, piwae, ciwae, tmc"]),
    (["objective.gradient=bar"], ["model.objective.gradient = 'bar' is not one of:",
                                  "reparam", "stl", "dreg", "rws-dreg", "vimco"]),
    (["objective.bound=tmc", "objective.gradient=dreg"], ['takes gradient = reparam']),
    (["objective.bound=iwae", "objective.gradient=vimco"], ["num_particles >= 2"]),
    (["elbo=iwae", "objective.bound=iwae"], ["both choose the objective"]),
])
def test_train_refuses_bad_objectives_in_one_line(sets, expected, tmp_path, capsys):
    out = tmp_path / "run"
    args = [word for s in sets for word in ("--set", s)]
    assert main(["train", DIGITS, *TINY, *args, "--out", str(out)]) == 2
    line = one_line_error(capsys)
    for text in expected:
        assert text in line, line
    assert not out.exists()  # refused before anything is written


# ---- 7. a bound registered by a plug-in -----------------------------------------------------

class TemperedIWAE(Bound):
    """(1/t) log (1/K) sum_k w_k^t, t = 1/2: IWAE's log-mean-exp at temperature t (a bound on
    log p(x) for 0 < t <= 1). c = softmax(t log w); DReG needs dlog c / dlog w = t (1 - c)."""

    t = 0.5
    calls = {"value": 0, "dlog_c": 0}

    def value(self, log_w):
        TemperedIWAE.calls["value"] += 1
        return (torch.logsumexp(self.t * log_w, 0) - math.log(log_w.shape[0])) / self.t

    def log_c(self, log_w):
        return torch.log_softmax(self.t * log_w.detach(), 0)

    def dlog_c(self, log_w):
        TemperedIWAE.calls["dlog_c"] += 1
        return self.t * (1 - self.log_c(log_w).exp())


@pytest.fixture
def tempered_bound():
    BOUNDS.register("tempered-iwae", TemperedIWAE, dreg=True)
    TemperedIWAE.calls.update(value=0, dlog_c=0)
    yield "tempered-iwae"
    BOUNDS.unregister("tempered-iwae")


def test_a_registered_bound_is_a_config_choice_and_trains_with_dreg(tempered_bound, tmp_path,
                                                                    capsys):
    out = tmp_path / "run"
    assert main(["train", DIGITS, *TINY, "--set", f"objective.bound={tempered_bound}",
                 "--set", "objective.gradient=dreg", "--set", "num_particles=3",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"] == "tempered-iwae/dreg" and metrics["num_particles"] == 3
    assert math.isfinite(metrics["test_elbo"])
    finite_history(out)
    assert TemperedIWAE.calls["dlog_c"] >= 4 and TemperedIWAE.calls["value"] >= 4  # each step
    run = load(out)
    assert run.config.model.objective.bound == tempered_bound
    assert isinstance(objective_for(run.config.model).bound, TemperedIWAE)
    # listed among the choices; its capabilities decide the pairs it admits
    assert main(["train", DIGITS, *TINY, "--set", "objective.bound=nope",
                 "--out", str(tmp_path / "x")]) == 2
    assert ", tempered-iwae" in one_line_error(capsys)
    assert main(["train", DIGITS, *TINY, "--set", f"objective.bound={tempered_bound}",
                 "--set", "objective.gradient=vimco", "--set", "num_particles=3",
                 "--out", str(tmp_path / "y")]) == 2
    assert "it works with bound = iwae" in one_line_error(capsys)


def test_an_unregistered_bound_is_refused_again(tempered_bound):
    config = ObjectiveConfig(bound=tempered_bound, gradient="dreg")
    assert config.bound == tempered_bound
    BOUNDS.unregister(tempered_bound)
    with pytest.raises(ConfigError, match="is not one of: elbo, iwae"):
        ObjectiveConfig(bound=tempered_bound, gradient="dreg")
