"""The hierarchical VAE (``model.kind = "hvae"``, pyrovae/hierarchical, docs/hierarchical.md):
the known answer of a linear-Gaussian two-layer hierarchy, the per-layer KL terms of every
objective (closed form only where it is the ELBO's term), per-layer KL weights and free bits,
per-layer diagnostics, config refusals in one line, and the generic commands on digits.

Known answer: z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, S1), x | z1 ~ N(B z1 + b, sigma^2 I), with
A and B chosen so that p(z1 | x) and p(z2 | z1) have diagonal covariances. Then the HVAE's own
networks, linear (``hidden = [[], []]``) with constant scales, can hold the exact posterior
q(z1|x) q(z2|z1) = p(z1|x) p(z2|z1, x) (z2 is independent of x given z1), every importance
weight is p(x), and the IS log-likelihood is the closed-form log N(x; B a + b, B (A A^T + S1)
B^T + sigma^2 I) (tests/support/linear_gaussian.py) to float precision.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pyro
import pytest
import torch
from torch.distributions import Normal, kl_divergence

import pyrovae
from pyrovae import HVAE, HVAEConfig, load, load_config, load_dataset, train
from pyrovae.cli import main
from pyrovae.config import DataConfig, RunConfig, TrainConfig
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation import evaluate_elbo, layer_diagnostics, log_likelihood, log_weights
from pyrovae.objectives import make_elbo, objective_for
from pyrovae.runs import load_checkpoint
from pyrovae.training.trainer import Trainer
from pyrovae.training.guards import TrainingInterrupted

from tests.support.linear_gaussian import F64, Posterior, closed_form_marginal

pytestmark = [pytest.mark.usefixtures("one_thread"),
              # Pyro's order check: the model draws z2 before z1, the guide z1 before z2; the
              # objectives handle it (ConditionalNormal), see pyrovae/kinds/hvae/model.py
              pytest.mark.filterwarnings("ignore:Failed to verify mean field restriction")]

ROOT = Path(__file__).resolve().parents[2]
DIGITS_HVAE = str(ROOT / "configs" / "digits-hvae.toml")
D, L1, L2, SIGMA = 5, 3, 2, 0.6


# ---- the known answer -----------------------------------------------------------------------

def _softplus_inv(v: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.expm1(v))


def diagonal_hierarchy(seed: int = 0) -> dict:
    """Parameters (A, a, s1, B, b, s2) of the two-layer linear-Gaussian model whose posterior
    conditionals p(z1|x) and p(z2|z1) have diagonal covariances, with those conditionals:
    p(z1|x) = N(W1 x + c1, diag v1), p(z2|z1) = N(W2 z1 + c2, diag v2)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    u = lambda n, lo, hi: lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)  # noqa: E731
    s1, a, b = u(L1, 0.5, 0.9), 0.5 * r(L1), 0.5 * r(D)
    q, _ = torch.linalg.qr(r(L1, L2))                        # orthonormal columns
    c = u(L2, 0.8, 1.6)
    A = torch.diag(s1) @ q @ torch.diag(c)                   # A^T S1^-2 A = diag(c^2)
    c0 = torch.linalg.inv(A @ A.T + torch.diag(s1**2))      # precision of p(z1)
    lam = torch.linalg.eigvalsh(c0).max() + u(L1, 0.5, 2.0)  # posterior precision of z1, diag
    chol = torch.linalg.cholesky(torch.diag(lam) - c0)
    U, _ = torch.linalg.qr(r(D, L1))
    s2 = torch.full((D,), SIGMA, dtype=F64)
    B = torch.diag(s2) @ U @ chol.T                          # B^T S2^-2 B = diag(lam) - c0
    p = {"A": A, "a": a, "s1": s1, "B": B, "b": b, "s2": s2}
    W1 = torch.diag(1 / lam) @ B.T @ torch.diag(s2**-2)
    c1 = torch.diag(1 / lam) @ (c0 @ a - B.T @ torch.diag(s2**-2) @ b)
    v2 = 1 / (1 + c**2)
    W2 = torch.diag(v2) @ A.T @ torch.diag(s1**-2)
    return {**p, "W1": W1, "c1": c1, "v1": 1 / lam, "W2": W2, "c2": -W2 @ a, "v2": v2}


def _set_gaussian(linear, W, c, std):
    """A linear layer [in -> 2L] that outputs loc = W h + c and softplus(raw) + 1e-4 = std."""
    L = W.shape[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:L] = W
        linear.bias[:L] = c
        linear.bias[L:] = _softplus_inv(std - 1e-4)


def exact_hvae(p: dict, **config) -> HVAE:
    """An HVAE with linear networks set to the model p and the exact posterior conditionals."""
    cfg = HVAEConfig(stochastic=(L1, L2), hidden=((), ()), likelihood="gaussian", sigma=SIGMA,
                     **config)
    m = HVAE(cfg, (D,)).double()
    _set_gaussian(m.encoder[0][0], p["W1"], p["c1"], p["v1"].sqrt())          # q(z1|x)
    _set_gaussian(m.encoder[1][0], p["W2"], p["c2"], p["v2"].sqrt())          # q(z2|z1)
    _set_gaussian(m.decoder[1][0], p["A"], p["a"], p["s1"])                   # p(z1|z2)
    with torch.no_grad():                                                     # p(x|z1) mean
        m.decoder[0][0].weight.copy_(p["B"])
        m.decoder[0][0].bias.copy_(p["b"])
    return m


@pytest.fixture(scope="module")
def lg():
    p = diagonal_hierarchy(0)
    exact = closed_form_marginal(p)
    gen = torch.Generator().manual_seed(1)
    x = exact.loc + torch.randn(400, D, generator=gen, dtype=F64) @ exact.scale_tril.T
    return p, exact, x


def test_the_constructed_posterior_conditionals_are_the_exact_ones(lg):
    """The reference itself: Gaussian conditioning of the joint (linear_gaussian.Posterior)
    gives the diagonal p(z1|x) and p(z2|z1, x) = p(z2|z1) the HVAE is set to."""
    p, _, x = lg
    post = Posterior(p)
    mean = post.mean(x)
    torch.testing.assert_close(mean[:, L2:], x @ p["W1"].T + p["c1"])
    torch.testing.assert_close(post.P[L2:, L2:], torch.diag(p["v1"]))
    torch.testing.assert_close(post.G, p["W2"])                      # E[z2 | z1, x] slope
    torch.testing.assert_close(post.tril2 @ post.tril2.T, torch.diag(p["v2"]))
    torch.testing.assert_close(mean[:, :L2] - mean[:, L2:] @ p["W2"].T,
                               p["c2"].expand(len(x), L2))            # no x beside z1


def test_exact_conditionals_give_the_closed_form_log_likelihood(lg):
    p, exact, x = lg
    m = exact_hvae(p)
    est = log_likelihood(m, x, num_samples=50, batch_size=64, seed=0)
    assert est.dtype == F64
    torch.testing.assert_close(est, exact.log_prob(x), atol=1e-9, rtol=0)
    lw = log_weights(m, x[:40], 20)                  # every weight is p(x): no variance
    torch.testing.assert_close(lw, exact.log_prob(x[:40]).expand(20, 40), atol=1e-9, rtol=0)
    # the ELBO of the exact posterior is log p(x), draw by draw
    result = evaluate_elbo(m, x, seed=3)
    assert result["elbo"] == pytest.approx(float(exact.log_prob(x).mean()), abs=1e-9)


def test_a_wrong_conditional_is_below_the_closed_form(lg):
    """The known answer is not automatic: with q(z2|z1) shifted the bounds drop below log p(x)."""
    p, exact, x = lg
    m = exact_hvae({**p, "c2": p["c2"] + 0.5})
    log_px = float(exact.log_prob(x).mean())
    assert evaluate_elbo(m, x, seed=0)["elbo"] < log_px - 0.05
    lw = log_weights(m, x, 200)
    assert float(lw.std(0).mean()) > 0.05
    assert float(log_likelihood(m, x, 2000).mean()) == pytest.approx(log_px, abs=0.01)


def _loss_samples(elbo_name, m, x, particles=4000, seed=0, **kw):
    """-ELBO per point estimated by an objective with many vectorised particles."""
    elbo = make_elbo(elbo_name, num_particles=particles, **kw)
    pyro.set_rng_seed(seed)
    with pyro.validation_enabled(False):
        return elbo.loss(m.model, m.guide, x) / len(x)


@pytest.mark.parametrize("name", ["trace", "meanfield"])
def test_every_objective_estimates_the_elbo_with_several_layers(lg, name):
    """Under the exact posterior ELBO = log p(x). Trace_ELBO is exact draw by draw; the
    mean-field estimator (closed-form KL for z2 given z1, Monte Carlo for z1, whose prior
    depends on the later z2) is right in expectation. The closed-form KL(q(z1|x) || p(z1|z2))
    at the drawn z2, which Pyro would use for a plain Normal prior, is not the ELBO's term:
    here it is off by far more than the Monte Carlo error."""
    p, exact, x = lg
    m, x = exact_hvae(p), x[:8]
    log_px = float(exact.log_prob(x).mean())
    loss = _loss_samples(name, m, x)
    if name == "trace":
        assert loss == pytest.approx(-log_px, abs=1e-8)
        return
    assert loss == pytest.approx(-log_px, abs=0.02)
    # the term Pyro's estimator would take if p(z1|z2) were a plain Normal
    q1 = Normal(x @ p["W1"].T + p["c1"], p["v1"].sqrt())
    torch.manual_seed(0)
    z1 = q1.sample((4000,))
    z2 = z1 @ p["W2"].T + p["c2"] + p["v2"].sqrt() * torch.randn(4000, 8, L2, dtype=F64)
    wrong = kl_divergence(q1, Normal(z2 @ p["A"].T + p["a"], p["s1"])).sum(-1).mean()
    right = (q1.log_prob(z1) - Normal(z2 @ p["A"].T + p["a"], p["s1"]).log_prob(z1)).sum(-1).mean()
    assert float(wrong - right) > 0.3


def test_iwae_dreg_and_tmc_bounds_are_exact_at_the_exact_posterior(lg):
    from pyrovae.objectives import BoundObjective
    p, exact, x = lg
    m, x = exact_hvae(p), x[:16]
    want = -float(exact.log_prob(x).sum())
    for bound, gradient in (("iwae", "dreg"), ("tmc", "reparam"), ("iwae", "reparam")):
        objective = BoundObjective(bound, gradient, num_particles=4)
        pyro.set_rng_seed(0)
        loss = objective.differentiable_loss(m.model, m.guide, x)
        assert float(loss.detach()) == pytest.approx(want, abs=1e-8), bound
        loss.backward()  # the estimator's gradient exists through both layers
        assert m.encoder[1][0].weight.grad is not None
        m.zero_grad()


def test_kl_weights_scale_each_layers_kl(lg):
    """ELBO with weights (w1, w2) = log p(x|z) - w1 KL_1 - w2 KL_2, the per-layer terms of one
    draw (Trace_ELBO at the same seed)."""
    p, _, x = lg
    x = x[:10]
    plain, weighted = exact_hvae(p), exact_hvae(p, kl_weights=(0.5, 2.0))
    traces = {}
    for key, m in (("plain", plain), ("weighted", weighted)):
        pyro.set_rng_seed(4)
        guide = pyro.poutine.trace(m.guide).get_trace(x)
        model = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide)).get_trace(x)
        pyro.set_rng_seed(4)
        traces[key] = (guide, model, pyro.infer.Trace_ELBO().loss(m.model, m.guide, x))
    guide, model, loss = traces["plain"]
    guide.compute_log_prob()
    model.compute_log_prob()
    kl1 = float((guide.nodes["z1"]["log_prob_sum"] - model.nodes["z1"]["log_prob_sum"]).detach())
    kl2 = float((guide.nodes["z2"]["log_prob_sum"] - model.nodes["z2"]["log_prob_sum"]).detach())
    assert traces["weighted"][2] - loss == pytest.approx(-0.5 * kl1 + 1.0 * kl2, rel=1e-9)
    # the model-wide beta multiplies them: beta = 0.5 on (0.5, 2.0)
    pyro.set_rng_seed(4)
    beta_loss = pyro.infer.Trace_ELBO().loss(weighted.model, weighted.guide, x,
                                             torch.tensor(0.5, dtype=F64))
    assert beta_loss - loss == pytest.approx(-0.75 * kl1 + 0.0 * kl2, rel=1e-9)


def test_free_bits_per_layer_floor_each_layers_per_dimension_kl(lg):
    """kl_free_bits = (l1, l2): sum_d max(l_s, mean_b KL_sd) per layer, with z2's closed-form
    KL given z1 and z1's Monte Carlo term log q - log p per dimension."""
    p, _, x = lg
    x = x[:12]
    m = exact_hvae(p, kl_free_bits=(0.9, 0.05))
    floors = m.config.free_bits_per_site
    assert floors == {"z1": 0.9, "z2": 0.05}
    elbo = make_elbo("meanfield", free_bits=floors)
    assert type(elbo).__name__ == "FreeBitsMeanFieldELBO"
    pyro.set_rng_seed(7)
    with pyro.validation_enabled(False):
        loss = elbo.loss(m.model, m.guide, x)
    pyro.set_rng_seed(7)
    guide = pyro.poutine.trace(m.guide).get_trace(x)
    model = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide)).get_trace(x)
    q1, p1 = guide.nodes["z1"]["fn"].base_dist, model.nodes["z1"]["fn"].base_dist
    z1 = guide.nodes["z1"]["value"]
    kl1 = q1.log_prob(z1) - p1.log_prob(z1)                                   # [B, L1]
    kl2 = kl_divergence(guide.nodes["z2"]["fn"].base_dist, Normal(0.0, 1.0))  # [B, L2]
    log_px_z = model.nodes["x"]["fn"].log_prob(x).sum()
    n = len(x)
    per1, per2 = kl1.mean(0), kl2.mean(0)
    assert (per1 < 0.9).any() and (per2 > 0.05).any()  # the floors bind somewhere, not all
    hand = -log_px_z + n * per1.clamp(min=0.9).sum() + n * per2.clamp(min=0.05).sum()
    assert loss == pytest.approx(float(hand.detach()), rel=1e-9)
    # one floor for every site, as before
    single = make_elbo("meanfield", free_bits=0.9)
    assert single.free_bits == 0.9 and single.free_bits_per_site == {}
    # the config reaches the objective
    cfg = HVAEConfig(stochastic=(L1, L2), hidden=((), ()), kl_free_bits=(0.9, 0.05))
    assert objective_for(cfg).free_bits_per_site == {"z1": 0.9, "z2": 0.05}
    assert type(objective_for(HVAEConfig())).__name__ == "MeanFieldELBO"


def test_per_layer_diagnostics_of_the_exact_hierarchy(lg):
    """Activity of z1 is Var_x of the exact mean W1 x + c1; each layer's KL term matches its
    closed form: E_q KL(q(z2|z1) || N(0, I)) for z2, and the joint KL minus it for z1."""
    p, _, x = lg
    m = exact_hvae(p)
    d = layer_diagnostics(m, x, seed=0, particles=32)
    assert d["layers"] == ["z1", "z2"] and d["latent_dim"] == L1 + L2
    assert d["latent_dim_z1"] == L1 and d["latent_dim_z2"] == L2
    mu1 = x @ p["W1"].T + p["c1"]
    torch.testing.assert_close(torch.tensor(d["activity_z1"], dtype=F64), mu1.var(0),
                               atol=1e-10, rtol=0)
    mu2 = mu1 @ p["W2"].T + p["c2"]                     # E_q[z2|x], the linear network's
    act2 = torch.tensor(d["activity_z2"], dtype=F64)   # plus the draws' noise, var / 32
    noise = torch.diag(p["W2"] @ torch.diag(p["v1"]) @ p["W2"].T) / 32
    torch.testing.assert_close(act2, mu2.var(0) + noise, rtol=0.25, atol=0)
    assert d["active_units"] == d["active_units_z1"] + d["active_units_z2"]
    assert d["activity"] == d["activity_z1"] + d["activity_z2"]
    # z2: E_{z1 ~ q(z1|x)} KL(N(W2 z1 + c2, v2) || N(0, 1)) per dimension, in closed form
    m2 = mu2.pow(2) + torch.diag(p["W2"] @ torch.diag(p["v1"]) @ p["W2"].T)   # E[mean^2]
    kl2 = (0.5 * (p["v2"] + m2 - 1 - p["v2"].log())).mean(0)
    torch.testing.assert_close(torch.tensor(d["kl_per_dim_z2"], dtype=F64), kl2, rtol=0.03,
                               atol=0.01)
    # the two layers together: KL(q(z1, z2|x) || p(z1, z2)) of two Gaussians
    post = Posterior(p)
    prior_cov = torch.zeros(L1 + L2, L1 + L2, dtype=F64)     # order (z2, z1)
    prior_cov[:L2, :L2] = torch.eye(L2, dtype=F64)
    prior_cov[:L2, L2:] = p["A"].T
    prior_cov[L2:, :L2] = p["A"]
    prior_cov[L2:, L2:] = p["A"] @ p["A"].T + torch.diag(p["s1"] ** 2)
    prior_mean = torch.cat([torch.zeros(L2, dtype=F64), p["a"]])
    joint = kl_divergence(post.mvn(x), torch.distributions.MultivariateNormal(prior_mean,
                                                                              prior_cov)).mean()
    assert d["kl_z1"] + d["kl_z2"] == pytest.approx(float(joint), rel=0.02)
    assert d["kl_z2"] == pytest.approx(float(kl2.sum()), rel=0.03)
    # q(z1|x) is a Gaussian of x alone: its mutual information is reported; q(z2|x) is not one
    assert 0 < d["mutual_info_z1"] <= d["mutual_info_max"] and d["mutual_info_z2"] is None



def test_each_layers_kl_in_the_elbo_matches_its_closed_form(lg):
    """evaluate_elbo's kl_sites split the KL term by layer: they sum to ``kl``, z2's share is
    E_{z1 ~ q} KL(q(z2|z1) || N(0, I)) in closed form, z1's the joint KL minus it (one draw
    per point over 400 points: Monte Carlo tolerances)."""
    p, _, x = lg
    m = exact_hvae(p)
    out = evaluate_elbo(m, x, seed=0)
    sites = out["kl_sites"]
    assert list(sites) == ["z1", "z2"]
    assert sites["z1"] + sites["z2"] == pytest.approx(out["kl"], rel=1e-12)
    mu2 = (x @ p["W1"].T + p["c1"]) @ p["W2"].T + p["c2"]
    m2 = mu2.pow(2) + torch.diag(p["W2"] @ torch.diag(p["v1"]) @ p["W2"].T)
    kl2 = float((0.5 * (p["v2"] + m2 - 1 - p["v2"].log())).mean(0).sum())
    assert sites["z2"] == pytest.approx(kl2, rel=0.05)

# ---- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    ({"hidden": ((200, 200),)}, r"model.hidden has 1 lists for 2 stochastic layers .* do not "
                                r"chain"),
    ({"stochastic": (100, 50, 20)}, "model.hidden has 2 lists for 3 stochastic layers"),
    ({"hidden": (200, 200)}, r"must hold one list of layer sizes per stochastic layer"),
    ({"stochastic": ()}, "has no stochastic layer"),
    ({"hidden": ((200, 0), (100,))}, "has a layer of size 0"),
    ({"stochastic": (100, 0)}, r"model.stochastic = \(100, 0\) is out of range"),
    ({"kl_weights": (1.0,)}, r"model.kl_weights = \[1.0\] has 1 entries for 2 stochastic"),
    ({"kl_weights": (1.0, -1.0)}, "model.kl_weights .* is out of range"),
    ({"kl_free_bits": (0.5, 0.5, 0.5)}, "model.kl_free_bits = .* has 3 entries for 2"),
    ({"kl_free_bits": (0.5, 0.0), "elbo": "trace"}, "kl_free_bits needs the per-dimension KL "
                                                    "of elbo = 'meanfield' or 'jit-meanfield', "
                                                    "not \"trace\""),
    ({"kl_free_bits": (0.5, 0.0), "elbo": "iwae"}, "kl_free_bits needs the per-dimension KL"),
    ({"kl_free_bits": (0.5, 0.0), "elbo": "trace",
      "objective": {"bound": "iwae", "gradient": "dreg"}}, "not bound = \"iwae\""),
    ({"kl": {"free_bits": 1.0}}, r"takes a floor per layer; set kl_free_bits = \[1.0, 1.0\]"),
    ({"activation": "sigmoid"}, "model.activation = 'sigmoid' is not one of"),
    ({"init": "xavier"}, "model.init = 'xavier' is not one of"),
])
def test_bad_configs_are_refused_in_one_line(kw, message):
    from pyrovae.config import KLConfig, ObjectiveConfig
    kw = dict(kw)
    if "kl" in kw:
        kw["kl"] = KLConfig(**kw["kl"])
    if "objective" in kw:
        kw["objective"] = ObjectiveConfig(**kw["objective"])
    with pytest.raises(ConfigError, match=message) as err:
        HVAEConfig(**kw)
    assert "\n" not in str(err.value)


def test_glorot_init_draws_each_layer_from_its_own_range():
    """init = "glorot": W ~ U(+-sqrt(6 / (fan_in + fan_out))), biases 0; "torch" keeps
    PyTorch's U(+-1/sqrt(fan_in)) (Burda et al.'s tanh networks start from the former)."""
    torch.manual_seed(0)
    glorot = HVAE(HVAEConfig(init="glorot"), (784,))
    torch.manual_seed(0)
    default = HVAE(HVAEConfig(), (784,))
    for g, d in zip(glorot.modules(), default.modules()):
        if not isinstance(g, torch.nn.Linear):
            continue
        fan_out, fan_in = g.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert g.weight.abs().max() <= bound and g.weight.abs().max() > 0.9 * bound
        assert float(g.weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert torch.all(g.bias == 0) and torch.any(d.bias != 0)
        assert d.weight.abs().max() <= 1 / math.sqrt(fan_in)


def test_burdas_architecture_reads_from_the_config_file():
    cfg = load_config(ROOT / "configs" / "mnist-hvae.toml").model
    assert isinstance(cfg, HVAEConfig) and cfg.kind == "hvae"
    assert cfg.stochastic == (100, 50) and cfg.hidden == ((200, 200), (100, 100))
    assert cfg.activation == "tanh" and cfg.weights == (1.0, 1.0)
    m = HVAE(cfg, (1, 28, 28))
    sizes = lambda seq: [l.out_features for l in seq if isinstance(l, torch.nn.Linear)]  # noqa
    assert [sizes(n) for n in m.encoder] == [[200, 200, 200], [100, 100, 100]]  # loc + scale
    assert [sizes(n) for n in m.decoder] == [[200, 200, 784], [100, 100, 200]]
    assert all(isinstance(l, torch.nn.Tanh) for n in m.encoder for l in n
               if not isinstance(l, torch.nn.Linear))
    # round trip through the run's config.toml, and --set on the nested lists
    from pyrovae.config import to_toml
    run = load_config(ROOT / "configs" / "mnist-hvae.toml",
                      ["hidden=[[64], [32, 16]]", "kl_weights=[1, 0.5]"])
    assert run.model.hidden == ((64,), (32, 16)) and run.model.kl_weights == (1.0, 0.5)
    assert RunConfig.from_dict(__import__("tomllib").loads(to_toml(run))) == run


def test_config_file_refusal_is_one_cli_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(DIGITS_HVAE).read_text().replace("hidden = [[64], [32]]",
                                                          "hidden = [[64], [32], [16]]"))
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrovae: error: model.hidden has 3 lists for 2")
    assert not (tmp_path / "r").exists()
    # a key of another kind
    assert main(["train", str(ROOT / "configs" / "digits.toml"), "--set",
                 "stochastic=[4]"]) == 2
    assert "belongs to kind = \"hvae\"" in capsys.readouterr().err


# ---- the generic commands on digits ---------------------------------------------------------

FAST = ["--set", "epochs=1", "--set", "progress=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One epoch of digits with each objective, through the CLI."""
    root = tmp_path_factory.mktemp("hvae")
    variants = {
        "meanfield": [],
        "trace": ["--set", "elbo=trace", "--set", "kl.schedule=linear", "--set",
                  "kl.warmup=10"],
        "iwae": ["--set", "elbo=iwae", "--set", "num_particles=3"],
        "dreg": ["--set", "objective.bound=iwae", "--set", "objective.gradient=dreg",
                 "--set", "num_particles=3"],
        "tmc": ["--set", "elbo=trace", "--set", "objective.bound=tmc", "--set",
                "num_particles=3"],
        "freebits": ["--set", "kl_free_bits=[0.1, 0.05]", "--set", "kl_weights=[1.0, 0.5]"],
    }
    out = {}
    for name, extra in variants.items():
        status = main(["train", DIGITS_HVAE, *FAST, *extra, "--out", str(root / name)])
        assert status == 0, name
        out[name] = root / name
    return out


def test_every_objective_trains_and_writes_the_run(runs):
    expected = {"meanfield": "JitTraceMeanFieldELBO", "trace": "JitTraceELBO",
                "iwae": "IWAE_ELBO", "dreg": "BoundObjective", "tmc": "BoundObjective",
                "freebits": "JitFreeBitsMeanFieldELBO"}
    for name, path in runs.items():
        metrics = json.loads((path / "metrics.json").read_text())
        assert metrics["objective_run"] == expected[name], name
        assert math.isfinite(metrics["test_elbo"]) and metrics["test_elbo"] < 0, name
        assert metrics["test_kl_estimator"] == "monte-carlo"
        for png in ("samples.png", "reconstructions.png", "elbo.png"):
            assert (path / png).is_file(), (name, png)
    history = load(runs["trace"]).history                  # beta_t multiplies kl_weights
    assert history[-1]["beta"] == 1.0 and load(runs["meanfield"]).history[-1]["beta"] == 1.0
    for row in history:                                    # each layer's share of test_kl
        assert row["test_kl_z1"] + row["test_kl_z2"] == pytest.approx(row["test_kl"], rel=1e-9)
    header = (runs["trace"] / "history.csv").read_text().splitlines()[0].split(",")
    assert "test_kl_z1" in header and "test_kl_z2" in header
    run = load(runs["freebits"])
    assert isinstance(run.vae, HVAE) and run.vae.weights == (1.0, 0.5)
    assert run.config.model.kl_free_bits == (0.1, 0.05)


def test_evaluate_reports_each_layer(runs, capsys):
    assert main(["evaluate", str(runs["trace"]), "--nll-samples", "25", "--points", "100"]) == 0
    table = capsys.readouterr().out
    assert "active units" in table and "(z1: " in table and ", z2: " in table
    result = json.loads((runs["trace"] / "eval.json").read_text())
    assert result["layers"] == ["z1", "z2"]
    assert result["latent_dim_z1"] == 16 and result["latent_dim_z2"] == 8
    assert result["active_units"] == result["active_units_z1"] + result["active_units_z2"]
    assert result["latent_dim"] == 24 and len(result["kl_per_dim"]) == 24
    assert len(result["kl_per_dim_z1"]) == 16 and len(result["activity_z2"]) == 8
    assert result["kl_z1"] + result["kl_z2"] == pytest.approx(result["rate"], rel=0.2, abs=0.2)
    assert math.isfinite(result["test_nll"]) and 0 <= result["khat_share_above_0_7"] <= 1
    assert (runs["trace"] / "kl_per_dim.png").is_file()


def test_sample_reconstruct_and_export(runs, tmp_path, capsys):
    run = str(runs["meanfield"])
    assert main(["sample", run, "--n", "16", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "sample.png").is_file()
    assert json.loads((tmp_path / "sample.json").read_text())["n"] == 16
    assert main(["reconstruct", run, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "reconstruct.png").is_file()
    assert main(["sample", run, "--mode", "sample", "--out", str(tmp_path)]) == 2
    assert "samples decoder means only" in capsys.readouterr().err
    assert main(["interpolate", run]) == 2
    assert "HVAE does not declare" in capsys.readouterr().err
    vae = load(run).vae
    torch.testing.assert_close(vae.sample(4, seed=1), vae.sample(4, seed=1))
    assert not torch.equal(vae.sample(4, seed=1), vae.sample(4, seed=1, temperature=0.5))
    pytest.importorskip("arviz")
    nc = tmp_path / "post.nc"
    assert main(["export", run, "--arviz", str(nc), "--points", "0,1", "--draws", "30"]) == 0
    import arviz
    idata = arviz.from_netcdf(nc)
    assert {"z1", "z2"} <= set(idata.posterior.data_vars)


def test_compare_varies_the_objective(tmp_path):
    out = tmp_path / "cmp"
    status = main(["compare", DIGITS_HVAE, "--vary", "elbo=trace,meanfield", *FAST,
                   "--set", "data.train_size=256", "--set", "data.test_size=64",
                   "--nll-samples", "25", "--grad-draws", "3", "--out", str(out)])
    assert status == 0
    rows = (out / "compare.csv").read_text().splitlines()
    assert len(rows) == 3 and "active_units" in rows[0]
    assert "trace" in rows[1] and "meanfield" in rows[2]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def _small(**kw) -> RunConfig:
    model = HVAEConfig(stochastic=(8, 4), hidden=((32,), (16,)), **kw)
    return RunConfig(model=model, data=DataConfig(name="digits", binarize="dynamic"),
                     train=TrainConfig(epochs=2, batch_size=100, lr=3e-3, progress=False,
                                       lr_schedule="cosine"))


@pytest.mark.parametrize("kw", [{}, {"elbo": "trace", "kl_weights": (1.0, 0.5)}])
def test_stopped_run_resumes_bit_for_bit(digits, tmp_path, monkeypatch, kw):
    config = _small(**kw)
    whole = train(config, digits, out=tmp_path / "whole")
    step = Trainer.train_step

    def stop_at_17(self, xb):
        if self.step == 17:
            signal.raise_signal(signal.SIGTERM)
        return step(self, xb)

    monkeypatch.setattr(Trainer, "train_step", stop_at_17)
    with pytest.raises(TrainingInterrupted):
        train(config, digits, out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "train_step", step)
    assert load_checkpoint(tmp_path / "cut")["step"] == 18
    resumed = train(config, digits, out=tmp_path / "cut", resume=True)
    a, b = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["test_elbo"] == whole.metrics["test_elbo"]


def test_one_stochastic_layer_is_the_vae_bit_for_bit(digits):
    """stochastic = [L], hidden = [h] builds the VAE's networks in the VAE's order, so from the
    same seed it trains to the very same numbers as kind = "vae" with hidden = h."""
    from pyrovae import VAEConfig
    tc = TrainConfig(epochs=1, batch_size=100, lr=3e-3, progress=False)
    vae = VAEConfig(latent_dim=4, hidden=(32, 16), activation="tanh", elbo="trace")
    hvae = HVAEConfig(stochastic=(4,), hidden=((32, 16),), elbo="trace")
    data = DataConfig(name="digits", binarize="dynamic")
    a = train(RunConfig(model=vae, data=data, train=tc), digits)
    b = train(RunConfig(model=hvae, data=data, train=tc), digits)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert strip(a.history) == strip(b.history)
    assert a.metrics["test_elbo"] == b.metrics["test_elbo"]


def test_compiled_and_python_objectives_train_alike(digits):
    """train.fast compiles the objective (jit-trace): the same numbers as the Python Trace_ELBO
    up to float rounding, every layer's parameters trained."""
    data = DataConfig(name="digits", binarize="dynamic")
    runs = {}
    for fast in (True, False):
        tc = TrainConfig(epochs=1, batch_size=100, lr=3e-3, progress=False, fast=fast)
        runs[fast] = train(RunConfig(model=HVAEConfig(stochastic=(8, 4), hidden=((32,), (16,)),
                                                      elbo="trace"), data=data, train=tc), digits)
    assert runs[True].metrics["objective_run"] == "JitTraceELBO"
    assert runs[False].metrics["objective_run"] == "Trace_ELBO"
    assert runs[True].metrics["test_elbo"] == pytest.approx(runs[False].metrics["test_elbo"],
                                                            rel=1e-6)
    a, b = runs[True].vae.state_dict(), runs[False].vae.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_api_exports():
    assert pyrovae.HVAE is HVAE and pyrovae.HVAEConfig is HVAEConfig
    assert "hvae" in pyrovae.MODEL_KINDS
    assert pyrovae.capabilities(HVAE(HVAEConfig(stochastic=(2, 1), hidden=((3,), ())), (4,))) \
        == {"sample", "reconstruct", "hierarchy"}
