"""Bits per dimension (pyrovae/evaluation/bits.py): nats / (D ln 2), reported next to nats for
likelihoods on discrete data only, checked on a model whose likelihood is known exactly."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import pyrovae
from pyrovae import VAE, VAEConfig, evaluate_run, load_dataset
from pyrovae.data import RawData, from_arrays
from pyrovae.evaluation.bits import bits_per_dim, bpd_keys, discrete_dim
from pyrovae.components.nets.mlp import MIN_SCALE
from pyrovae.runtime.registry import LIKELIHOODS

D = 64


def test_bits_per_dim_is_nats_over_d_ln2():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0, abs=1e-15)
    assert bits_per_dim(96.49, 784) == pytest.approx(96.49 / 784 / 0.6931471805599453)
    assert bits_per_dim(0.0, 3) == 0.0


def test_only_likelihoods_on_discrete_data_have_bits():
    assert set(LIKELIHOODS.where(discrete=True)) == {"bernoulli", "discretized-logistic",
                                                     "beta-binomial"}
    for name in LIKELIHOODS:
        vae = VAE(VAEConfig(latent_dim=2, hidden=(4,), likelihood=name), (1, 4, 4))
        assert discrete_dim(vae) == (16 if name in LIKELIHOODS.where(discrete=True) else None)
        assert bool(bpd_keys(vae, test_bpd=1.0)) == (discrete_dim(vae) is not None)


def test_a_module_of_your_own_declares_discrete_dim():
    assert discrete_dim(SimpleNamespace(discrete_dim=10)) == 10
    assert bpd_keys(SimpleNamespace(), test_bpd=5.0) == {}
    assert bpd_keys(SimpleNamespace(discrete_dim=10), a=10 * math.log(2)) == {"a": pytest.approx(1)}


def coin_flip_vae(likelihood="bernoulli") -> VAE:
    """A VAE whose decoder outputs logits 0 (every pixel a fair coin: log p(x|z) = -D ln 2
    for every x and z) and whose encoder outputs q(z|x) = N(0, 1) = p(z): ELBO = log p(x) =
    -D ln 2 exactly, i.e. 1 bit per dimension."""
    vae = VAE(VAEConfig(latent_dim=3, hidden=(8,), likelihood=likelihood), (D,))
    dec = [m for m in vae.decoder.modules() if isinstance(m, nn.Linear)][-1]
    enc = [m for m in vae.encoder.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        for p in (dec.weight, dec.bias, enc.weight, enc.bias):
            p.zero_()
        raw = math.log(math.expm1(1.0 - MIN_SCALE))  # softplus(raw) + MIN_SCALE = 1
        enc.bias[3:] = raw
        assert torch.allclose(F.softplus(enc.bias[3:]) + MIN_SCALE, torch.ones(3))
    return vae


@pytest.fixture(scope="module")
def binary_data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (40, D)).astype(np.float32)
    return from_arrays("coins", RawData(x[:30], x[30:]), "none")


def test_known_case_one_bit_per_dimension(binary_data):
    result = evaluate_run(SimpleNamespace(vae=coin_flip_vae()), binary_data, nll_samples=50,
                          progress=False)
    assert result["test_elbo"] == pytest.approx(-D * math.log(2), abs=1e-4)
    assert result["test_nll"] == pytest.approx(D * math.log(2), abs=1e-4)
    assert result["test_bpd"] == pytest.approx(1.0, abs=1e-6)
    assert result["test_nll_bpd"] == pytest.approx(1.0, abs=1e-6)
    assert result["test_nll_bpd"] == pytest.approx(result["test_nll"] / (D * math.log(2)))


def test_no_bits_for_a_density_on_continuous_data(binary_data):
    result = evaluate_run(SimpleNamespace(vae=coin_flip_vae("gaussian")), binary_data,
                          nll_samples=30, progress=False)
    assert "test_nll" in result and "test_bpd" not in result and "test_nll_bpd" not in result


def test_training_metrics_have_test_bpd(one_thread):
    data = load_dataset("digits", binarize="static", train_size=256, test_size=64)
    run = pyrovae.train(VAEConfig(latent_dim=2, hidden=(16,)), data, epochs=1, batch_size=64,
                        progress=False)
    metrics = run.metrics
    assert metrics["test_bpd"] == pytest.approx(-metrics["test_elbo"] / (64 * math.log(2)))
    gauss = pyrovae.train(VAEConfig(latent_dim=2, hidden=(16,), likelihood="gaussian"),
                          load_dataset("digits", train_size=256, test_size=64), epochs=1,
                          batch_size=64, progress=False)
    assert "test_bpd" not in gauss.metrics and "test_elbo" in gauss.metrics
