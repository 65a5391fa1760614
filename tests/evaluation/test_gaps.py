"""The approximation and amortization gaps (evaluation/gaps.py) against closed forms on
linear-Gaussian models with one and two latent layers, on a trained VAE, and
``pyrovae evaluate --gaps`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from tests.support.linear_gaussian import OneLayer, TwoLayer, _params, closed_form_marginal
from pyrovae import HVAE, HVAEConfig, VAEConfig, load, load_dataset, train
from pyrovae.cli import main
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.gaps import GapOptions, inference_gaps
from pyrovae.evaluation.likelihood import log_likelihood
from pyrovae.runtime.files import read_csv
from pyrovae.reports.numbers import format_estimate
from tests.support.one_line import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")


def gaps(m, x, log_px, **options):
    return inference_gaps(m, x, log_px.numpy(), options=GapOptions(**options), seed=0)


def test_one_layer_gaussian_family_closes_the_gap_and_the_rest_is_the_kl():
    """The local family holds p(z|x): approximation gap ~ 0, and the amortization gap is
    KL(q(z|x) || p(z|x)) of the shifted, widened guide."""
    m = OneLayer(latent=2, shift=0.5, inflate=1.5)
    torch.manual_seed(0)
    x = m.marginal().sample((12,))
    exact = m.marginal().log_prob(x)
    r = gaps(m, x, exact, family="gaussian", steps=300, lr=0.02)
    pp, s = r["per_point"], r["summary"]
    assert abs(s["approximation_gap"]) < 0.02
    assert np.all(pp["approximation_gap"] > -4 * pp["approximation_gap_se"] - 0.01)
    with torch.no_grad():
        guide = MultivariateNormal(x @ m.C.T + m.d, scale_tril=m.T.tril())
        prec = torch.eye(2, dtype=x.dtype) + m.W.T @ torch.diag(m.s**-2) @ m.W
        cov = torch.linalg.inv(prec)
        post = MultivariateNormal((x - m.b) @ (cov @ m.W.T @ torch.diag(m.s**-2)).T, cov)
        kl = kl_divergence(guide, post).numpy()
    assert np.all(np.abs(pp["amortization_gap"] - kl) < 4 * pp["amortization_gap_se"] + 0.02)
    assert np.all(np.abs(pp["amortized_elbo"] - (exact.numpy() - kl))
                  < 4 * pp["amortized_elbo_se"] + 0.02)


def test_two_layer_exact_family_closes_the_gap_and_the_diagonal_does_not():
    p = _params(0)
    m = TwoLayer(p, shift=0.3, inflate=1.3)
    torch.manual_seed(1)
    x = closed_form_marginal(p).sample((10,))
    exact = closed_form_marginal(p).log_prob(x)
    full = gaps(m, x, exact, family="gaussian", steps=400, lr=0.02)["summary"]
    diag = gaps(m, x, exact, family="diagonal", steps=300, lr=0.02)["summary"]
    assert abs(full["approximation_gap"]) < 0.03
    assert diag["approximation_gap"] > 0.3 > 10 * diag["approximation_gap_se"]
    with torch.no_grad():
        kl = kl_divergence(m.guide_joint(x), m.post.mvn(x)).mean()
    assert full["amortized_elbo"] == pytest.approx(float(exact.mean() - kl), abs=0.05)
    total = full["approximation_gap"] + full["amortization_gap"]
    assert total == pytest.approx(float(kl), abs=0.05)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gaps") / "run"
    data = load_dataset("digits", binarize="dynamic")
    train(VAEConfig(latent_dim=4, hidden=(32,)), data, out=out, epochs=2, progress=False)
    return out


def test_vae_gaps_are_non_negative_and_the_guide_family_starts_at_the_amortized_elbo(
        digits_run):
    vae = load(digits_run).vae
    x = load_dataset("digits", binarize="dynamic").test_data()[:16]
    log_px = log_likelihood(vae, x, 2000)
    start = gaps(vae, x, log_px, steps=1, lr=1e-9)["per_point"]
    assert start["local_elbo"] == pytest.approx(
        start["amortized_elbo"], abs=float(4 * np.max(start["amortization_gap_se"])))
    r = gaps(vae, x, log_px, steps=200)
    s = r["summary"]
    for key in ("approximation_gap", "amortization_gap"):
        assert s[key] > -2 * s[key + "_se"], (key, s)
    assert s["amortization_gap"] > 0
    assert s["log_px"] > s["local_elbo"] - 0.05 > s["amortized_elbo"] - 0.1


def test_families_without_an_encoder_to_start_from_are_refused_in_one_line():
    m = OneLayer()
    x = torch.zeros(3, 5, dtype=torch.float64)
    with pytest.raises(ConfigError, match="has no 'encoder' network") as err:
        gaps(m, x, torch.zeros(3))
    assert "\n" not in str(err.value)
    hvae = HVAE(HVAEConfig(stochastic=(4, 2), hidden=((8,), (8,))), (64,))
    with pytest.raises(ConfigError, match="gap_family = 'diagonal' or 'gaussian'"):
        gaps(hvae, torch.zeros(3, 64), torch.zeros(3))
    r = gaps(hvae, torch.zeros(3, 64), torch.zeros(3), family="diagonal", steps=2,
             eval_samples=4)
    assert r["per_point"]["local_elbo"].shape == (3,)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "gap_steps = 0 is out of range"),
    ({"family": "flow"}, "gap_family = 'flow' is not one of: guide, diagonal, gaussian"),
    ({"lr": -1.0}, "gap_lr"),
    ({"eval_samples": 1}, "gap_eval_samples"),
])
def test_bad_gap_settings_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GapOptions(**kwargs)


def test_evaluate_cli_writes_the_gaps(digits_run, capsys):
    assert main(["evaluate", str(digits_run), "--points", "10", "--nll-samples", "300",
                 "--gaps", "--gap-steps", "50", "--gap-eval-samples", "200", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "amortization gap" in out
    result = json.loads((digits_run / "eval.json").read_text())
    # issue 27: each gap is printed with its standard error to 2 significant digits (a small
    # one showed as "+- 0.00"), the gap to the same decimal place
    for label in ("approximation gap", "amortization gap"):
        key = label.replace(" ", "_")
        line = next(line for line in out.splitlines() if line.startswith(label))
        assert line.split(maxsplit=2)[2] == (
            f"{format_estimate(result[key], result[key + '_se'])} nats"), line
        se_text = line.split(" +- ")[1].split()[0]
        assert len(se_text.replace(".", "").lstrip("0")) >= 2, line
    for key in ("gap_log_px", "gap_amortized_elbo", "gap_local_elbo", "approximation_gap",
                "amortization_gap", "approximation_gap_se", "gaps_seconds"):
        assert key in result, key
    assert result["gaps"]["log_px_estimator"] == "is" and result["gaps"]["steps"] == 50
    assert result["gap_log_px"] == pytest.approx(-result["test_nll"], rel=1e-9)
    rows = read_csv(digits_run / "eval_points.csv")
    assert np.mean([r["amortization_gap"] for r in rows]) == pytest.approx(
        result["amortization_gap"], rel=1e-6)
    assert (digits_run / "gaps.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, message", [
    (["--gap-steps", "10"], "--gap-steps has no effect without --gaps"),
    (["--gaps", "--gap-family", "flow"], "--gap-family = 'flow' is not one of"),
    (["--gaps", "--gap-lr", "0"], "--gap-lr = 0.0 is out of range"),
])
def test_evaluate_cli_refuses_bad_gap_settings_in_one_line(digits_run, capsys, args, message):
    assert main(["evaluate", str(digits_run), "--quiet", *args]) == 2
    assert message in assert_one_line_error(capsys.readouterr().err)
