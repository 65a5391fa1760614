"""The priors p(z): each density checked against an independent computation (Gaussian
formulas by hand, the change of variables with a numerical Jacobian), samples against their
moments, and every prior inside a real VAE under Pyro's objectives (finite loss, gradients
reaching every prior parameter, samples decoded)."""

import math

import pytest
import torch
from pyro import poutine
from torch.autograd.functional import jacobian
from torch.distributions import kl_divergence

from pyrovae import VAE, PriorConfig, VAEConfig
from pyrovae.config import ANALYTIC_KL_PRIORS, PRIORS
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.components.nets import MLPEncoder
from pyrovae.objectives import make_elbo
from pyrovae.components.flow_prior import FlowPrior
from pyrovae.components.priors import LearnableNormalPrior, StandardNormalPrior, make_prior

L, SHAPE, D, K = 3, (1, 8, 8), 64, 5
LOG_2PI = math.log(2 * math.pi)


def normal_logpdf(z, loc, scale):
    """Elementwise log N(z; loc, scale^2), by the formula."""
    return -0.5 * ((z - loc) / scale) ** 2 - torch.log(scale) - 0.5 * LOG_2PI


def build(name, latent_dim=L, seed=0, **kw):
    """A standalone prior with non-trivial (perturbed) parameters, in double precision."""
    torch.manual_seed(seed)
    encoder = MLPEncoder(SHAPE, (16,), latent_dim, "tanh").double()
    prior = make_prior(PriorConfig(name=name, components=K, **kw), latent_dim, encoder, SHAPE)
    prior.double()
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return prior, encoder


def vae_for(name, latent_dim=L, **kw):
    torch.manual_seed(0)
    prior = {"name": name, "components": K, **kw}
    return VAE(VAEConfig(latent_dim=latent_dim, hidden=(16,), prior=prior, elbo="trace"), SHAPE)


def binary_data(b=8, seed=1):
    return torch.bernoulli(torch.full((b, D), 0.3), generator=torch.Generator().manual_seed(seed))


def test_registry_matches_config():
    from pyrovae.runtime.registry import PRIORS as REGISTRY

    assert PRIORS is REGISTRY  # the config's choices are the registry itself
    assert {n for n in REGISTRY if REGISTRY.get(n).analytic_kl} == set(ANALYTIC_KL_PRIORS)
    for name in PRIORS:
        assert type(build(name)[0]) is REGISTRY.get(name)
    with pytest.raises(ValueError, match="not a registered prior"):
        make_prior(type("C", (), {"name": "nope"})(), L, None, SHAPE)


@pytest.mark.parametrize("name", PRIORS)
def test_distribution_shapes(name):
    prior, _ = build(name)
    d = prior()
    assert tuple(d.batch_shape) == () and tuple(d.event_shape) == (L,)
    z = torch.randn(4, 6, L, dtype=torch.float64)
    assert prior.log_prob(z).shape == (4, 6)
    assert d.expand((7,)).log_prob(torch.randn(7, L, dtype=torch.float64)).shape == (7,)
    s = prior.sample(50)
    assert s.shape == (50, L)
    assert torch.isfinite(prior.log_prob(s)).all()


def test_standard_normal_by_hand():
    prior, _ = build("normal")
    z = torch.randn(10, L, dtype=torch.float64)
    expected = (-0.5 * z ** 2 - 0.5 * LOG_2PI).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_learnable_normal_by_hand():
    prior, _ = build("learnable-normal")
    mu, sigma = prior.loc.detach(), torch.log1p(torch.exp(prior.raw_scale.detach()))
    z = torch.randn(4, 5, L, dtype=torch.float64)
    expected = (-0.5 * ((z - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * LOG_2PI).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), expected)
    # the closed-form KL(q || p) that the meanfield objectives use, by the formula
    q_loc, q_scale = torch.randn(6, L, dtype=torch.float64), torch.rand(6, L).double() + 0.2
    q = torch.distributions.Independent(torch.distributions.Normal(q_loc, q_scale), 1)
    kl = (torch.log(sigma / q_scale) + (q_scale ** 2 + (q_loc - mu) ** 2) / (2 * sigma ** 2)
          - 0.5).sum(-1)
    torch.testing.assert_close(kl_divergence(q, prior()), kl)


def test_learnable_normal_initial_value_is_standard_normal():
    prior = LearnableNormalPrior(4)
    z = torch.randn(10, 4)
    torch.testing.assert_close(prior.log_prob(z), StandardNormalPrior(4).log_prob(z))


def test_mog_by_hand():
    prior, _ = build("mog")
    logits, mu = prior.logits.detach(), prior.locs.detach()  # [K], [K, L]
    sigma = torch.log1p(torch.exp(prior.raw_scales.detach()))  # softplus, [K, L]
    z = torch.randn(4, 5, L, dtype=torch.float64) * 2
    log_w = logits - torch.log(torch.exp(logits).sum())  # [K]
    per_k = log_w + normal_logpdf(z[..., None, :], mu, sigma).sum(-1)  # [4, 5, K]
    top = per_k.max(-1, keepdim=True).values
    expected = (top + torch.log(torch.exp(per_k - top).sum(-1, keepdim=True))).squeeze(-1)
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_vamp_by_hand():
    prior, encoder = build("vamp")
    u = 1 / (1 + torch.exp(-prior.pseudo_raw.detach()))  # sigmoid, [K, D]
    assert u.shape == (K, D) and ((u > 0) & (u < 1)).all()
    with torch.no_grad():
        loc, scale = encoder(u)  # [K, L] each
    z = torch.randn(4, 5, L, dtype=torch.float64)
    dens = torch.exp(normal_logpdf(z[..., None, :], loc, scale).sum(-1))  # [4, 5, K]
    torch.testing.assert_close(prior.log_prob(z), torch.log(dens.mean(-1)))
    assert [n for n, _ in prior.named_parameters()] == ["pseudo_raw"]  # encoder not owned


@pytest.mark.parametrize("latent_dim,flow_type", [(3, "spline"), (3, "affine"), (1, "spline"),
                                                  (1, "affine")])
def test_flow_change_of_variables(latent_dim, flow_type):
    """log p(z) = log N(g(z); 0, I) + log|det dg/dz|, g = T_n o ... o T_1 the learned map
    z -> eps, with the Jacobian computed numerically by autograd."""
    prior, _ = build("flow", latent_dim, flow_layers=2, flow_type=flow_type)

    def g(z):
        for t in prior.transforms:
            z = t(z)
        return z

    z = torch.randn(4, latent_dim, dtype=torch.float64) * 1.5
    for zi, got in zip(z, prior.log_prob(z)):
        eps = g(zi)
        logdet = torch.linalg.slogdet(jacobian(g, zi)).logabsdet
        expected = (-0.5 * eps ** 2 - 0.5 * LOG_2PI).sum() + logdet
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("flow_type", ["spline", "affine"])
def test_flow_samples_come_from_its_density(flow_type):
    """Sampling inverts the same map: g(z) of samples is N(0, I), and g inverts them exactly."""
    prior, _ = build("flow", flow_layers=2, flow_type=flow_type)
    prior.float()  # Pyro's AffineAutoregressive inverse makes float32 zeros whatever the dtype
    torch.manual_seed(4)
    z = prior.sample(2000)
    eps = z
    for t in prior.transforms:
        eps = t(eps)
    n = eps.shape[0]
    assert (eps.mean(0).abs() < 4 / math.sqrt(n)).all()
    assert ((eps.var(0) - 1).abs() < 4 * math.sqrt(2 / n)).all()
    assert torch.isfinite(prior.log_prob(z)).all()


def test_flow_latent_dim_one_is_elementwise_and_learnable():
    for flow_type in ("spline", "affine"):
        prior = FlowPrior(1, 3, flow_type)
        assert len(list(prior.parameters())) > 0
        assert prior.sample(5).shape == (5, 1)


@pytest.mark.parametrize("name", ["normal", "learnable-normal", "mog"])
def test_sample_moments(name):
    prior, _ = build(name)
    torch.manual_seed(3)
    n = 20000
    z = prior.sample(n)
    d = prior()
    if name == "mog":
        w, mu = torch.softmax(prior.logits.detach(), -1)[:, None], prior.locs.detach()
        s2 = torch.log1p(torch.exp(prior.raw_scales.detach())) ** 2
        mean = (w * mu).sum(0)
        var = (w * (s2 + mu ** 2)).sum(0) - mean ** 2
    else:
        mean, var = d.mean, d.variance
    assert ((z.mean(0) - mean).abs() < 5 * torch.sqrt(var / n)).all()
    assert ((z.var(0) / var - 1).abs() < 0.06).all()


def test_vamp_init_from_data():
    prior, _ = build("vamp")
    x = torch.rand(40, D, dtype=torch.float64)
    x[:, :4] = torch.tensor([0.0, 1.0, 0.01, 0.99], dtype=torch.float64)  # get clamped
    idx = prior.init_from_data(x, torch.Generator().manual_seed(7))
    assert idx.shape == (K,) and len(set(idx.tolist())) == K
    expected = x[idx].clamp(0.02, 0.98)
    torch.testing.assert_close(prior.pseudo_inputs, expected)
    again, _ = build("vamp", seed=1)
    assert torch.equal(again.init_from_data(x, torch.Generator().manual_seed(7)), idx)
    torch.testing.assert_close(again.pseudo_inputs, prior.pseudo_inputs)
    other = prior.init_from_data(x, torch.Generator().manual_seed(8))
    assert not torch.equal(other, idx)
    few = prior.init_from_data(x[:2], torch.Generator().manual_seed(0))  # fewer rows than K
    assert few.shape == (K,) and set(few.tolist()) <= {0, 1}
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        prior.init_from_data(x * 3 - 1, torch.Generator())


def test_vamp_init_reaches_the_pyro_model():
    """init_from_data edits the parameter the VAE's Pyro model reads (no stale copy)."""
    vae, x = vae_for("vamp"), binary_data()
    rows = binary_data(20, seed=5)
    idx = vae.prior.init_from_data(rows, torch.Generator().manual_seed(0))
    fn = poutine.trace(vae.model).get_trace(x).nodes["z"]["fn"]
    loc = fn.component_distribution.base_dist.loc[0]  # [K, L] (expanded over the batch)
    with torch.no_grad():
        torch.testing.assert_close(loc, vae.encoder(rows[idx].clamp(0.02, 0.98))[0])
    assert not any(k.startswith("prior.encoder") for k in vae.state_dict())


CASES = ([(p, o) for p in PRIORS for o in ("trace", "jit-trace", "tracegraph")]
         + [(p, o) for p in ANALYTIC_KL_PRIORS for o in ("meanfield", "jit-meanfield")]
         + [("flow-affine", o) for o in ("trace", "jit-trace")]
         + [("flow-1d", "jit-trace"), ("flow-1d-affine", "jit-trace")])


def vae_case(prior):
    if prior.startswith("flow-1d"):
        return vae_for("flow", latent_dim=1, flow_layers=2,
                       flow_type="affine" if prior.endswith("affine") else "spline")
    if prior == "flow-affine":
        return vae_for("flow", flow_type="affine")
    return vae_for(prior)


@pytest.mark.parametrize("prior,objective", CASES)
def test_gradients_reach_every_prior_parameter(prior, objective):
    vae, x = vae_case(prior), binary_data()
    elbo = make_elbo(objective)
    for _ in range(2):  # the JIT objectives trace on the first call and replay on the second
        vae.zero_grad()
        if objective == "tracegraph":
            loss = torch.as_tensor(elbo.loss_and_grads(vae.model, vae.guide, x))
        else:
            loss = elbo.differentiable_loss(vae.model, vae.guide, x)
            loss.backward()
        assert torch.isfinite(loss)
        for name, p in vae.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert (prior == "normal") != any(n.startswith("prior.") for n, _ in vae.named_parameters())


def test_meanfield_refused_for_priors_without_closed_form_kl():
    for name in set(PRIORS) - set(ANALYTIC_KL_PRIORS):
        with pytest.raises(ConfigError, match="closed-form"):
            VAEConfig(prior=name, elbo="meanfield")


@pytest.mark.parametrize("name", PRIORS)
def test_vae_samples_and_state_dict_round_trip(name):
    vae = vae_case(name)
    s = vae.sample(16, seed=0)
    assert s.shape == (16, D) and torch.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()
    fresh = vae_for(name)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    fresh.load_state_dict(vae.state_dict())
    z = torch.randn(6, L)
    with torch.no_grad():
        torch.testing.assert_close(fresh.prior.log_prob(z), vae.prior.log_prob(z))
    torch.testing.assert_close(fresh.sample(16, seed=0), s)


def test_vamp_with_conv_encoder():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=L, network="conv", channels=(4,), prior={"name": "vamp",
                        "components": K}, elbo="trace"), SHAPE)
    x = binary_data()
    make_elbo("trace").differentiable_loss(vae.model, vae.guide, x).backward()
    assert vae.prior.pseudo_raw.grad.abs().sum() > 0
    assert vae.sample(4).shape == (4, D)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("latent_dim", [3, 1])
def test_spline_flow_traces_for_any_batch(latent_dim):
    """Pyro's spline sets the values outside its box [-3, 3] by boolean-mask assignment, which
    torch.jit.trace freezes (a trace made with exactly one value outside fails on any other
    count); ours must give the eager result whatever the batch it was traced on."""
    prior, _ = build("flow", latent_dim, flow_layers=2, flow_type="spline")
    prior.float().requires_grad_(False)  # trace bakes the parameters in as constants
    torch.manual_seed(0)
    one_out = torch.rand(16, latent_dim) - 0.5
    one_out[3, 0] = 5.0
    batches = {"none out": torch.rand(16, latent_dim) - 0.5, "one out": one_out,
               "many out": torch.randn(16, latent_dim) * 4}
    # fresh tensors (clone) everywhere: the transforms cache their last input by identity, and a
    # trace that hits that cache would bake the cached output in as a constant
    for traced_on, example in batches.items():
        traced = torch.jit.trace(lambda z: prior.log_prob(z), (example.clone(),),
                                 check_trace=False)
        for name, z in batches.items():
            torch.testing.assert_close(traced(z.clone()), prior.log_prob(z.clone()),
                                       msg=f"traced on {traced_on}, run on {name}")


def test_spline_flow_under_compiled_objective_for_any_batch():
    """The same through JitTrace_ELBO: compiled with one latent value outside the box, then run
    with none outside (the posterior means moved)."""
    vae = vae_for("flow", flow_layers=1)
    head = vae.encoder.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([5.0, 0.0, 0.0, -6.0, -6.0, -6.0]))  # loc, raw scale
    x, elbo = binary_data(1), make_elbo("jit-trace")
    elbo.differentiable_loss(vae.model, vae.guide, x)
    with torch.no_grad():
        head.bias[0] = 0.0
    loss = elbo.differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert torch.isfinite(loss)
