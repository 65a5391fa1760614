"""benchmarks/parity: the plain-torch reference of the Burda one-layer VAE/IWAE is independent
of pyrovae (it imports only the data), its bounds and importance-sampling evaluator are right
where the answer is known, and ``python -m benchmarks.parity.run`` works end to end, its two
evaluators agreeing on the same weights."""

import ast
import csv
import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks.parity import reference as ref
from benchmarks.parity import run as parity

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE = Path(ref.__file__)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` / ``from ... import`` statement of the file names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_reference_imports_only_the_data_from_pyrovae():
    mods = imported_modules(REFERENCE)
    from_pyrovae = {m for m in mods if m == "pyrovae" or m.startswith("pyrovae.")}
    assert from_pyrovae == {"pyrovae.data"}
    assert not {m for m in mods if m == "pyro" or m.startswith("pyro.")}
    assert not {m for m in mods if m.startswith("benchmarks")}  # (which import pyrovae)


def test_iwae_with_one_draw_is_the_elbo_and_bounds_it_above_with_more():
    torch.manual_seed(0)
    model = ref.BurdaVAE(12, ((8, 8),), (3,))
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    gen = torch.Generator().manual_seed(1)
    one = model.log_weights(x, 1, gen)
    assert torch.allclose(ref.iwae(one), ref.elbo(one))
    many = model.log_weights(x, 50, torch.Generator().manual_seed(2))
    assert (ref.iwae(many) > ref.elbo(many)).all()  # Jensen, strict for unequal weights
    # the one-draw ELBO with the closed-form KL has the Monte Carlo ELBO's expectation
    big = x[:1].expand(4000, 12)
    with torch.no_grad():
        analytic = model.elbo_terms(big, torch.Generator().manual_seed(3))[0]
        mc = ref.elbo(model.log_weights(big, 1, torch.Generator().manual_seed(4)))
    se = math.hypot(analytic.std(), mc.std()) / math.sqrt(4000)
    assert abs(float(analytic.mean() - mc.mean())) < 4 * se


def test_importance_sampling_is_exact_when_q_is_the_prior_and_x_ignores_z():
    """Decoder logits = b whatever z, q(z|x) = N(0, I): log w = log p(x) for every draw, so
    log p(x) = sum_d x_d b_d - softplus(b_d) exactly."""
    torch.manual_seed(0)
    model = ref.BurdaVAE(10, ((6,),), (4,))
    with torch.no_grad():
        model.decoders[0][-1].weight.zero_()
        b = model.decoders[0][-1].bias.normal_()
        _standard_normal_head(model.encoders[0][-1], 4)
    x = torch.bernoulli(torch.full((7, 10), 0.5))
    exact = (x * b - torch.nn.functional.softplus(b)).sum(-1).double()
    assert torch.allclose(ref.log_px(model, x, 300, rows=500), exact, atol=1e-4)


def _standard_normal_head(linear, size):
    """Make a Gaussian head output loc 0 and scale softplus(r) + 1e-4 = 1 whatever its input."""
    linear.weight.zero_()
    linear.bias[:size] = 0.0
    linear.bias[size:] = math.log(math.expm1(1.0 - ref.MIN_STD))


def test_two_layer_importance_sampling_is_exact_when_every_conditional_is_the_prior():
    """Two layers: q(z1|x) = p(z1|z2) = N(0, I), q(z2|z1) = p(z2) and logits b whatever z1:
    every log w is log p(x) = sum_d x_d b_d - softplus(b_d), for any beta."""
    torch.manual_seed(0)
    model = ref.BurdaVAE(10, ((6,), (5,)), (4, 3))
    with torch.no_grad():
        model.decoders[0][-1].weight.zero_()
        b = model.decoders[0][-1].bias.normal_()
        _standard_normal_head(model.encoders[0][-1], 4)   # q(z1 | x)
        _standard_normal_head(model.encoders[1][-1], 3)   # q(z2 | z1)
        _standard_normal_head(model.decoders[1][-1], 4)   # p(z1 | z2)
    x = torch.bernoulli(torch.full((7, 10), 0.5))
    exact = (x * b - torch.nn.functional.softplus(b)).sum(-1).double()
    assert torch.allclose(ref.log_px(model, x, 300, rows=500), exact, atol=1e-4)
    with torch.no_grad():
        for beta in (1.0, 0.3):
            lw = model.log_weights(x, 20, torch.Generator().manual_seed(1), beta)
            assert torch.allclose(lw, exact.float().expand(20, 7), atol=1e-4)


def test_two_layer_terms_and_warm_up():
    """log w = log p(x|z1) + beta (log p(z) - log q(z|x)); the ELBO's one-draw terms split
    the KL by layer; the warm-up is linear in steps, beta_0 = 0 taken as 1e-20."""
    torch.manual_seed(0)
    model = ref.BurdaVAE(12, ((8,), (6,)), (4, 3))
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    with torch.no_grad():
        rec, log_p, log_q = model.terms(x, 6, torch.Generator().manual_seed(2))
        lw = model.log_weights(x, 6, torch.Generator().manual_seed(2), 0.25)
        assert [t.shape for t in (rec, *log_p, *log_q)] == [(6, 5)] * 5
        assert torch.allclose(lw, rec + 0.25 * (sum(log_p) - sum(log_q)))
        elbo, rec1, kl1, kl2 = model.elbo_terms(x, torch.Generator().manual_seed(3))
        assert torch.allclose(elbo, rec1 - kl1 - kl2)
    s = ref.Settings(hidden=((8,), (6,)), stochastic=(4, 3), warmup=100)
    assert (s.beta(0), s.beta(50), s.beta(100), s.beta(10_000)) == (1e-20, 0.5, 1.0, 1.0)
    assert ref.Settings().beta(0) == 1.0
    with pytest.raises(ValueError, match="one or two stochastic layers"):
        ref.Settings(hidden=((8,),), stochastic=(4, 3))


def test_cosine_schedule_ends_at_the_floor():
    assert ref.cosine_lr(1e-3, 1e-4, 0, 100) == pytest.approx(1e-3)
    assert ref.cosine_lr(1e-3, 1e-4, 50, 100) == pytest.approx(5.5e-4)
    assert ref.cosine_lr(1e-3, 1e-4, 100, 100) == pytest.approx(1e-4)


def test_settings_follow_the_recipe_and_refuse_what_the_reference_lacks():
    s = parity.reference_settings(parity.recipe_config("burda-iwae5-1", 3, 0))
    assert (s.bound, s.k, s.batch_size, s.lr, s.lr_min, s.schedule, s.ema, s.hidden,
            s.stochastic, s.warmup) == ("iwae", 5, 32, 1e-3, 1e-4, "cosine", 0.9995,
                                        ((200, 200),), (50,), 0)
    two = parity.reference_settings(parity.recipe_config("burda-iwae5-2", 3, 0))
    assert (two.stochastic, two.hidden, two.warmup, two.k) == (
        (100, 50), ((200, 200), (100, 100)), 18_750, 5)  # 10 epochs of 1875 steps
    with pytest.raises(SystemExit, match="stochastic layers = 3"):
        parity.reference_settings(parity.recipe_config(
            "burda-iwae5-2", 3, 0, ["model.stochastic=[100, 50, 20]",
                                    "model.hidden=[[200, 200], [100, 100], [50]]"]))
    with pytest.raises(SystemExit, match="model.init"):
        parity.reference_settings(parity.recipe_config("burda-vae-1", 3, 0,
                                                       ["model.init=\"torch\""]))
    with pytest.raises(SystemExit, match="model.kl.schedule = 'cyclical'"):
        parity.reference_settings(parity.recipe_config("burda-iwae5-2", 3, 0,
                                                       ["model.kl.schedule=\"cyclical\""]))
    with pytest.raises(SystemExit, match=r"model.kl_free_bits = \[0(.0)?, 0.1\]: the "
                                         "reference implements only none"):
        parity.reference_settings(parity.recipe_config(
            "burda-vae-2", 3, 0, ["model.kl_free_bits=[0, 0.1]", "model.elbo=\"meanfield\""]))


def test_run_end_to_end_on_digits(tmp_path):
    out = tmp_path / "parity"
    text = parity.main(["--recipe", "burda-iwae5-1", "--epochs", "1", "--seeds", "2",
                        "--points", "60", "--nll-samples", "200",
                        "--set", "data.name=\"digits\"", "--out", str(out)])
    for name in ("results.csv", "results.md", "curves.csv", "curves.png"):
        assert (out / name).is_file()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 2 * 2  # impl x seed x evaluator
    assert "pyrovae − reference" in text
    # the two evaluators on the same weights agree within the IS noise
    for cell in (out / "cells").glob("*.json"):
        nll = json.loads(cell.read_text())["nll"]
        assert abs(nll["pyrovae"]["nll"] - nll["reference"]["nll"]) < 0.5
    # a rerun with the same settings reads the cells instead of training again
    mtime = {p: p.stat().st_mtime for p in (out / "cells").glob("*.json")}
    parity.main(["--recipe", "burda-iwae5-1", "--epochs", "1", "--seeds", "2", "--points",
                 "60", "--nll-samples", "200", "--set", "data.name=\"digits\"", "--out",
                 str(out)])
    assert {p: p.stat().st_mtime for p in (out / "cells").glob("*.json")} == mtime


def test_two_layer_run_end_to_end_on_digits(tmp_path):
    """burda-iwae5-2 on digits: both sides train with the warm-up, the weights move between
    the two implementations (both evaluators agree on the same weights: a wrong mapping of
    any of the four networks would not), and each layer's KL and active units are reported."""
    out = tmp_path / "parity2"
    text = parity.main(["--recipe", "burda-iwae5-2", "--epochs", "2", "--seeds", "1",
                        "--points", "60", "--nll-samples", "200", "--set",
                        "data.name=\"digits\"", "--set", "model.kl.warmup=20", "--out", str(out)])
    assert "active units per layer" in text
    for cell in (out / "cells").glob("*.json"):
        saved = json.loads(cell.read_text())
        nll = saved["nll"]
        assert abs(nll["pyrovae"]["nll"] - nll["reference"]["nll"]) < 0.5
        assert set(nll["pyrovae"]["active_units"]) == {"z1", "z2"}
        assert {"test_kl_z1", "test_kl_z2"} <= set(saved["history"][-1])
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert {"test_kl_z1", "test_kl_z2"} <= set(rows[0]) and len(rows) == 2 * 2


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_two_layer_iwae_loss_and_gradients_equal_the_reference_at_the_same_draws(beta):
    """The same weights in pyrovae's two-layer HVAE and in the reference, the same standard
    normal draws (both take them from a generator seeded alike, bottom layer first): pyrovae's
    training objective for the IWAE(3) recipe with the warm-up's beta and the reference's
    -N mean IWAE agree in value and in every parameter's gradient, to float rounding. So the
    two trainings differ only in their random draws (the seeds of the parity runs)."""
    from pyrovae import HVAE
    from pyrovae.objectives import objective_for
    from pyrovae.runtime.interface import max_plate_nesting
    config = parity.recipe_config("burda-iwae5-2", 1, 0, [
        "model.num_particles=3", "model.stochastic=[6, 4]", "model.hidden=[[10, 8], [7]]"])
    settings = parity.reference_settings(config)
    torch.manual_seed(0)
    hvae = HVAE(config.model, (20,))
    with torch.no_grad():  # biases away from 0, so that a mixed-up bias would show
        for p in hvae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    module = parity.to_reference(hvae, settings, 20)
    x = torch.bernoulli(torch.full((9, 20), 0.3), generator=torch.Generator().manual_seed(1))
    n = 900
    elbo = objective_for(config.model, max_plate_nesting(hvae))
    torch.manual_seed(7)
    ours = elbo.differentiable_loss(hvae.model, hvae.guide, x, torch.tensor(beta), n_data=n)
    ours.backward()
    theirs = -n * ref.iwae(module.log_weights(x, 3, torch.Generator().manual_seed(7), beta)).mean()
    theirs.backward()
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-5)
    pairs = list(zip(hvae.parameters(), module.parameters()))
    assert len(pairs) == 2 * (3 + 2) * 2  # encoder and decoder of each layer (3 and 2
    #                                        linears), weight and bias each
    for a, b in pairs:
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-4 * float(b.grad.abs().max()))
