"""``pyrovae compare``: the grid (--vary), the gradient-variance measurement, and the command
end to end on scikit-learn's digits (resume, invalid combinations, failures)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest
import torch

from pyrovae import VAE, VAEConfig, load_config, load_dataset
from pyrovae.cli import main
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.gradients import (elbo_gradient_variance, fixed_minibatch,
                                          gradient_moments)
from pyrovae.experiments import expand, parse_vary
from pyrovae.experiments.grid import split_values
from pyrovae.experiments.summary import markdown_table, mean_sd
from pyrovae.objectives import make_elbo

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.toml")
BASE = load_config(DIGITS)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# ---- the grid ---------------------------------------------------------------------------------

def test_values_split_at_top_level_commas_only():
    assert split_values('trace, [400,200],"a,b",{x = 1, y = 2}') == [
        "trace", "[400,200]", '"a,b"', "{x = 1, y = 2}"]


def test_a_value_carries_its_own_settings():
    trace, iwae, lr = parse_vary("elbo=trace,iwae+num_particles=5+kl.beta=0.5")[:2] + \
        parse_vary("lr=1e+3")
    assert trace.assignments == ("elbo=trace",)
    assert iwae.label == "iwae+num_particles=5+kl.beta=0.5"
    assert iwae.assignments == ("elbo=iwae", "num_particles=5", "kl.beta=0.5")
    assert lr.assignments == ("lr=1e+3",)  # the '+' of a number is not a separator


def test_grid_is_the_product_times_seeds_and_lists_invalid_combinations():
    runs, invalid = expand(BASE, ["elbo=trace,meanfield,iwae+num_particles=5",
                                  "prior=normal,vamp"], seeds=2)
    assert [c.label for c in invalid] == ["elbo=meanfield prior=vamp"]
    assert "closed-form KL" in invalid[0].error
    got = [(r.config.model.elbo, r.config.model.prior.name, r.config.model.num_particles,
            r.config.train.seed) for r in runs]
    assert got == [("trace", "normal", 1, 0), ("trace", "normal", 1, 1),
                   ("trace", "vamp", 1, 0), ("trace", "vamp", 1, 1),
                   ("meanfield", "normal", 1, 0), ("meanfield", "normal", 1, 1),
                   ("iwae", "normal", 5, 0), ("iwae", "normal", 5, 1),
                   ("iwae", "vamp", 5, 0), ("iwae", "vamp", 5, 1)]
    assert runs[6].name == "elbo-iwae+num_particles-5_prior-normal_seed0"
    assert len({r.name for r in runs}) == len(runs)
    # everything else comes from the base config
    assert all(r.config.model.hidden == BASE.model.hidden for r in runs)


@pytest.mark.parametrize("varies, message", [
    (["elbo=trace", "elbo=meanfield"], "names a key twice"),
    (["elbo=trace,trace"], "lists a value twice"),
    (["elbo=trace,"], "empty value"),
    (["elbo"], "expects KEY=V1,V2"),
    (["elbo=trace+num_particle=5"], "did you mean 'model.num_particles'"),
    (["epoch=1,2"], "unknown config key 'epoch'"),
    (["hidden=[400],[ 400]"], "share the run folder"),
    (["train.seed=1,2"], "seeds of --seeds N"),
])
def test_bad_grids_are_refused_with_the_reason(varies, message):
    with pytest.raises(ConfigError, match=message):
        expand(BASE, varies)


# ---- gradient variance ------------------------------------------------------------------------

def test_deterministic_loss_has_zero_variance_and_its_exact_gradient():
    a, b = torch.nn.Parameter(torch.tensor([1.0, -2.0])), torch.nn.Parameter(torch.tensor(3.0))
    params = {"enc.a": a, "dec.b": b}
    r = gradient_moments(params, lambda: (a.pow(2).sum() + 5 * b).backward(), draws=10).summary()
    assert r["var_total"] == 0 and r["var_mean"] == 0 and r["snr"] == math.inf
    assert r["mean_sqnorm"] == pytest.approx(4 + 16 + 25)
    assert r["groups"]["enc"]["mean_sqnorm"] == pytest.approx(20)
    assert a.grad is None and b.grad is None  # cleared after


def test_variance_of_a_known_noisy_gradient():
    """loss = sum_j theta_j * (m_j + s_j eps_j): g_j = m_j + s_j eps_j, Var g_j = s_j^2."""
    theta = torch.nn.Parameter(torch.zeros(3))
    other = torch.nn.Parameter(torch.zeros(2))
    m, s = torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.5, 1.0, 2.0])

    def backward():
        (theta * (m + s * torch.randn(3))).sum().backward()
        (other * 0.0).sum().backward()

    r = gradient_moments({"x.theta": theta, "y.other": other}, backward, draws=4000,
                         seed=1).summary()
    assert r["var_total"] == pytest.approx(0.25 + 1 + 4, rel=0.06)
    assert r["var_mean"] == pytest.approx(5.25 / 5, rel=0.06)
    assert r["mean_sqnorm"] == pytest.approx(5, abs=0.1)
    assert r["groups"]["y"]["var_total"] == 0
    again = gradient_moments({"x.theta": theta, "y.other": other}, backward, draws=4000,
                             seed=1).summary()
    assert again == r  # repeatable for a seed


def _tiny(elbo="trace"):
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=4, hidden=(32,), elbo=elbo), (64,))


@pytest.fixture(scope="module")
def batch():
    return fixed_minibatch(load_dataset("digits", binarize="dynamic"), 32)


def test_analytic_kl_removes_encoder_noise_only(batch):
    """Same draws of z: the decoder's gradients are identical, the encoder's far less noisy."""
    vae = _tiny()
    trace = elbo_gradient_variance(vae, batch, make_elbo("trace"), draws=50)
    meanfield = elbo_gradient_variance(vae, batch, make_elbo("meanfield"), draws=50)
    assert meanfield["groups"]["decoder"] == pytest.approx(trace["groups"]["decoder"], rel=1e-5)
    assert meanfield["groups"]["encoder"]["var_total"] < 0.2 * trace["groups"]["encoder"][
        "var_total"]
    assert meanfield["var_total"] < trace["var_total"]
    # the mean gradient is (nearly) the same: both estimate the same ELBO's gradient
    assert meanfield["mean_sqnorm"] == pytest.approx(trace["mean_sqnorm"], rel=0.05)


def test_default_estimator_is_the_runs_own_and_tracegraph_matches_trace(batch):
    vae = _tiny("trace")
    own = elbo_gradient_variance(vae, batch, draws=20)
    assert own == elbo_gradient_variance(vae, batch, make_elbo("trace"), draws=20)
    # TraceGraph_ELBO back-propagates itself (loss_and_grads); same estimator here
    graph = elbo_gradient_variance(vae, batch, make_elbo("tracegraph"), draws=20)
    assert graph["var_total"] == pytest.approx(own["var_total"], rel=1e-5)


def test_iwae_with_one_particle_is_trace_and_more_particles_cut_the_variance(batch):
    """K = 1: the same estimator as Trace_ELBO, draw for draw. K > 1 (here at initialization)
    lowers the variance of every group's gradient. (On a trained model the encoder's SNR then
    falls with K while the decoder's rises: docs/compare.md.)"""
    vae = _tiny()
    trace = elbo_gradient_variance(vae, batch, make_elbo("trace"), draws=30)
    iwae1 = elbo_gradient_variance(vae, batch, make_elbo("iwae", 1), draws=30)
    iwae8 = elbo_gradient_variance(vae, batch, make_elbo("iwae", 8), draws=30)
    assert iwae1["var_total"] == pytest.approx(trace["var_total"], rel=1e-5)
    assert iwae1["mean_sqnorm"] == pytest.approx(trace["mean_sqnorm"], rel=1e-5)
    for group in ("encoder", "decoder"):
        assert iwae8["groups"][group]["var_total"] < 0.6 * iwae1["groups"][group]["var_total"]


# ---- summaries --------------------------------------------------------------------------------

def test_table_shows_mean_and_sample_sd_over_seeds():
    rows = [{"combination": "elbo=trace", "elbo": "trace", "test_elbo": v, "test_nll": 90.0}
            for v in (-100.0, -102.0, -104.0)]
    rows.append({"combination": "elbo=iwae", "elbo": "iwae", "test_elbo": -99.0,
                 "test_nll": 88.0})
    assert mean_sd([-100.0, -102.0, -104.0]) == (-102.0, 2.0)
    table = markdown_table(rows, ["elbo"]).splitlines()
    assert table[0].startswith("| elbo | seeds | test ELBO | test NLL |")
    assert table[2].startswith("| trace | 3 | -102.00 ± 2.00 | 90.00 ± 0.00 |")
    assert table[3].startswith("| iwae | 1 | -99.00 | 88.00 |")


# ---- the command, end to end ------------------------------------------------------------------

SMALL = ["--set", "epochs=2", "--set", "progress=false", "--set", "data.train_size=256",
         "--set", "data.test_size=100", "--set", "fast=false", "--nll-samples", "30",
         "--grad-draws", "5"]
GRID = ["--vary", "elbo=meanfield,iwae+num_particles=2", "--vary", "prior=normal,vamp"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("pyrovae: error: ") and "Traceback" not in "".join(err)
    return err[-1]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def grid_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    status = main(["compare", DIGITS, *GRID, *SMALL, "--skip-invalid", "--out", str(out)])
    return status, out


def test_compare_trains_evaluates_and_tabulates_every_valid_combination(grid_out):
    status, out = grid_out
    assert status == 0
    rows = read_rows(out / "compare.csv")
    assert [(r["elbo"], r["prior"], r["seed"]) for r in rows] == [
        ("meanfield", "normal", "0"), ("iwae+num_particles=2", "normal", "0"),
        ("iwae+num_particles=2", "vamp", "0")]
    for row in rows:
        run = out / row["run"]
        config = load_config(run / "config.toml")
        assert (config.model.elbo, config.model.prior.name) == (row["elbo"].split("+")[0],
                                                                row["prior"])
        assert config.model.num_particles == (2 if "iwae" in row["elbo"] else 1)
        assert config.train.epochs == 2 and config.data.train_size == 256
        numbers = {k: float(row[k]) for k in ("test_elbo", "test_nll", "seconds_per_step",
                                              "grad_var_total", "grad_snr", "train_seconds")}
        assert all(math.isfinite(v) for v in numbers.values()), row
        assert numbers["seconds_per_step"] == pytest.approx(
            numbers["train_seconds"] / float(row["steps"]))
        assert int(row["steps"]) == 2 * (256 // 64)
        assert numbers["grad_var_total"] > 0
        assert -numbers["test_nll"] > numbers["test_elbo"] - 1.0  # IS bound above the ELBO
        assert (run / "eval.json").is_file() and int(row["nll_samples"]) == 30
    # every objective again at the first seed's parameters; the own one repeats the row's
    same = read_rows(out / "gradients.csv")
    assert [(r["combination"], r["objective"]) for r in same] == [
        ("elbo=meanfield prior=normal", "meanfield"), ("elbo=meanfield prior=normal", "iwae K=2"),
        ("elbo=iwae+num_particles=2 prior=normal", "meanfield"),
        ("elbo=iwae+num_particles=2 prior=normal", "iwae K=2"),
        ("elbo=iwae+num_particles=2 prior=vamp", "iwae K=2")]  # no meanfield with vamp
    by_run = {r["run"]: r for r in rows}
    for r in same:
        if r["own"] == "True":
            assert float(r["var_total"]) == float(by_run[r["run"]]["grad_var_total"])
            assert float(r["snr_encoder"]) == float(by_run[r["run"]]["grad_snr_encoder"])
    assert sum(r["own"] == "True" for r in same) == 3
    md = (out / "compare.md").read_text()
    assert "| elbo=iwae+num_particles=2 prior=normal | iwae K=2 (own) |" in md
    assert "| meanfield | normal | 1 |" in md and "| iwae+num_particles=2 | vamp | 1 |" in md
    assert "`elbo=meanfield prior=vamp`: model.elbo = \"meanfield\" needs a closed-form KL" in md
    assert (out / "compare.png").read_bytes().startswith(PNG_SIGNATURE)


def test_invalid_combinations_stop_everything_before_training(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["compare", DIGITS, *GRID, *SMALL, "--out", str(out)]) == 2
    line = one_line_error(capsys)
    assert "'elbo=meanfield prior=vamp'" in line and "--skip-invalid" in line
    assert not out.exists()


def test_resume_keeps_finished_rows_and_recomputes_only_missing_ones(grid_out, capsys):
    _, out = grid_out
    before = read_rows(out / "compare.csv")
    ckpts = {r["run"]: os.stat(out / r["run"] / "checkpoint.pt").st_mtime_ns for r in before}
    # a finished grid without --resume is refused
    assert main(["compare", DIGITS, *GRID, *SMALL, "--skip-invalid", "--out", str(out)]) == 2
    assert "--resume" in one_line_error(capsys)
    # settings differ from the finished rows': refused
    changed = [a if a != "30" else "40" for a in SMALL]
    assert main(["compare", DIGITS, *GRID, *changed, "--skip-invalid", "--resume", "--out",
                 str(out)]) == 2
    assert "measured with" in one_line_error(capsys)
    # as if interrupted after training the last run: its row is missing
    with open(out / "compare.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(before[0]))
        writer.writeheader()
        writer.writerows(before[:2])
    assert main(["compare", DIGITS, *GRID, *SMALL, "--skip-invalid", "--resume", "--out",
                 str(out)]) == 0
    after = read_rows(out / "compare.csv")
    def timing(rows):
        return [{k: v for k, v in r.items() if k != "eval_seconds"} for r in rows]

    assert timing(after) == timing(before)  # the missing row recomputed identically
    assert after[:2] == before[:2]  # finished rows kept as they were
    assert {r["run"]: os.stat(out / r["run"] / "checkpoint.pt").st_mtime_ns
            for r in after} == ckpts  # nothing retrained


def test_a_failing_run_keeps_finished_rows(tmp_path, capsys):
    """batch_size = 5000 is a valid config but larger than the data: the run fails at training
    time. Without --keep-going the grid stops there with the finished rows on disk; with it,
    the others run, the failure is listed and the exit status is 1."""
    out = tmp_path / "stop"
    assert main(["compare", DIGITS, "--vary", "batch_size=64,5000", *SMALL, "--out",
                 str(out)]) == 2
    line = one_line_error(capsys)
    assert "run batch_size-5000_seed0 failed" in line and "--resume" in line
    assert [r["batch_size"] for r in read_rows(out / "compare.csv")] == ["64"]
    out = tmp_path / "going"
    assert main(["compare", DIGITS, "--vary", "batch_size=5000,32", *SMALL, "--keep-going",
                 "--out", str(out)]) == 1
    assert [r["batch_size"] for r in read_rows(out / "compare.csv")] == ["32"]
    assert "`batch_size-5000_seed0`: train.batch_size = 5000 is larger" in (
        out / "compare.md").read_text()


def test_dry_run_lists_the_plan(capsys):
    assert main(["compare", DIGITS, *GRID, "--seeds", "2", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("run ") for line in lines) == 6
    assert [line for line in lines if line.startswith("skip")][0].startswith(
        "skip  elbo=meanfield prior=vamp: ")


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0"], "--seeds 0: need at least 1 seed"),
    (["--nll-samples", "10"], "nll-samples = 10: must be an integer >= 25"),
    (["--grad-draws", "1"], "grad-draws = 1: must be an integer >= 2"),
    (["--resume", "--force"], "pick one"),
    (["--vary", "prior=vampp"], "every combination of the grid is invalid"),
])
def test_bad_options_fail_before_training(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["compare", DIGITS, "--vary", "elbo=trace", *extra, "--skip-invalid",
                 "--out", str(out)]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_interrupted_compare_resumes_without_losing_finished_rows(tmp_path):
    """SIGINT while the second run trains: exit 130 with the first row on disk; --resume
    keeps that row as it was and continues the second run from its checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    args = [sys.executable, "-m", "pyrovae", "compare", DIGITS, "--vary", "epochs=2,100",
            *SMALL, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "epochs-100_seed0" / "checkpoint.pt").is_file():  # after its 1st epoch
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "compare interrupted in run epochs-100_seed0 (its checkpoint is saved); 1 " \
           "finished rows are in" in err
    first = read_rows(out / "compare.csv")
    assert len(first) == 1
    done = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out / "compare.csv")
    assert rows[0] == first[0] and [r["epochs"] for r in rows] == ["2", "100"]
