"""Guide families q(z|x) ([model.posterior], pyrovae/posteriors): log-densities against direct
computations (the Cholesky factor built by hand; the IAF's change of variables with its Jacobian
by autograd), exact under particles, replay and the STL/DReG/IWAE estimators, closed-form KLs
against Monte Carlo, the config's refusals, and the whole run machinery (train from the CLI and
a config file, bit-exact resume, evaluate, export) on the digits data."""

from __future__ import annotations

import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch.autograd.functional import jacobian
from torch.distributions import kl_divergence

from pyrovae import VAE, VAEConfig, load, load_dataset, train
from pyrovae.cli import main
from pyrovae.config import PosteriorConfig, load_config
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation import evaluate_elbo
from pyrovae.runtime.traces import point_traces
from pyrovae.objectives import BoundObjective
from pyrovae.components.posteriors import IAFPosterior
from pyrovae.components.posteriors.iaf import SIGMOID_BIAS
from pyrovae.runtime.registry import POSTERIORS
from pyrovae.runs import load_checkpoint
from tests.support.one_line import assert_one_line_error

DIGITS = "configs/digits.toml"
SMALL = ["--set", "progress=false", "--set", "epochs=1", "--set", "data.train_size=256",
         "--set", "data.test_size=64", "--set", "batch_size=64"]
FAMILIES = ("diagonal", "full", "lowrank", "iaf")

pytestmark = pytest.mark.usefixtures("one_thread")


def vae_of(name: str, latent: int = 3, elbo: str = "trace", seed: int = 0, **posterior):
    torch.manual_seed(seed)
    cfg = VAEConfig(latent_dim=latent, hidden=(16,), elbo=elbo,
                    posterior=PosteriorConfig(name=name, **posterior))
    return VAE(cfg, (12,))


def data_x(b: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 12, generator=torch.Generator().manual_seed(seed)).bernoulli()


# ---- the registry and the encoder ----------------------------------------------------------

def test_families_are_registered_with_their_capabilities():
    assert [n for n in FAMILIES if n in POSTERIORS] == list(FAMILIES)
    assert list(POSTERIORS.where(analytic_kl=True)) == ["diagonal", "full", "lowrank"]
    assert list(POSTERIORS.where(diagonal=True)) == ["diagonal"]


@pytest.mark.parametrize("name, outputs", [
    ("diagonal", 2 * 5), ("full", 5 + 15), ("lowrank", 5 + 5 * 3 + 5), ("iaf", 2 * 5 + 7)])
def test_the_encoder_gives_each_family_its_number_of_outputs(name, outputs):
    config = PosteriorConfig(name=name, rank=3, context=7)
    assert POSTERIORS.get(name).outputs(config, 5) == outputs
    vae = vae_of(name, latent=5, rank=3, context=7)
    assert vae.encoder.net[-1].out_features == outputs
    q = vae.posterior(vae.encoder(data_x()))
    assert q.batch_shape == (4,) and q.event_shape == (5,) and q.has_rsample


def test_the_default_is_the_diagonal_guide_of_before():
    """Same parameters (names, shapes), no parameter of the family, and the guide draws
    z = mu + sigma * eps from N(mu, diag(sigma^2)) of the encoder's Gaussian head."""
    vae = vae_of("diagonal")
    assert VAEConfig().posterior.name == "diagonal"
    assert [n for n, _ in vae.named_parameters()] == [
        "encoder.net.0.weight", "encoder.net.0.bias", "encoder.net.2.weight",
        "encoder.net.2.bias", "decoder.net.0.weight", "decoder.net.0.bias",
        "decoder.net.2.weight", "decoder.net.2.bias"]
    x = data_x()
    loc, scale = vae.encoder(x)
    assert torch.equal(vae.encode(x)[0], loc) and torch.equal(vae.encode(x)[1], scale)
    torch.manual_seed(5)
    tr = poutine.trace(vae.guide).get_trace(x)
    torch.manual_seed(5)
    expected = dist.Normal(loc, scale).rsample()
    assert torch.equal(tr.nodes["z"]["value"], expected)
    fn = tr.nodes["z"]["fn"]
    assert isinstance(fn, dist.Independent) and isinstance(fn.base_dist, dist.Normal)


# ---- log-densities against direct computations ---------------------------------------------

def test_full_covariance_log_density_matches_the_cholesky_factor_built_by_hand():
    vae = vae_of("full")
    x = data_x()
    h = vae.encoder(x).detach().double()
    tr = poutine.trace(vae.guide).get_trace(x)
    z = tr.nodes["z"]["value"].detach().double()
    lp = tr.nodes["z"]["fn"].log_prob(tr.nodes["z"]["value"]).detach()
    n = 3
    for b in range(4):
        chol, k = torch.zeros(n, n, dtype=torch.float64), n
        for i in range(n):          # the lower triangle, row by row, after the n means
            for j in range(i + 1):
                v = h[b, k]
                chol[i, j] = torch.nn.functional.softplus(v) + 1e-4 if i == j else v
                k += 1
        ref = torch.distributions.MultivariateNormal(h[b, :n], covariance_matrix=chol @ chol.T)
        assert float(lp[b]) == pytest.approx(float(ref.log_prob(z[b])), abs=1e-4)
    mean, std = vae.encode(x)
    assert torch.allclose(mean, h[:, :n].float())


def test_low_rank_log_density_matches_the_dense_covariance():
    vae = vae_of("lowrank", rank=2)
    x = data_x()
    h = vae.encoder(x).detach().double()
    tr = poutine.trace(vae.guide).get_trace(x)
    z = tr.nodes["z"]["value"]
    lp = tr.nodes["z"]["fn"].log_prob(z)
    n, r = 3, 2
    w = h[:, n:n + n * r].reshape(4, n, r)
    d = (torch.nn.functional.softplus(h[:, n + n * r:]) + 1e-4) ** 2
    cov = w @ w.transpose(-1, -2) + torch.diag_embed(d)
    ref = torch.distributions.MultivariateNormal(h[:, :n], covariance_matrix=cov)
    assert torch.allclose(lp.double(), ref.log_prob(z.double()), atol=1e-4)
    mean, std = vae.encode(x)
    assert torch.allclose(std.double(), torch.diagonal(cov, dim1=-2, dim2=-1).sqrt(), atol=1e-5)


def iaf_map(family: IAFPosterior, h: torch.Tensor):
    """z = f(eps) for one point: the base affine map, then each step written out (Kingma et
    al.'s Eq. 14 with the gate sigmoid(s + 2)), independently of Pyro's transforms."""
    dim = family.latent_dim
    loc = h[:dim]
    scale = torch.nn.functional.softplus(h[dim:2 * dim]) + 1e-4
    context = h[2 * dim:]

    def f(eps):
        z = loc + scale * eps
        for made in family.made:
            m, s = made(z, context=context)
            g = torch.sigmoid(s + SIGMOID_BIAS)
            z = g * z + (1 - g) * m
        return z

    def f_inv(z):  # each step inverted one variable at a time, in the step's order
        for made in reversed(family.made):
            x = torch.zeros_like(z)
            for i in made.permutation.tolist():
                m, s = made(x, context=context)
                g = torch.sigmoid(s[i] + SIGMOID_BIAS)
                x = x.clone()
                x[i] = (z[i] - (1 - g) * m[i]) / g
            z = x
        return (z - loc) / scale

    return f, f_inv


def iaf_log_q(family: IAFPosterior, h: torch.Tensor, z: torch.Tensor) -> float:
    """log q(z) = log N(eps; 0, I) - log |det df/deps| at eps = f^-1(z), the Jacobian by
    autograd (float64); checks f(eps) = z."""
    f, f_inv = iaf_map(family, h)
    eps = f_inv(z)
    assert torch.allclose(f(eps), z, atol=1e-6)
    jac = jacobian(f, eps)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum()
    return float((base - torch.linalg.slogdet(jac)[1]).detach())


@pytest.fixture(scope="module")
def iaf_vae():
    vae = vae_of("iaf", flows=2, context=4, flow_hidden=[8, 8])
    with torch.no_grad():  # move the gates away from their start so every step matters
        for p in vae.posterior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return vae.double()


def test_iaf_log_density_matches_the_change_of_variables_with_an_autograd_jacobian(iaf_vae):
    x = data_x().double()
    h = iaf_vae.encoder(x).detach()
    tr = poutine.trace(iaf_vae.guide).get_trace(x)
    z = tr.nodes["z"]["value"]
    lp = tr.nodes["z"]["fn"].log_prob(z).detach()  # the value just drawn: Pyro's cache
    for b in range(4):
        assert float(lp[b]) == pytest.approx(iaf_log_q(iaf_vae.posterior, h[b], z[b].detach()),
                                             abs=1e-6)
    # any other value: Pyro inverts the steps (L network passes each)
    f, _ = iaf_map(iaf_vae.posterior, h[0])
    other = f(torch.randn(3, dtype=torch.float64)).detach()
    q = iaf_vae.posterior(h)
    assert float(q.log_prob(other.expand(4, 3))[0].detach()) == pytest.approx(
        iaf_log_q(iaf_vae.posterior, h[0], other), abs=1e-6)


def direct_log_q(vae, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log q(z[s, b] | x[b]) for draws z [S, B, L] by the direct computation."""
    h = vae.encoder(x).detach()
    return torch.tensor([[iaf_log_q(vae.posterior, h[b], z[s, b].detach())
                          for b in range(z.shape[1])] for s in range(z.shape[0])],
                        dtype=torch.float64)


def test_iaf_log_density_is_exact_under_particles(iaf_vae):
    """The IS estimator's traces (a particle plate of K): every particle's log q exact."""
    x = data_x(3).double()
    t = point_traces(iaf_vae, x, particles=4, enumerate="none")
    z = t.guide.nodes["z"]["value"]
    assert z.shape == (4, 3, 3)
    assert torch.allclose(t.lp_guide["z"], direct_log_q(iaf_vae, x, z), atol=1e-6)


@pytest.mark.parametrize("bound, gradient", [
    ("iwae", "reparam"), ("iwae", "stl"), ("iwae", "dreg"), ("elbo", "stl")])
def test_iaf_log_density_is_exact_in_the_bound_estimators(iaf_vae, bound, gradient):
    """BoundObjective replays the guide's values into log q, detached (STL, DReG: Pyro then
    inverts the steps) or through a gradient-scaling view (DReG): log q, and log q at the
    fixed values, equal the direct computation at every particle; the loss has a finite
    gradient for every parameter of the flow."""
    x = data_x(3).double()
    objective = BoundObjective(bound, gradient, num_particles=5, biased=gradient == "stl")
    guide = poutine.trace(iaf_vae.guide)
    d = objective.draw(iaf_vae.model, guide, x)
    z = guide.trace.nodes["z"]["value"]
    assert z.shape == (5, 3, 3)
    expected = direct_log_q(iaf_vae, x, z)
    assert torch.allclose(d.log_q.double(), expected, atol=1e-6)
    if d.log_q_fixed is not None:
        assert torch.allclose(d.log_q_fixed.double(), expected, atol=1e-6)
    iaf_vae.zero_grad()
    objective.differentiable_loss(iaf_vae.model, iaf_vae.guide, x).backward()
    grads = [p.grad for p in iaf_vae.posterior.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(bool((g != 0).any()) for g in grads)


def test_iaf_log_density_is_exact_in_trace_elbo_with_particles(iaf_vae):
    """Trace_ELBO with K vectorized particles scores the guide's own draws: its loss equals
    -(log p(x, z) - log q(z)) with the direct log q, averaged over the particles."""
    x = data_x(3).double()
    elbo = pyro.infer.Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    torch.manual_seed(3)
    loss = elbo.differentiable_loss(iaf_vae.model, iaf_vae.guide, x)
    torch.manual_seed(3)
    with pyro.plate("num_particles_vectorized", 4, dim=-2):
        guide = poutine.trace(iaf_vae.guide).get_trace(x)
        model = poutine.trace(poutine.replay(iaf_vae.model, trace=guide)).get_trace(x)
    z = guide.nodes["z"]["value"]
    log_p = sum(model.nodes[n]["fn"].log_prob(model.nodes[n]["value"]) for n in ("z", "x"))
    expected = -(log_p.double() - direct_log_q(iaf_vae, x, z)).sum() / 4
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)


# ---- closed-form KL ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["full", "lowrank"])
@pytest.mark.parametrize("prior_loc, prior_scale", [(0.0, 1.0), (0.3, 0.7)])
def test_closed_form_kl_equals_a_monte_carlo_estimate(name, prior_loc, prior_scale):
    vae = vae_of(name, rank=2)
    q = vae.posterior(vae.encoder(data_x()).detach())
    p = dist.Normal(torch.full((4, 3), prior_loc), torch.full((4, 3), prior_scale)).to_event(1)
    kl = kl_divergence(q, p)
    assert kl.shape == (4,)
    torch.manual_seed(0)
    z = q.sample((20000,))
    terms = (q.log_prob(z) - p.log_prob(z)).double()
    se = terms.std(0) / math.sqrt(20000)
    assert ((kl.double() - terms.mean(0)).abs() < 4 * se).all(), (kl, terms.mean(0), se)


def test_evaluation_uses_the_closed_form_kl_only_where_there_is_one():
    x = data_x(8)
    assert evaluate_elbo(vae_of("full"), x)["kl_estimator"] == "analytic"
    assert evaluate_elbo(vae_of("lowrank"), x)["kl_estimator"] == "analytic"
    assert evaluate_elbo(vae_of("iaf"), x)["kl_estimator"] == "monte-carlo"


@pytest.mark.parametrize("name", ["full", "lowrank"])
def test_meanfield_trains_full_and_low_rank_with_the_closed_form_kl(name):
    """TraceMeanField_ELBO's loss: -E log p(x|z) + KL with the registered KL (not its
    Monte Carlo fallback): two draws differ only through the reconstruction term."""
    vae = vae_of(name, elbo="meanfield")
    x = data_x()
    tr = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=tr)).get_trace(x)
    kl = kl_divergence(tr.nodes["z"]["fn"], model.nodes["z"]["fn"]).sum()
    rec = model.nodes["x"]["fn"].log_prob(model.nodes["x"]["value"]).sum()
    loss = pyro.infer.TraceMeanField_ELBO().differentiable_loss(
        vae.model, poutine.replay(vae.guide, trace=tr), x)  # the same draw of z
    assert float(loss.detach()) == pytest.approx(float((kl - rec).detach()), rel=1e-5)


# ---- encode: means and marginal standard deviations ----------------------------------------

def test_encode_gives_the_exact_marginals_of_full_and_mc_moments_of_iaf():
    x = data_x()
    vae = vae_of("full")
    q = vae.posterior(vae.encoder(x))
    mean, std = vae.encode(x)
    assert torch.allclose(mean, q.mean) and torch.allclose(std, q.variance.sqrt())
    vae = vae_of("iaf", context=4)
    state = torch.get_rng_state()
    mean, std = vae.encode(x)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream untouched
    assert torch.equal(vae.encode(x)[0], mean)  # repeatable
    q = vae.posterior(vae.encoder(x))
    torch.manual_seed(1)
    z = q.sample((20000,))
    assert torch.allclose(mean, z.mean(0), atol=float(5 * std.max() / 16))
    assert torch.allclose(std, z.std(0), rtol=0.2)


# ---- config --------------------------------------------------------------------------------

def test_posterior_shorthand_table_and_set(tmp_path):
    assert VAEConfig(posterior="iaf", elbo="trace").posterior == PosteriorConfig(name="iaf")
    path = tmp_path / "c.toml"
    path.write_text('[model]\nlatent_dim = 4\nelbo = "trace"\n[model.posterior]\nname = "iaf"\n'
                    'flows = 3\ncontext = 5\nflow_hidden = [16]\n')
    cfg = load_config(path).model
    assert (cfg.posterior.name, cfg.posterior.flows, cfg.posterior.context,
            cfg.posterior.flow_hidden) == ("iaf", 3, 5, (16,))
    cfg = load_config(path, ["posterior=lowrank", "rank=2", "hidden=[32]"]).model
    assert (cfg.posterior.name, cfg.posterior.rank) == ("lowrank", 2)
    assert not hasattr(cfg.posterior, "flows")  # iaf's settings went with it
    assert cfg.hidden == (32,)  # flow_hidden does not make 'hidden' ambiguous


@pytest.mark.parametrize("kwargs, message", [
    (dict(posterior="iaf"), 'model.elbo = "meanfield" needs a closed-form KL(q || p), which the '
                            '"iaf" posterior lacks; use elbo = "trace"'),
    (dict(posterior="iaf", elbo="jit-meanfield"), '"jit-meanfield" needs a closed-form'),
    (dict(posterior="full", kl={"free_bits": 0.5}), "free_bits needs the per-dimension KL of "
                                                    "a diagonal posterior"),
    (dict(posterior="lowrank", prior="vamp", elbo="trace"), 'prior = "vamp" is a mixture of '
                                                            "the encoder's diagonal"),
    (dict(posterior={"name": "lowrank", "rank": 9}, latent_dim=4), "rank = 9 is above "
                                                                    "latent_dim = 4"),
    (dict(posterior={"name": "iaf", "flow_hidden": [8]}, elbo="trace", latent_dim=10),
     "flow_hidden = [8] has a layer narrower than latent_dim = 10"),
    (dict(posterior="normal"), "model.posterior.name = 'normal' is not one of: diagonal, full, "
                               "lowrank, iaf"),
])
def test_bad_posterior_configs_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError) as info:
        VAEConfig(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_meanfield_is_fine_for_full_and_a_bound_for_iaf():
    VAEConfig(posterior="full")  # closed-form KL registered
    VAEConfig(posterior="iaf", objective={"bound": "iwae"}, num_particles=3)  # elbo unused


def test_ssvae_keeps_its_diagonal_guide():
    from pyrovae import SSVAEConfig
    with pytest.raises(ConfigError, match='model.posterior.name = .iaf. is not supported by '
                                          'kind = "ssvae"; it needs posterior.name = .diagonal.'):
        SSVAEConfig(posterior="iaf", elbo="trace")


def test_meanfield_iaf_refusal_from_the_cli_is_one_line_with_status_2(tmp_path, capsys):
    code = main(["train", DIGITS, "--set", "posterior=iaf", "--out", str(tmp_path / "r")])
    assert code == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert 'needs a closed-form KL(q || p), which the "iaf" posterior lacks' in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", FAMILIES)
def test_parameter_estimate_matches_the_built_model(name):
    from pyrovae.runtime import memory
    from pyrovae.runs import make_model

    config = VAEConfig(posterior=name, elbo="trace", latent_dim=20)
    model = make_model(config, (1, 28, 28))
    built = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    assert memory.model_parameters(config, (1, 28, 28)) == pytest.approx(built, rel=0.01)


# ---- the run machinery on digits -----------------------------------------------------------

@pytest.mark.parametrize("name, elbo, network", [
    ("diagonal", "trace", "mlp"), ("full", "trace", "mlp"), ("lowrank", "trace", "mlp"),
    ("iaf", "trace", "mlp"), ("full", "meanfield", "mlp"), ("lowrank", "meanfield", "conv"),
    ("iaf", "trace", "conv")])
def test_every_family_trains_from_the_cli(name, elbo, network, tmp_path, capsys):
    """(The fast path compiles trace and meanfield: JitTrace_ELBO, JitTraceMeanField_ELBO.)"""
    out = tmp_path / name
    assert main(["train", DIGITS, "--set", f"posterior={name}", "--set", f"elbo={elbo}",
                 "--set", f"network={network}", *SMALL, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["test_elbo"])
    assert metrics["test_kl_estimator"] == ("monte-carlo" if name == "iaf" else "analytic")
    run = load(out)
    assert run.config.model.posterior.name == name
    assert isinstance(run.vae.posterior, POSTERIORS.get(name))


def test_a_config_file_table_trains_an_iaf(tmp_path):
    path = tmp_path / "iaf.toml"
    path.write_text(open(DIGITS).read().replace(
        'elbo = "meanfield"', 'elbo = "trace"\n\n[model.posterior]\nname = "iaf"\nflows = 1\n'
        'context = 6'))
    out = tmp_path / "run"
    assert main(["train", str(path), *SMALL, "--out", str(out)]) == 0
    saved = load_checkpoint(out)["model"]
    assert [k for k in saved if k.startswith("posterior.made.")]
    assert "posterior.made.1.layers.0.weight" not in saved  # one step
    assert load(out).config.model.posterior.context == 6


def test_iaf_resume_is_bit_exact(tmp_path, monkeypatch):
    """A run stopped right after its mid-epoch checkpoint (step 5 of 11 per epoch; the folder
    copied as a kill would leave it) and resumed ends with the parameters, flow included, of
    the run that never stopped."""
    import shutil

    import pyrovae.training.checkpointing as trainer  # (where the Trainer saves)

    real_save = trainer.save_checkpoint

    def save_and_snapshot(path, payload):
        real_save(path, payload)
        if payload["step"] == 5:
            shutil.copytree(path.parent, tmp_path / "stopped")

    monkeypatch.setattr(trainer, "save_checkpoint", save_and_snapshot)
    data = load_dataset("digits", binarize="dynamic")
    cfg = VAEConfig(latent_dim=3, hidden=(16,), elbo="trace",
                    posterior=PosteriorConfig(name="iaf", context=4))
    common = dict(epochs=2, batch_size=128, progress=False, checkpoint_every=5)
    train(cfg, data, out=tmp_path / "straight", **common)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "stopped")["step"] == 5
    train(cfg, data, out=tmp_path / "stopped", resume=True, **common)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "stopped")
    assert a["step"] == b["step"] == 22 and a["model"].keys() == b["model"].keys()
    assert any(k.startswith("posterior.made.") for k in a["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


@pytest.fixture(scope="module")
def iaf_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("iaf") / "run"
    data = load_dataset("digits", binarize="dynamic")
    train(VAEConfig(latent_dim=4, hidden=(32,), elbo="trace",
                    posterior=PosteriorConfig(name="iaf", context=4)),
          data, out=out, epochs=2, progress=False)
    return out


def test_evaluate_gives_a_finite_nll_and_khat_for_iaf(iaf_run, capsys):
    assert main(["evaluate", str(iaf_run), "--nll-samples", "60", "--points", "40",
                 "--quiet"]) == 0
    result = json.loads((iaf_run / "eval.json").read_text())
    assert math.isfinite(result["test_nll"]) and math.isfinite(result["test_elbo"])
    assert result["test_nll"] < -result["test_elbo"] + 3 * result["test_elbo_se"]
    assert 0 <= result["khat_share_above_0_7"] <= 1 and result["psis_khat"]
    assert result["kl_estimator"] == "monte-carlo"
    assert result["mutual_info"] is None and result["kl_per_dim"] is None  # not a diagonal q
    assert len(result["activity"]) == 4


def test_export_arviz_works_for_iaf(iaf_run, tmp_path):
    az = pytest.importorskip("arviz")
    path = tmp_path / "post.nc"
    assert main(["export", str(iaf_run), "--arviz", str(path), "--points", "0,3",
                 "--draws", "400"]) == 0
    idata = az.from_netcdf(path)
    z = idata.posterior["z"]
    assert z.shape == (1, 400, 2, 4)
    assert np.isfinite(idata.sample_stats["log_weight"].values).all()
    run = load(iaf_run)
    mean, std = run.vae.encode(load_dataset(run.config.data).test_data()[[0, 3]])
    np.testing.assert_allclose(z.mean(("chain", "draw")).values, mean.numpy(),
                               atol=float(5 * std.max() / math.sqrt(400)) + 0.05)
