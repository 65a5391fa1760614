"""Importance-sampled log-likelihood against the closed form of a linear-Gaussian VAE
(probabilistic PCA): p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I), log p(x) = log N(x; b, WW^T + s^2 I)."""

import math

import pytest
import torch

from pyrovae import VAE, VAEConfig, evaluate_elbo
from pyrovae.evaluation import log_likelihood, log_weights
from tests.support.ppca import D, L, S, ppca

def test_exact_posterior_gives_exact_log_likelihood():
    vae, exact = ppca(exact_posterior=True)
    x = exact.sample((20,))
    est = log_likelihood(vae, x, num_samples=50)
    torch.testing.assert_close(est, exact.log_prob(x).double(), atol=1e-3, rtol=0)
    # with the exact posterior every importance weight equals p(x): zero variance
    assert log_weights(vae, x, 30).std(dim=0).max() < 1e-3


def test_bounds_are_ordered_and_tighten_with_k():
    """ELBO <= IWAE(K) <= log p(x), increasing in K, for an inexact (untrained) encoder."""
    vae, exact = ppca(exact_posterior=False)
    torch.manual_seed(1)
    x = exact.sample((200,))
    log_px = exact.log_prob(x).double().mean()
    elbo = evaluate_elbo(vae, x, analytic_kl=True)["elbo"]
    one = log_likelihood(vae, x, num_samples=1, seed=2)
    se = float(one.std()) / math.sqrt(len(one))
    assert float(one.mean()) == pytest.approx(elbo, abs=4 * se)  # K=1 estimates the ELBO
    iwae = [log_likelihood(vae, x, num_samples=k, seed=2).mean() for k in (1, 10, 100, 2000)]
    assert elbo < iwae[1] < iwae[2] < iwae[3] <= log_px + 1e-3
    assert float(log_px - iwae[3]) < float(log_px - elbo) / 5


def test_chunking_does_not_change_the_estimate():
    vae, exact = ppca(exact_posterior=True)
    with torch.no_grad():
        vae.encoder.net[0].bias.add_(0.05)  # a near-exact proposal: weights vary, mildly
    x = exact.sample((7,))
    big = log_likelihood(vae, x, num_samples=400, memory_mb=512, seed=3)
    small = log_likelihood(vae, x, num_samples=400, memory_mb=0, seed=3, batch_size=3)
    # one particle per chunk, 3 rows per batch: other draws, the same estimate within noise
    assert torch.isfinite(small).all()
    torch.testing.assert_close(big, small, atol=0.06, rtol=0)  # ~6 standard errors
    torch.testing.assert_close(big, exact.log_prob(x).double(), atol=0.06, rtol=0)


def test_weights_are_per_data_point():
    """Each row has its own K weights: permuting the rows permutes the estimates."""
    vae, exact = ppca(exact_posterior=True)
    x = exact.sample((5,))
    lw = log_weights(vae, x, 4)
    assert lw.shape == (4, 5)
    perm = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(log_likelihood(vae, x[perm], 20), log_likelihood(vae, x, 20)[perm],
                               atol=1e-3, rtol=0)


def test_bernoulli_mnist_sized_model_runs_in_chunks():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=8, hidden=(32,)), (1, 8, 8))
    x = torch.bernoulli(torch.full((10, 64), 0.3))
    est = log_likelihood(vae, x, num_samples=500, memory_mb=1)
    elbo = evaluate_elbo(vae, x)["elbo"]
    assert est.shape == (10,) and torch.isfinite(est).all()
    assert float(est.mean()) > elbo  # the IS estimate is tighter than the ELBO
    assert float(est.mean()) < 0 and not math.isnan(float(est.mean()))
