"""The ``iwae`` objective: the importance-weighted bound per data point (objectives/iwae.py)."""

import math

import pyro
import pyro.infer as infer
import pytest
import torch

from pyrovae import VAE, VAEConfig, load_dataset, train
from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation import log_likelihood, log_weights
from pyrovae.runtime.interface import InterfaceError
from pyrovae.objectives import IWAE_ELBO, make_elbo
from tests.support.ppca import ppca


@pytest.fixture(scope="module")
def digits_vae():
    data = load_dataset("digits", binarize="static")
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=4, hidden=(32,)), data.shape), data.test_data()[:9]


def loss(elbo, vae, x, seed, **kw):
    pyro.set_rng_seed(seed)
    return elbo.loss(vae.model, vae.guide, x, **kw)


def test_one_particle_is_the_trace_elbo(digits_vae):
    vae, x = digits_vae
    assert loss(make_elbo("iwae", 1), vae, x, 0) == pytest.approx(
        loss(infer.Trace_ELBO(), vae, x, 0), rel=1e-6)


def test_equals_renyi_alpha_zero_on_the_full_batch(digits_vae):
    vae, x = digits_vae
    renyi = infer.RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True,
                            max_plate_nesting=1)
    assert loss(make_elbo("iwae", 5), vae, x, 1) == pytest.approx(loss(renyi, vae, x, 1),
                                                                   rel=1e-6)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_per_point_bound_scaled_outside_the_logsumexp(digits_vae, beta):
    """loss = -(N/B) sum_i log mean_k w_ik with the evaluation module's per-point weights."""
    vae, x = digits_vae
    vae.beta = beta
    try:
        k, n = 6, 90
        got = loss(make_elbo("iwae", k), vae, x, 2, n_data=n)
        pyro.set_rng_seed(2)
        guide_z = log_weights(vae, x, k)  # [k, B] with beta = 1 in the weights
        assert guide_z.shape == (k, x.shape[0])
        if beta == 1.0:
            bound = torch.logsumexp(guide_z, 0) - math.log(k)
            assert got == pytest.approx(-(n / x.shape[0]) * float(bound.sum()), rel=1e-5)
        renyi = infer.RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True,
                                max_plate_nesting=1)
        assert abs(got - loss(renyi, vae, x, 2, n_data=n)) > 1.0  # Renyi scales inside
    finally:
        vae.beta = 1.0


def test_gradients_flow_to_encoder_and_decoder(digits_vae):
    vae, x = digits_vae
    vae.zero_grad()
    make_elbo("iwae", 4).differentiable_loss(vae.model, vae.guide, x).backward()
    for part in (vae.encoder, vae.decoder):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


def test_trained_ppca_bounds_ordered_and_match_the_nll_estimator():
    """Train a PPCA VAE's encoder with iwae (K=5): E[L_1] <= E[L_5] <= E[L_500] <= log p(x),
    and L_K of the objective equals the IS log-likelihood estimator at large K."""
    vae, exact = ppca(exact_posterior=False)
    torch.manual_seed(3)
    x = exact.sample((256,))
    for p in vae.decoder.parameters():
        p.requires_grad_(False)  # the decoder stays the true PPCA
    elbo = make_elbo("iwae", 5)
    opt = torch.optim.Adam(vae.encoder.parameters(), lr=0.02)
    pyro.set_rng_seed(0)
    for _ in range(150):
        opt.zero_grad()
        elbo.differentiable_loss(vae.model, vae.guide, x).backward()
        opt.step()
    log_px = float(exact.log_prob(x).mean())

    def bound(k, draws):  # average over draws of the objective, per data point
        e = make_elbo("iwae", k)
        return -sum(loss(e, vae, x, s) for s in range(draws)) / (draws * len(x))

    b1, b5, b500 = bound(1, 40), bound(5, 20), bound(500, 4)
    assert b1 < b5 < b500 <= log_px + 2e-3
    assert log_px - b500 < 0.01  # a trained encoder: the bound at K=500 is nearly tight
    nll = float(log_likelihood(vae, x, num_samples=500, seed=7).mean())
    assert nll == pytest.approx(b500, abs=5e-3)


def test_config_and_training(tmp_path):
    data = load_dataset("digits", binarize="dynamic", train_size=256, test_size=64)
    cfg = VAEConfig(latent_dim=4, hidden=(32,), elbo="iwae", num_particles=3)
    run = train(cfg, data, epochs=2, batch_size=64, progress=False, seed=0)
    assert run.metrics["objective"] == "iwae" and math.isfinite(run.metrics["test_elbo"])
    assert run.history[1]["train_elbo"] > run.history[0]["train_elbo"] - 5
    with pytest.raises(ConfigError, match="free_bits"):
        VAEConfig(elbo="iwae", kl={"free_bits": 0.5})


def test_rejects_sites_outside_the_data_plate():
    x = torch.randn(4)

    def model():  # a global latent g outside the data plate
        g = pyro.sample("g", pyro.distributions.Normal(0.0, 1.0))
        with pyro.plate("data", 4, dim=-1):
            pyro.sample("x", pyro.distributions.Normal(g, 1.0), obs=x)

    def guide():
        pyro.sample("g", pyro.distributions.Normal(0.0, 1.0))

    with pytest.raises(InterfaceError, match="site 'g' is not inside the plate named 'data'"):
        IWAE_ELBO(num_particles=3).loss(model, guide)


def test_sites_in_a_plate_nested_in_the_data_plate_are_summed_per_point():
    """x [B, P] observed in a plate inside the data plate: with K = 1 the bound is the ELBO of
    the same draw (Trace_ELBO, max_plate_nesting = 2)."""
    x = torch.randn(5, 3)

    def model(x):
        with pyro.plate("data", 5, dim=-2):
            z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
            with pyro.plate("pixels", 3, dim=-1):
                pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", 5, dim=-2):
            pyro.sample("z", pyro.distributions.Normal(x.mean(-1, keepdim=True), 0.5))

    pyro.set_rng_seed(0)
    iwae = IWAE_ELBO(num_particles=1, max_plate_nesting=2).loss(model, guide, x)
    pyro.set_rng_seed(0)
    trace = pyro.infer.Trace_ELBO(max_plate_nesting=2).loss(model, guide, x)
    assert iwae == pytest.approx(trace, rel=1e-6)
    k5 = IWAE_ELBO(num_particles=5, max_plate_nesting=2).loss(model, guide, x)
    assert math.isfinite(k5)
