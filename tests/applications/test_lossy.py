"""The lossy latent codec (pyrovae/applications/compression/lossy.py) on a tiny digits VAE."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

import pyrovae
from pyrovae import KLConfig, PriorConfig, VAEConfig
from pyrovae.applications.compression.lossy import (decode_latents, decode_symbols,
                                                    encode_latents, quantize)
from pyrovae.applications.compression.quality import psnr, ssim
from pyrovae.runtime.errors import PyroVAEError


@pytest.fixture(scope="module")
def data():
    return pyrovae.load_dataset("digits")


@pytest.fixture(scope="module")
def run(data):
    cfg = VAEConfig(latent_dim=4, hidden=(32,), likelihood="gaussian", kl=KLConfig(beta=1.0))
    return pyrovae.train(cfg, data, epochs=1, seed=0, lr=1e-2)


def test_round_trip_decodes_the_quantised_latents(run, data):
    x = data.test_x[:100]
    step = 0.1
    words, stats = encode_latents(run.model, x, step, batch_size=32)
    assert words.dtype == np.uint32 and stats.symbols.shape == (100, 4)
    k = np.concatenate(list(decode_symbols(run.model, words, step, 100, 4, batch_size=32)))
    assert np.array_equal(k, stats.symbols)
    assert np.array_equal(k, quantize(run.model, x, step).astype(np.int32))
    x_hat = decode_latents(run.model, words, step, 100, 4, batch_size=32)
    z = torch.as_tensor(stats.symbols, dtype=torch.float32) * step
    with torch.no_grad():
        expected = run.model.decode(z)
    assert x_hat.shape == (100, 64) and torch.equal(x_hat, expected)
    assert not run.model.training


def test_coded_size_is_the_ideal_size_plus_a_few_bits(run, data):
    step = 0.05
    x = data.test_x
    words, stats = encode_latents(run.model, x, step, batch_size=64)
    k = stats.symbols.astype(np.float64)
    # known answer: the mass of N(0, 1) on [(k - 1/2) S, (k + 1/2) S], from scipy
    known = -np.log2(norm.cdf((k + 0.5) * step) - norm.cdf((k - 0.5) * step)).sum()
    assert stats.ideal_bits == pytest.approx(known, rel=1e-9)
    # the coder: the final state (<= 64 bits) and one word per batch boundary at most
    assert known - 1 <= stats.bits <= known + 64 + 32 * 5 + 1e-3 * known
    assert stats.bits == 32 * words.size
    assert stats.bits_per_pixel == stats.bits / (x.shape[0] * 64)


def test_smaller_step_gives_higher_rate_and_lower_error(run, data):
    x = data.test_x
    with torch.no_grad():
        unquantised = run.model.reconstruct(x)
    rates, errors, drift = [], [], []
    for step in (1.5, 0.3, 0.01):
        words, stats = encode_latents(run.model, x, step)
        x_hat = decode_latents(run.model, words, step, stats.count, stats.latent_dim)
        rates.append(stats.bits_per_pixel)
        errors.append(float(((x_hat - x) ** 2).mean()))
        drift.append(float(((x_hat - unquantised) ** 2).mean()))
    assert rates[0] < rates[1] < rates[2]
    assert errors[0] > errors[1] > errors[2]
    assert drift[0] > 10 * drift[1] > 100 * drift[2]


def test_quality_measures():
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x) == float("inf")
    assert psnr(x, x + 0.1) == pytest.approx(20.0)  # MSE = 0.01
    assert ssim(x, x, (8, 8)) == pytest.approx(1.0)
    assert ssim(x, torch.rand(5, 64), (8, 8)) < 0.5


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def test_refuses_a_mixture_prior(data):
    cfg = VAEConfig(latent_dim=4, hidden=(32,), likelihood="continuous-bernoulli",
                    prior=PriorConfig(name="mog"), elbo="trace")
    mog = pyrovae.train(cfg, data, epochs=1, seed=0)
    with pytest.raises(PyroVAEError) as excinfo:
        encode_latents(mog.model, data.test_x[:4], 0.1)
    assert "Gaussian prior" in one_line(excinfo) and "Mixture" in str(excinfo.value)


def test_refuses_a_model_without_an_encoder(run, data):
    class DecoderOnly(torch.nn.Module):
        capabilities = ("decoder", "prior")

        def decode(self, z):
            return z

        def prior(self):
            return run.model.prior()

    with pytest.raises(PyroVAEError) as excinfo:
        encode_latents(DecoderOnly(), data.test_x[:4], 0.1)
    assert "encode" in one_line(excinfo)


def test_refuses_bad_steps_and_out_of_range_latents(run, data):
    for step in (0.0, -1.0, float("nan"), 1e-9):
        with pytest.raises(PyroVAEError) as excinfo:
            encode_latents(run.model, data.test_x[:4], step)
        one_line(excinfo)
    with pytest.raises(PyroVAEError) as excinfo:
        encode_latents(run.model, torch.full((2, 64), 1e6), 0.1)
    assert "beyond the coded range" in one_line(excinfo)
