"""AIS log-likelihoods and BDMC (evaluation/ais.py, hmc.py, bdmc.py, target.py) against closed
forms on linear-Gaussian models with one and two latent layers, on a two-layer HVAE against
importance sampling, and ``pyrovae evaluate --ais-steps/--bdmc`` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from tests.support.linear_gaussian import OneLayer, TwoLayer, _params, closed_form_marginal
from pyrovae import HVAE, HVAEConfig, VAEConfig, load_dataset, train
from pyrovae.cli import main
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation import ais as ais_module
from pyrovae.evaluation.ais import AISOptions, ais_log_likelihood, schedule
from pyrovae.evaluation.bdmc import bdmc, simulate
from pyrovae.evaluation.likelihood import log_likelihood
from pyrovae.evaluation.target import LatentSpace
from pyrovae.runtime.files import read_csv
from tests.support.one_line import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")


def one_layer_data(n=16, seed=0):
    m = OneLayer(latent=2, shift=0.5, inflate=1.5)
    torch.manual_seed(seed)
    x = m.marginal().sample((n,))
    return m, x, m.marginal().log_prob(x)


def two_layer_data(n=16, seed=0, **guide):
    p = _params(0)
    m = TwoLayer(p, **guide)
    torch.manual_seed(seed)
    x = closed_form_marginal(p).sample((n,))
    return m, x, closed_form_marginal(p).log_prob(x)


def mc_se(r) -> float:
    """Monte Carlo standard error of the mean over points of AIS's log p(x)."""
    return float(torch.sqrt((r["se"] ** 2).sum()) / len(r["se"]))


# ---- the pieces ----------------------------------------------------------------------------

def test_schedules_run_from_zero_to_one():
    for kind in ("sigmoid", "linear"):
        b = schedule(50, kind)
        assert len(b) == 51 and b[0] == 0 and b[-1] == pytest.approx(1)
        assert all(x < y for x, y in zip(b, b[1:]))


def test_latent_space_round_trips_several_sites_and_constrained_supports():
    m, x, _ = two_layer_data(4)
    space = LatentSpace(m, x)
    assert space.names == ["z2", "z1"] and space.size == 5
    u = space.prior_draws(3)
    values, ladj = space.unflatten(u)
    assert values["z1"].shape == (3, 4, 3) and torch.equal(space.flatten(values), u)
    assert torch.all(ladj == 0)

    class Positive(torch.nn.Module):  # a Gamma latent: AIS moves its log
        def model(self, x, n_data=None):
            with pyro.plate("data", x.shape[0]):
                s = pyro.sample("s", dist.Gamma(2.0, 1.0))
                pyro.sample("x", dist.Normal(0.0, s), obs=x)

    x1 = torch.linspace(-2, 2, 5)
    space = LatentSpace(Positive(), x1)
    u = space.prior_draws(2)
    values, ladj = space.unflatten(u)
    assert torch.allclose(values["s"].log(), u[..., 0]) and torch.allclose(ladj, u[..., 0])


def test_exact_guide_gives_exact_log_px_for_every_chain():
    """f_0 = p(z|x): every increment is (beta_t - beta_t-1) log p(x), so w = p(x) exactly."""
    m, x, exact = two_layer_data(6)
    r = ais_log_likelihood(m, x, AISOptions(steps=5, chains=3, leapfrog=2))
    assert torch.allclose(r["log_w"], exact.expand(3, -1), atol=1e-8)


@pytest.mark.parametrize("make", [one_layer_data, two_layer_data], ids=["one", "two"])
@pytest.mark.parametrize("init", ["prior", "guide"])
def test_ais_recovers_the_closed_form_and_stays_below_it(make, init):
    kw = {} if make is one_layer_data else {"shift": 0.3, "inflate": 1.3}
    m, x, exact = make(12, **kw)
    steps = 800 if (make, init) == (two_layer_data, "prior") else 200  # the longest path
    r = ais_log_likelihood(m, x, AISOptions(steps=steps, chains=12, init=init, leapfrog=4),
                           seed=1)
    err, se = float((r["log_px"] - exact).mean()), mc_se(r)
    assert abs(err) < 4 * se + 0.02, (err, se)            # recovers log p(x)
    assert err <= 2 * se, (err, se)                        # a stochastic lower bound
    assert 0.4 < float(r["accept"].mean()) < 0.9           # adapted towards 0.65


def test_ais_error_shrinks_as_t_grows():
    m, x, exact = two_layer_data(12)
    errors = [float((ais_log_likelihood(m, x, AISOptions(steps=t, chains=8, init="prior",
                                                         leapfrog=5))["log_px"] - exact)
                    .abs().mean()) for t in (5, 50, 400)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < min(0.3, errors[0] / 10)


def test_bdmc_sandwiches_the_exact_log_px_and_tightens_with_t():
    m = OneLayer(latent=2, shift=0.5, inflate=1.5)
    template = torch.zeros(1, 5, dtype=torch.float64)
    x, u = simulate(m, template, 12, seed=3)
    assert x.shape == (12, 5) and u.shape == (12, 2)
    gaps = []
    for steps in (10, 200):
        r = bdmc(m, template, 12, AISOptions(steps=steps, chains=8, init="prior", leapfrog=5),
                 seed=3)
        exact = float(m.marginal().log_prob(r["x"]).mean())
        assert torch.equal(r["x"], x)
        se = r["bdmc_gap_se"]
        assert r["bdmc_lower"] <= exact + 2 * se and r["bdmc_upper"] >= exact - 2 * se
        gaps.append(r["bdmc_gap"])
    assert gaps[0] > gaps[1] > -0.05, gaps


def test_ais_on_a_two_layer_hvae_agrees_with_importance_sampling():
    torch.manual_seed(0)
    vae = HVAE(HVAEConfig(stochastic=(4, 2), hidden=((16,), (8,)), likelihood="bernoulli"),
               (64,))
    x = load_dataset("digits", binarize="dynamic").test_data()[:8]
    r = ais_log_likelihood(vae, x, AISOptions(steps=100, chains=8, leapfrog=4))
    is_ = log_likelihood(vae, x, 2000)
    assert float((r["log_px"] - is_).mean()) == pytest.approx(0, abs=4 * mc_se(r) + 0.05)


def test_chains_are_chunked_to_the_memory_budget(monkeypatch):
    m, x, exact = one_layer_data(5)
    monkeypatch.setattr(ais_module.memory, "inference_bytes", lambda module, points: 2**30)
    assert ais_module.chain_chunk(m, 5, 4, memory_mb=1) == 1
    r = ais_log_likelihood(m, x, AISOptions(steps=10, chains=4, init="prior", leapfrog=2),
                           batch_size=2, memory_mb=1)
    assert r["log_w"].shape == (4, 5) and torch.isfinite(r["log_px"]).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "ais_steps = 0 is out of range"),
    ({"chains": 0}, "ais_chains"),
    ({"init": "posterior"}, "ais_init = 'posterior' is not one of: guide, prior"),
    ({"schedule": "cosine"}, "ais_schedule"),
    ({"step_size": 0.0}, "ais_step_size"),
    ({"target_accept": 1.0}, "ais_target_accept"),
])
def test_bad_ais_settings_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        AISOptions(**kwargs)
    assert "\n" not in str(err.value)


def test_discrete_latents_are_refused_in_one_line():
    class Coin(torch.nn.Module):
        def model(self, x, n_data=None):
            with pyro.plate("data", x.shape[0]):
                c = pyro.sample("c", dist.Bernoulli(0.5))
                pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    with pytest.raises(ConfigError, match="latent site 'c' is discrete"):
        ais_log_likelihood(Coin(), torch.zeros(3), AISOptions(steps=2, chains=2))


# ---- command line ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ais") / "run"
    data = load_dataset("digits", binarize="dynamic")
    train(VAEConfig(latent_dim=4, hidden=(32,)), data, out=out, epochs=2, progress=False)
    return out


def test_evaluate_cli_writes_ais_and_bdmc(digits_run, capsys):
    assert main(["evaluate", str(digits_run), "--points", "12", "--nll-samples", "200",
                 "--ais-steps", "40", "--ais-chains", "4", "--ais-leapfrog", "3",
                 "--ais-init", "prior", "--bdmc", "6", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "NLL (AIS)" in table and "BDMC gap" in table
    result = json.loads((digits_run / "eval.json").read_text())
    for key in ("test_ais_nll", "test_ais_nll_se", "ais_mc_se", "ais_minus_is", "ais_accept",
                "bdmc_lower", "bdmc_upper", "bdmc_gap", "ais_seconds", "bdmc_seconds"):
        assert key in result, key
    assert result["ais"]["init"] == "prior" and result["bdmc_points"] == 6
    assert math.isfinite(result["test_ais_nll"])
    assert result["bdmc_upper"] >= result["bdmc_lower"] - 1
    rows = read_csv(digits_run / "eval_points.csv")
    assert len(rows) == 12 and -np.mean([r["ais_log_px"] for r in rows]) == pytest.approx(
        result["test_ais_nll"], rel=1e-6)
    assert (digits_run / "ais.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, message", [
    (["--ais-steps", "0"], "--ais-steps = 0 is out of range"),
    (["--ais-chains", "4"], "--ais-chains has no effect without --ais-steps"),
    (["--bdmc", "5"], "--bdmc runs AIS forward and backward"),
    (["--ais-steps", "5", "--ais-init", "posterior"], "--ais-init = 'posterior' is not one of"),
    (["--ais-steps", "5", "--ais-step-size", "nan"], "--ais-step-size"),
    (["--ais-steps", "5", "--ais-target-accept", "2"], "--ais-target-accept = 2.0 is out"),
])
def test_evaluate_cli_refuses_bad_ais_settings_in_one_line(digits_run, capsys, args, message):
    assert main(["evaluate", str(digits_run), "--quiet", *args]) == 2
    assert message in assert_one_line_error(capsys.readouterr().err)
