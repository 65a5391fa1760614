"""The KL term's three parts in ``pyrovae evaluate`` (pyrovae/evaluation/decomposition.py) and
``pyrovae evaluate RUN --disentanglement``: beta-TCVAE and DIP-VAE-II trained end to end on
dsprites-small, scored through the CLI; a run on data without factors refused in one line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Normal

from pyrovae import HVAEConfig, RunConfig, VAEConfig, load_dataset, train
from pyrovae.cli import main
from pyrovae.config import DataConfig, KLConfig, TrainConfig
from pyrovae.evaluation import evaluate_run
from pyrovae.evaluation.decomposition import kl_decomposition
from pyrovae.evaluation.diagnostics import posterior_params
from tests.support.one_line import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

SCORES = ("mig", "factorvae", "dci_disentanglement", "dci_completeness",
          "dci_informativeness", "sap", "betavae")
TERMS = ("index_code_mi", "total_correlation", "dimwise_kl")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    data = load_dataset("digits", binarize="dynamic", train_size=256, test_size=300)
    out = tmp_path_factory.mktemp("runs") / "digits"
    run = train(VAEConfig(latent_dim=4, hidden=(32,), likelihood="bernoulli"), data, epochs=2,
                batch_size=32, progress=False, out=str(out))
    return run, data, out


def test_the_three_terms_add_up_to_the_rate_and_each_is_the_estimate_over_the_split(digits_run):
    """MI + TC + DW estimates E_n KL(q(z|x_n) || p(z)) = the rate (the ELBO's closed-form KL):
    on each draw the three sum to log q(z|x) - log p(z), so their sum meets the rate within a
    few standard errors of that Monte Carlo term (sd / sqrt(3 N draws), N = 297 test points; tolerance 4). With
    the whole split as one minibatch, the MI is the He et al. estimate evaluate already gives
    (mutual_info, the same mixture up to MSS's weights), within 0.05 nats."""
    run, data, _ = digits_run
    vae, x = run.model, data.test_data()
    result = evaluate_run(run, data, nll_samples=25, progress=False)
    for key in TERMS:
        assert math.isfinite(result[key]) and result[key + "_se"] > 0, key
    assert result["decomposition_estimator"] == "mss" and result["decomposition_batch"] == len(x)
    total = sum(result[k] for k in TERMS)
    mu, sigma = posterior_params(vae, x)
    z = mu + sigma * torch.randn_like(mu)
    prior = vae.prior().base_dist
    mc = (Normal(mu, sigma).log_prob(z) - prior.log_prob(z)).sum(-1).double()
    assert abs(total - result["rate"]) < 4 * float(mc.std()) / math.sqrt(3 * len(mc)), (
        total, result["rate"])
    assert result["index_code_mi"] == pytest.approx(result["mutual_info"], abs=0.05)
    assert result["total_correlation"] >= -0.05
    assert 0 <= result["index_code_mi"] <= math.log(len(x)) + 0.05
    # the numbers are repeatable, and minibatches of 100 give a standard error per batch
    again = kl_decomposition(vae, mu, sigma, seed=0, batch=100)
    assert again == kl_decomposition(vae, mu, sigma, seed=0, batch=100)
    assert again["decomposition_batch"] == 100 and again["total_correlation_se"] > 0


def test_absent_for_a_model_without_one_diagonal_gaussian_latent(tmp_path):
    """A full-covariance guide and a two-layer hierarchy: no MI/TC/DW keys, no error."""
    data = load_dataset("digits", binarize="dynamic", train_size=64, test_size=20)
    full = train(VAEConfig(latent_dim=2, hidden=(8,), posterior={"name": "full"}), data,
                 epochs=1, batch_size=32, progress=False)
    hvae = train(HVAEConfig(stochastic=(3, 2), hidden=((8,), (8,))), data, epochs=1,
                 batch_size=32, progress=False)
    for run in (full, hvae):
        result = evaluate_run(run, data, nll_samples=25, progress=False)
        assert not any(k in result for k in TERMS), sorted(result)


def _config(kl: KLConfig) -> RunConfig:
    return RunConfig(model=VAEConfig(latent_dim=5, hidden=(64,), likelihood="bernoulli", kl=kl),
                     data=DataConfig(name="dsprites-small", image_size=(16,), train_size=1024,
                                     test_size=200),
                     train=TrainConfig(epochs=1, batch_size=64, progress=False))


@pytest.mark.parametrize("kl", [KLConfig(decomposition="tc", tc_beta=6.0),
                                KLConfig(decomposition="dip-ii")], ids=["beta-tcvae", "dip-vae-ii"])
def test_trains_on_dsprites_and_evaluate_writes_the_disentanglement_scores(kl, tmp_path, capsys):
    cfg = _config(kl)
    data = load_dataset(cfg.data)
    out = tmp_path / kl.decomposition
    run = train(cfg, data, out=str(out))
    assert math.isfinite(run.metrics["test_elbo"])
    dci_model = "forest" if kl.decomposition == "tc" else "gbt"
    assert main(["evaluate", str(out), "--nll-samples", "25", "--quiet", "--disentanglement",
                 "--disentanglement-points", "120", "--dci-model", dci_model]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "eval.json").read_text())
    assert result["disentanglement_points"] == 120 and result["dci_model"] == dci_model
    for key in SCORES:
        assert 0.0 <= result[key] <= 1.0 + 1e-9, (key, result[key])
    for key in TERMS:
        assert math.isfinite(result[key])
    for label in ("MIG", "FactorVAE score", "DCI disentanglement", "SAP", "BetaVAE score",
                  "total correlation", "index-code MI (mss)", "dimension-wise KL"):
        assert label in printed, label


def test_an_unknown_dci_classifier_is_refused_before_anything_runs(digits_run):
    from pyrovae.runtime.errors import ConfigError

    run, data, _ = digits_run
    with pytest.raises(ConfigError, match="dci_model = 'svm': choose one of gbt, forest"):
        evaluate_run(run, data, nll_samples=25, disentanglement=100, dci_model="svm")


def test_disentanglement_needs_data_with_factors(digits_run, capsys):
    _, _, out = digits_run
    assert main(["evaluate", str(out), "--nll-samples", "25", "--quiet",
                 "--disentanglement"]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "needs a data set with known factors (dsprites, dsprites-small)" in line
    assert not (out / "eval.json").exists()
