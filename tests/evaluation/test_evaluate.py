"""``pyrovae evaluate`` / ``export`` and the numbers behind them (evaluation/diagnostics.py,
psis.py, evaluate.py, reports/arviz_export.py), against known answers."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from pyrovae import VAE, VAEConfig, load_dataset, train
from pyrovae.cli import main
from pyrovae.evaluation import (active_units, evaluate_run, kl_per_dim, log_likelihood,
                                mutual_information, pareto_khat, posterior_params)
from pyrovae.evaluation.diagnostics import activity
from pyrovae.evaluation.psis import summarize_khat
from pyrovae.runtime.files import read_csv
from pyrovae.training import Run
from tests.support.one_line import assert_one_line_error
from tests.support.ppca import ppca

az = pytest.importorskip("arviz")


# ---- Pareto k-hat ---------------------------------------------------------------------------

def heavy_tailed(rows: int, draws: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.standard_t(3, (rows, draws)) * 1.5,
                           rng.normal(size=(rows, draws)) * 0.3,
                           np.log(rng.pareto(0.8, (rows, draws)) + 1e-3)])


def test_khat_equals_arviz_psislw():
    lw = heavy_tailed(20, 3000)
    _, expected = az.psislw(lw, reff=1.0)
    np.testing.assert_allclose(pareto_khat(lw), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pareto_khat(torch.from_numpy(lw)), expected, atol=1e-10)


@pytest.mark.parametrize("tail_index", [4.0, 1.25])
def test_khat_recovers_the_tail_shape_of_pareto_weights(tail_index):
    """Lomax weights with tail index a have Pareto shape k = 1/a."""
    rng = np.random.default_rng(1)
    lw = np.log(rng.pareto(tail_index, (200, 5000)))
    assert np.mean(pareto_khat(lw)) == pytest.approx(1 / tail_index, abs=0.05)


def test_khat_of_constant_weights_is_nan_and_counted_reliable():
    lw = np.zeros((3, 100))
    lw[2] = np.random.default_rng(0).normal(size=100) * 2
    khat = pareto_khat(lw)
    assert np.isnan(khat[:2]).all() and np.isfinite(khat[2])
    summary = summarize_khat(np.array([np.nan, 0.2, 0.6, 0.9]))
    assert (summary["share_below_0_5"], summary["share_0_5_to_0_7"],
            summary["share_above_0_7"]) == (0.5, 0.25, 0.25)
    with pytest.raises(ValueError, match="too few"):
        pareto_khat(np.zeros((2, 10)))


# ---- posterior diagnostics ------------------------------------------------------------------

def test_analytic_kl_per_dim_matches_monte_carlo():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), prior="learnable-normal"), (10,))
    with torch.no_grad():
        vae.prior.loc.copy_(torch.tensor([0.5, -1.0, 0.0]))
    x = torch.rand(200, 10)
    mu, sigma = posterior_params(vae, x)
    analytic = kl_per_dim(vae, mu, sigma)
    p = vae.prior().base_dist
    z = Normal(mu, sigma).sample((400,))  # [S, N, L]
    mc = (Normal(mu, sigma).log_prob(z) - Normal(p.loc, p.scale).log_prob(z)).reshape(-1, 3)
    se = mc.std(0) / math.sqrt(mc.shape[0])
    assert ((mc.mean(0) - analytic).abs() < 4 * se).all(), (mc.mean(0), analytic, se)
    from pyrovae import evaluate_elbo
    assert float(analytic.sum()) == pytest.approx(evaluate_elbo(vae, x)["kl"], rel=1e-5)


def test_kl_per_dim_is_none_for_priors_that_do_not_factorise():
    vae = VAE(VAEConfig(latent_dim=2, hidden=(8,), prior="mog", elbo="trace"), (4,))
    mu, sigma = posterior_params(vae, torch.rand(5, 4))
    assert kl_per_dim(vae, mu, sigma) is None


def test_active_units_counts_dimensions_whose_means_vary():
    torch.manual_seed(0)
    mu = torch.randn(5000, 4) * torch.tensor([1.0, 0.2, 0.05, 0.0])  # Var 1, .04, .0025, 0
    assert active_units(mu) == 2
    np.testing.assert_allclose(activity(mu).numpy(), [1, 0.04, 0.0025, 0], rtol=0.1, atol=1e-9)


def test_mutual_information_bounds():
    n = 300
    same = torch.zeros(n, 3)  # an encoder that ignores x: I = 0 exactly
    assert mutual_information(same, torch.ones(n, 3)) == pytest.approx(0.0, abs=1e-9)
    apart = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, 2)  # 100 sigma apart
    # far-apart, narrow posteriors: each z identifies its x, I = log N
    assert mutual_information(apart, torch.full((n, 2), 0.01)) == pytest.approx(math.log(n),
                                                                                 abs=1e-6)


def test_mutual_information_equals_the_direct_pairwise_formula():
    """The matrix-product form equals log q(z_i|x_j) computed pair by pair."""
    from pyrovae.runtime.rng import seeded
    torch.manual_seed(0)
    mu, sigma = torch.randn(300, 5).double(), torch.rand(300, 5).double() + 0.3
    with seeded(3):
        z = mu + sigma * torch.randn_like(mu)
    own = Normal(mu, sigma).log_prob(z).sum(-1)
    pairs = Normal(mu[None], sigma[None]).log_prob(z[:, None]).sum(-1)  # [N, N]
    direct = float((own - torch.logsumexp(pairs, 1) + math.log(300)).mean())
    assert mutual_information(mu, sigma, seed=3) == pytest.approx(direct, abs=1e-9)
    assert mutual_information(mu, sigma, seed=3, chunk=7) == pytest.approx(direct, abs=1e-9)


# ---- evaluate_run ---------------------------------------------------------------------------

def test_evaluate_run_is_exact_on_ppca_with_the_true_posterior():
    vae, exact = ppca(exact_posterior=True)
    torch.manual_seed(0)
    x = exact.sample((60,))
    data = types.SimpleNamespace(test_data=lambda: x)
    result = evaluate_run(Run(vae, None), data, nll_samples=100, progress=False)
    exact_nll = float(-exact.log_prob(x).mean())
    assert result["test_nll"] == pytest.approx(exact_nll, abs=1e-3)
    # q = p(z|x): the ELBO is tight (in expectation: its one-sample estimate is noisy)
    assert result["test_elbo"] == pytest.approx(-exact_nll, abs=4 * result["test_elbo_se"])
    assert result["khat_share_above_0_7"] == 0.0  # equal weights: nothing to fit
    assert result["rate"] == pytest.approx(sum(result["kl_per_dim"]), rel=1e-5)
    assert result["test_elbo"] == pytest.approx(-result["distortion"] - result["rate"], abs=1e-4)
    assert result["per_point"]["log_px"].shape == (60,)


@pytest.mark.parametrize("beta", [0.25, 4.0])
def test_the_elbo_is_the_bound_whatever_the_kl_weight(beta):
    """With beta != 1 the reported ELBO is log p(x|z) - KL, the bound: on PPCA with the exact
    posterior it is log p(x) (up to its one-draw noise), while the weighted objective
    log p(x|z) - beta KL, reported beside it, is above log p(x) for beta < 1."""
    vae, exact = ppca(exact_posterior=True)
    vae.beta = beta
    torch.manual_seed(0)
    x = exact.sample((200,))
    data = types.SimpleNamespace(test_data=lambda: x)
    result = evaluate_run(Run(vae, None), data, nll_samples=100, progress=False)
    log_px = float(exact.log_prob(x).mean())
    assert result["test_elbo"] == pytest.approx(log_px, abs=4 * result["test_elbo_se"])
    assert result["test_elbo"] == pytest.approx(-result["distortion"] - result["rate"], abs=1e-4)
    objective = -result["distortion"] - beta * result["rate"]
    assert result["test_objective"] == pytest.approx(objective, abs=1e-4)
    if beta < 1:  # the objective is no bound: above log p(x) by (1 - beta) KL
        assert result["test_objective"] > log_px + 0.5 * (1 - beta) * result["rate"]


def test_evaluate_run_nll_matches_log_likelihood_and_checks_input():
    vae, exact = ppca(exact_posterior=False)
    torch.manual_seed(1)
    x = exact.sample((30,))
    data = types.SimpleNamespace(test_data=lambda: x)
    result = evaluate_run(Run(vae, None), data, nll_samples=200, seed=4, progress=False,
                          batch_size=7)
    direct = log_likelihood(vae, x, 200, batch_size=7, seed=4)
    assert result["test_nll"] == pytest.approx(float(-direct.mean()), abs=1e-9)
    assert -result["test_nll"] > result["test_elbo"]  # IS is tighter than the ELBO
    assert 0 < result["mutual_info"] <= result["mutual_info_max"]
    with pytest.raises(Exception, match="too few"):
        evaluate_run(Run(vae, None), data, nll_samples=10, progress=False)
    with pytest.raises(Exception, match="split"):
        evaluate_run(Run(vae, None), data, nll_samples=50, split="valid", progress=False)


# ---- command line ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    data = load_dataset("digits", binarize="dynamic")
    train(VAEConfig(latent_dim=4, hidden=(32,)), data, out=out, epochs=2, progress=False)
    return out


def test_evaluate_cli_writes_json_csv_and_pngs(digits_run, capsys):
    assert main(["evaluate", str(digits_run), "--nll-samples", "60", "--points", "80",
                 "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "NLL (K=60)" in table and "active units" in table
    result = json.loads((digits_run / "eval.json").read_text())
    for key in ("test_elbo", "test_elbo_se", "test_nll", "test_nll_se", "kl_per_dim",
                "active_units", "rate", "distortion", "mutual_info", "psis_khat",
                "khat_share_above_0_7", "eval_seconds", "peak_rss_mb"):
        assert key in result, key
    assert result["num_points"] == 80 and len(result["kl_per_dim"]) == 4
    assert result["test_nll"] < -result["test_elbo"]
    rows = read_csv(digits_run / "eval_points.csv")
    assert len(rows) == 80 and -np.mean([r["log_px"] for r in rows]) == pytest.approx(
        result["test_nll"], rel=1e-6)
    for png in ("khat.png", "kl_per_dim.png"):
        assert (digits_run / png).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, message", [
    (["--nll-samples", "10"], "too few"),
    (["--points", "0"], "max_points"),
])
def test_evaluate_cli_errors_are_one_line(digits_run, capsys, args, message):
    assert main(["evaluate", str(digits_run), "--quiet", *args]) == 2
    assert message in assert_one_line_error(capsys.readouterr().err)


def test_evaluate_cli_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run folder" in assert_one_line_error(capsys.readouterr().err)


def test_export_opens_in_arviz_and_summarises(digits_run, tmp_path, capsys):
    path = tmp_path / "post.nc"
    assert main(["export", str(digits_run), "--arviz", str(path), "--points", "0,3,5",
                 "--draws", "400"]) == 0
    idata = az.from_netcdf(path)
    z = idata.posterior["z"]
    assert z.shape == (1, 400, 3, 4) and list(z["point"].values) == [0, 3, 5]
    summary = az.summary(idata, var_names=["z"], kind="stats")
    assert len(summary) == 12
    # the guide's draws average to the encoder's means
    from pyrovae import load
    run = load(digits_run)
    mu, sigma = run.vae.encode(load_dataset(run.config.data).test_data()[[0, 3, 5]])
    np.testing.assert_allclose(z.mean(("chain", "draw")).values, mu.numpy(),
                               atol=float(4 * sigma.max() / math.sqrt(400)))
    stats = idata.sample_stats
    assert stats["log_weight"].shape == (1, 400, 3) and stats["train_elbo"].shape == (2,)
    assert idata.log_likelihood["x"].shape == (1, 400, 3)
    assert "[model]" in idata.posterior.attrs["pyrovae_config"]
    import matplotlib
    matplotlib.use("Agg")
    az.plot_posterior(idata, var_names=["z"], coords={"point": [0], "latent": [0, 1]})


@pytest.mark.parametrize("args, message", [
    (["--arviz", "x.txt"], "must end in .nc"),
    (["--arviz", "x.nc", "--points", "99999"], "not indices"),
    (["--arviz", "x.nc", "--points", "a,b"], "indices like"),
    (["--arviz", "x.nc", "--draws", "5"], "too few"),
])
def test_export_errors_are_one_line(digits_run, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(digits_run), *args]) == 2
    assert message in assert_one_line_error(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())  # nothing half-written
