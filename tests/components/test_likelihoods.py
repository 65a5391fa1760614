"""The decoder likelihoods p(x|z): normalisation, closed forms, shapes, data checks, and
training inside a VAE with every objective."""

import math

import scipy.stats

import numpy as np
import pyro
import pytest
import torch
from torch.nn import functional as F

import pyrovae
from pyrovae import VAE, VAEConfig
from pyrovae.config import LIKELIHOODS, OBJECTIVES
from pyrovae.data import from_arrays
from pyrovae.data.sources import RawData
from pyrovae.runtime.errors import DataError
from pyrovae.components.likelihoods import (LOG_SCALE_MIN, MIN_SCALE, ContinuousBernoulli,
                                 DiscretizedLogistic, make_likelihood)
from pyrovae.components.beta_binomial import BetaBinomialPixels
from pyrovae.objectives import has_differentiable_loss, make_elbo

D = 64
# every likelihood, gaussian-learned with both variances: (test id, VAEConfig keywords)
CONFIGS = {
    "bernoulli": dict(likelihood="bernoulli"),
    "continuous-bernoulli": dict(likelihood="continuous-bernoulli"),
    "gaussian": dict(likelihood="gaussian"),
    "gaussian-learned-pixel": dict(likelihood="gaussian-learned", variance="pixel"),
    "gaussian-learned-decoder": dict(likelihood="gaussian-learned", variance="decoder"),
    "laplace": dict(likelihood="laplace"),
    "discretized-logistic": dict(likelihood="discretized-logistic"),
    "beta-binomial": dict(likelihood="beta-binomial"),
}
BOUNDED = {"bernoulli", "continuous-bernoulli", "discretized-logistic",
           "beta-binomial"}  # mean in [0, 1]
EIGHT_BIT = {"discretized-logistic", "beta-binomial"}


def likelihood(case, dim=D, **kw):
    return make_likelihood(VAEConfig(**CONFIGS[case], **kw), dim)


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits in [0, 1] (values k/16) as float32 [1500, 64], and as 8-bit data."""
    grey = pyrovae.load_dataset("digits", binarize="none")
    to_u8 = lambda t: np.round(t.numpy() * 255).astype(np.uint8)  # noqa: E731
    eight_bit = from_arrays("digits8bit", RawData(to_u8(grey.train_x), to_u8(grey.test_x)))
    return grey, eight_bit


def suited_data(case, digits, n=32):
    """Data each likelihood is meant for: binary, grey in [0, 1], or 8-bit."""
    grey, eight_bit = digits
    if case == "bernoulli":
        return torch.bernoulli(grey.train_x[:n], generator=torch.Generator().manual_seed(0))
    if case in EIGHT_BIT:
        return eight_bit.train_x[:n]
    return grey.train_x[:n]


def test_every_configured_likelihood_is_built_and_tested():
    assert {c["likelihood"] for c in CONFIGS.values()} == set(LIKELIHOODS)
    for case, kw in CONFIGS.items():
        lik = likelihood(case)
        assert isinstance(lik, torch.nn.Module) and lik.name == kw["likelihood"]


# ---- discretized logistic --------------------------------------------------------------------

def grid():
    return torch.arange(256) / 255.0


def dl_log_prob_float64(x, loc, log_scale):
    """log P(x) of the discretized logistic by plain float64 differences of CDFs."""
    k, s = (x.double() * 255).round(), log_scale.double().exp()
    a = ((k + 0.5) / 255 - loc.double()) / s
    b = ((k - 0.5) / 255 - loc.double()) / s
    a, b = a.where(k < 255, math.inf), b.where(k > 0, -math.inf)  # the edge bins take the tails
    # F(a) - F(b), or (1 - F(b)) - (1 - F(a)) where both CDFs round to 1
    return torch.where(a + b > 0, torch.sigmoid(-b) - torch.sigmoid(-a),
                       torch.sigmoid(a) - torch.sigmoid(b)).log()


@pytest.mark.parametrize("loc,log_scale", [
    (0.5, -3.0), (0.1234, -8.0), (0.0, -8.0), (1.0, LOG_SCALE_MIN), (127.5 / 255, -8.0),
    (127.5 / 255, -12.0), (0.7, -20.0), (-5.0, -1.0), (6.0, 0.0), (0.3, 5.0), (0.5, 10.0),
    (1.3, 2.0)])
def test_discretized_logistic_probabilities_sum_to_one(loc, log_scale):
    """Over all 256 pixel values, for bins far wider and far narrower than the scale, locations
    at a bin edge (127.5/255) and outside [0, 1]."""
    d = DiscretizedLogistic(torch.tensor(loc), torch.tensor(log_scale))
    lp = d.log_prob(grid())
    assert torch.isfinite(lp).all() and (lp <= 0).all()
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(d.enumerate_support(), grid())


def test_discretized_logistic_matches_float64_bin_probabilities():
    """log [F(upper) - F(lower)] (edges taking the tails) against plain float64 arithmetic,
    wherever float64 can still represent the probability."""
    gen = torch.Generator().manual_seed(0)
    loc = torch.rand(400, 1, generator=gen) * 1.6 - 0.3
    log_scale = torch.rand(400, 1, generator=gen) * 10 - 8
    x = grid().expand(400, 256)
    got = DiscretizedLogistic(loc, log_scale).log_prob(x).double()
    ref = dl_log_prob_float64(x, loc, log_scale)
    ok = ref > -600
    assert ok.float().mean() > 0.3
    torch.testing.assert_close(got[ok], ref[ok], rtol=1e-5, atol=2e-4)


def test_discretized_logistic_wide_bins_equal_density_times_width():
    """Where a bin is tiny against the scale, P(x) -> logistic density(x) / 255 (PixelCNN++'s
    fallback), in the middle of the range and in the far tails alike."""
    loc, log_scale = torch.tensor(0.4), torch.tensor(1.0)
    for far in (0.0, -300.0, 300.0):
        x = grid()[1:-1]
        z = (x - (loc + far)) / log_scale.exp()
        log_pdf = -z - log_scale - 2 * F.softplus(-z)
        got = DiscretizedLogistic(loc + far, log_scale).log_prob(x)
        torch.testing.assert_close(got, log_pdf - math.log(255), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("loc,log_scale", [(0.3, -3.0), (-0.02, -3.5), (0.999, -6.0)])
def test_discretized_logistic_samples_follow_its_probabilities(loc, log_scale):
    torch.manual_seed(0)
    d = DiscretizedLogistic(torch.tensor(loc), torch.tensor(log_scale))
    n = 200_000
    x = d.sample((n,))
    assert x.shape == (n,) and d.support.check(x).all()
    freq = torch.bincount((x * 255).round().long(), minlength=256).double() / n
    p = d.log_prob(grid()).exp().double()
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-4).all()
    # the mean is the exact mean of the discretised distribution, not loc
    assert float(d.mean) == pytest.approx(float((grid() * p).sum()), abs=1e-6)
    assert abs(float(x.mean() - d.mean)) < 5 * float(x.std()) / math.sqrt(n)


def test_discretized_logistic_shapes_expand_and_support():
    d = DiscretizedLogistic(torch.zeros(3), torch.zeros(1))
    assert d.batch_shape == (3,) and d.event_shape == ()
    e = d.expand((4, 3))
    assert e.batch_shape == (4, 3)
    assert e.log_prob(torch.full((3,), 0.2)).shape == (4, 3)
    assert e.sample((2,)).shape == (2, 4, 3)
    assert e.enumerate_support().shape == (256, 4, 3)
    assert e.enumerate_support(expand=False).shape == (256, 1, 1)
    x = torch.tensor([0.0, 1 / 255, 254 / 255, 1.0, 0.5, -1 / 255, 1.01])
    assert d.support.check(x).tolist() == [True, True, True, True, False, False, False]
    with pytest.raises(ValueError):
        DiscretizedLogistic(torch.zeros(1), torch.zeros(1), validate_args=True).log_prob(
            torch.tensor([0.5]))


# ---- continuous Bernoulli --------------------------------------------------------------------

CB_LOGITS = [0.0, 1e-6, -1e-3, 0.05, 0.1, -0.1, 0.5, -3.0, 5.0, -20.0, 50.0, 100.0]


@pytest.mark.parametrize("logit", CB_LOGITS)
def test_continuous_bernoulli_integrates_to_one(logit):
    """Trapezoid rule on 200,001 points, for logits at and near 0 (the removable singularity of
    the normaliser), at the Taylor switch (0.1) and far out; mean and variance likewise."""
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    d = ContinuousBernoulli(logits=torch.tensor(logit, dtype=torch.float64))
    p = d.log_prob(x).exp()
    assert float(torch.trapezoid(p, x)) == pytest.approx(1.0, abs=1e-6)
    mean = torch.trapezoid(x * p, x)
    assert float(d.mean) == pytest.approx(float(mean), abs=1e-6)
    assert float(d.variance) == pytest.approx(float(torch.trapezoid((x - mean) ** 2 * p, x)),
                                              abs=1e-6)
    # the float32 computation agrees with float64
    d32 = ContinuousBernoulli(logits=torch.tensor(logit))
    torch.testing.assert_close(d32.log_prob(x.float()[::1000]).double(),
                               d.log_prob(x[::1000]), rtol=1e-5, atol=1e-5)
    assert float(d32.mean) == pytest.approx(float(d.mean), abs=1e-5)


def test_continuous_bernoulli_equals_torch_where_torch_is_accurate():
    logits = torch.linspace(-12, 12, 41, dtype=torch.float64)
    x = torch.rand(41, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours, ref = ContinuousBernoulli(logits=logits), torch.distributions.ContinuousBernoulli(
        logits=logits)
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.mean, ref.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.entropy(), ref.entropy(), rtol=1e-6, atol=1e-6)


def test_torch_continuous_bernoulli_is_wrong_for_large_logits():
    """Why ContinuousBernoulli overrides torch's: torch normalises with clamped probs, so in
    float32 its density integrates to ~0.8 at logit 20. If torch fixes this, this test fails
    and the override can go."""
    x = torch.linspace(0, 1, 100_001)
    p = torch.distributions.ContinuousBernoulli(logits=torch.tensor(20.0)).log_prob(x).exp()
    assert float(torch.trapezoid(p, x)) < 0.9


def test_continuous_bernoulli_extreme_logits_are_finite_with_gradients():
    logits = torch.tensor([-300.0, -50.0, -1e-8, 0.0, 1e-8, 0.1, 50.0, 300.0], requires_grad=True)
    d = ContinuousBernoulli(logits=logits)
    for v in (0.0, 0.5, 1.0):
        lp = d.log_prob(torch.full((8,), v))
        assert torch.isfinite(lp).all()
    (d.log_prob(torch.full((8,), 0.3)).sum() + d.mean.sum() + d.rsample().sum()).backward()
    assert torch.isfinite(logits.grad).all()
    assert ((d.mean >= 0) & (d.mean <= 1)).all()
    assert float(d.mean[0].detach()) == pytest.approx(1 / 300, rel=1e-4)  # 1/(1 - e^-l) - 1/l


@pytest.mark.parametrize("logit", [0.0, 0.05, -0.3, 4.0])
def test_continuous_bernoulli_gradients_are_exact(logit):
    """d log p(x)/dl = x - E[x] and dE[x]/dl = Var[x], also at l = 0 exactly (where a kink in
    |l| would give 0) and across the Taylor switch at |l| = 0.1."""
    lg = torch.tensor(logit, dtype=torch.float64, requires_grad=True)
    d = ContinuousBernoulli(logits=lg)
    (g_lp,) = torch.autograd.grad(d.log_prob(torch.tensor(0.3, dtype=torch.float64)), lg)
    (g_mean,) = torch.autograd.grad(d.mean, lg)
    assert float(g_lp) == pytest.approx(0.3 - float(d.mean.detach()), abs=1e-9)
    assert float(g_mean) == pytest.approx(float(d.variance.detach()), abs=1e-9)


@pytest.mark.parametrize("logit", [3.0, -0.05, -30.0])
def test_continuous_bernoulli_samples_follow_its_cdf(logit):
    torch.manual_seed(0)
    d = ContinuousBernoulli(logits=torch.tensor(logit))
    n = 100_000
    x = d.sample((n,)).sort().values
    assert ((x >= 0) & (x <= 1)).all()
    ks = (d.cdf(x) - torch.arange(1, n + 1) / n).abs().max()
    assert float(ks) < 1.63 / math.sqrt(n)  # the 1% critical value of Kolmogorov-Smirnov
    torch.testing.assert_close(d.icdf(d.cdf(x[::997])), x[::997], rtol=0, atol=1e-4)


# ---- closed forms by hand --------------------------------------------------------------------

def test_log_probs_equal_their_formulas_by_hand():
    torch.manual_seed(0)
    b, sigma = 5, 0.3
    x = torch.rand(b, D)
    out = torch.randn(b, 2 * D)
    mu, raw = out[:, :D], out[:, D:]

    def lp(case, o, data=x, **kw):
        return likelihood(case, sigma=sigma, **kw)(o).log_prob(data)

    gauss = lambda s: (-0.5 * ((x - mu) / s) ** 2 - torch.log(s * torch.ones(1))  # noqa: E731
                       - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(lp("gaussian", mu), gauss(torch.tensor(sigma)))
    torch.testing.assert_close(
        lp("laplace", mu), (-(x - mu).abs() / sigma - math.log(2 * sigma)).sum(-1))
    xb = torch.bernoulli(x)
    torch.testing.assert_close(lp("bernoulli", mu, xb), (xb * mu - F.softplus(mu)).sum(-1))
    torch.testing.assert_close(lp("continuous-bernoulli", mu),
                               (x * mu - torch.log(torch.expm1(mu) / mu)).sum(-1))
    # learned variance: per pixel, and from the decoder; both start at s = sigma
    pixel = likelihood("gaussian-learned-pixel", sigma=sigma)
    assert pixel(mu).base_dist.scale.expand(b, D).allclose(torch.tensor(sigma))
    with torch.no_grad():
        pixel.log_scale.copy_(torch.linspace(-3, 1, D))
    torch.testing.assert_close(pixel(mu).log_prob(x),
                               gauss(MIN_SCALE + torch.linspace(-3, 1, D).exp()))
    offset = math.log(math.expm1(sigma - MIN_SCALE))  # softplus(0 + offset) + floor = sigma
    torch.testing.assert_close(lp("gaussian-learned-decoder", out),
                               gauss(MIN_SCALE + F.softplus(raw + offset)))
    decoder = likelihood("gaussian-learned-decoder", sigma=sigma)
    torch.testing.assert_close(decoder.scale(torch.zeros(b, 2 * D)), torch.full((b, D), sigma))
    # discretized logistic: float64 bin probabilities, the edges taking the tails
    x8 = (x * 255).round() / 255
    x8[0, :3] = torch.tensor([0.0, 1.0, 1 / 255])
    loc, ls = x8 + 0.05 * mu, raw * 3 - 4  # near the data, so float64 can hold P(x)
    torch.testing.assert_close(
        lp("discretized-logistic", torch.cat([loc, ls], -1), x8).double(),
        dl_log_prob_float64(x8, loc, ls.clamp(min=LOG_SCALE_MIN)).sum(-1), rtol=1e-6, atol=1e-3)
    assert (ls < LOG_SCALE_MIN).any()  # the floor was exercised
    # beta-binomial: scipy's pmf of k = 255 x under n = 255, a, b = softplus(out) + floor
    a, b_ = (F.softplus(t.double()) + 1e-4 for t in (mu, raw))
    expected = scipy.stats.betabinom.logpmf((x8.double() * 255).round().numpy(), 255,
                                            a.numpy(), b_.numpy()).sum(-1)
    torch.testing.assert_close(lp("beta-binomial", out, x8).double(),
                               torch.from_numpy(expected), rtol=1e-5, atol=2e-3)


@pytest.mark.parametrize("a,b", [(0.02, 0.03), (0.5, 0.5), (3.0, 40.0), (1e-4, 200.0)])
def test_beta_binomial_sums_to_one_and_is_u_shaped_below_one(a, b):
    """The 256 probabilities of BetaBinomial(255, a, b) sum to 1; with a, b < 1 they are
    U-shaped, and with small a, b the mass sits on the two edges (a black-or-white pixel),
    which one logistic cannot express."""
    d = BetaBinomialPixels(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    p = d.log_prob(d.enumerate_support()).exp()
    assert p.shape == (256,) and float(p.sum()) == pytest.approx(1.0, abs=1e-9)
    if a < 1 and b < 1:  # U-shaped; for small a, b nearly all the mass is on the edges
        assert p[0] > p[1] and p[-1] > p[-2] and p[1:-1].argmin() not in (0, 253)
    if a < 0.1 and b < 0.1:
        assert p[0] + p[-1] > 0.8


# ---- shapes and means ------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CONFIGS))
def test_shapes_samples_and_means(case):
    torch.manual_seed(0)
    lik = likelihood(case)
    k, b, p = lik.params_per_pixel, 5, 3
    out = torch.randn(b, k * D)
    x = lik(out).sample()
    assert x.shape == (b, D)
    lik.check(x, "samples")  # a likelihood's own samples pass its data check
    d = lik(out)
    assert d.batch_shape == (b,) and d.event_shape == (D,)
    assert d.log_prob(x).shape == (b,)
    # a leading particle dimension (vectorised num_particles), data broadcast against it
    dp = lik(torch.randn(p, b, k * D))
    assert dp.batch_shape == (p, b) and dp.log_prob(x).shape == (p, b)
    assert d.expand((p, b)).log_prob(x).shape == (p, b)
    assert torch.isfinite(dp.log_prob(x)).all()
    # E[x|z]: [..., D], in [0, 1] for bounded data even for extreme outputs
    for o in (out, 100 * out, torch.randn(p, b, k * D)):
        mean = lik.mean(o)
        assert mean.shape == o.shape[:-1] + (D,) and torch.isfinite(mean).all()
        if case in BOUNDED:
            assert ((mean >= 0) & (mean <= 1)).all()
        else:
            assert torch.equal(mean, o[..., :D])


@pytest.mark.parametrize("case", ["continuous-bernoulli", "discretized-logistic",
                                  "beta-binomial"])
def test_means_are_the_distributions_means(case):
    """E[x|z] is the likelihood's mean (not sigmoid(out) or loc), checked by sampling."""
    torch.manual_seed(1)
    lik = likelihood(case, dim=4)
    out = torch.tensor([[-1.0, 0.05, 0.9, 1.1, -4.0, -3.0, -2.0, 0.5]])
    n = 100_000
    draws = lik(out.expand(n, -1)).sample()
    se = draws.std(0) / math.sqrt(n)
    assert ((draws.mean(0) - lik.mean(out)[0]).abs() < 5 * se + 1e-6).all()


# ---- learned variance ------------------------------------------------------------------------

def test_learned_pixel_variance_is_a_parameter_with_gradients():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), likelihood="gaussian-learned",
                        variance="pixel"), (1, 8, 8))
    lik = vae.likelihood
    assert lik.params_per_pixel == 1 and lik.log_scale.shape == (64,)
    assert any(p is lik.log_scale for p in vae.parameters())
    assert "likelihood.log_scale" in vae.state_dict()
    x = torch.rand(10, 64)
    make_elbo("meanfield").differentiable_loss(vae.model, vae.guide, x).backward()
    grad = lik.log_scale.grad
    assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all()
    # it moves with the module
    vae.double()
    assert lik.log_scale.dtype == torch.float64


def test_learned_decoder_variance_doubles_the_decoder_output():
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), likelihood="gaussian-learned",
                        variance="decoder"), (1, 8, 8))
    assert vae.likelihood.params_per_pixel == 2
    assert vae.decoder(torch.zeros(5, 3)).shape == (5, 128)
    assert list(vae.likelihood.parameters()) == []
    conv = VAE(VAEConfig(latent_dim=3, network="conv", channels=(4,), likelihood="gaussian-learned",
                         variance="decoder"), (1, 8, 8))
    assert conv.decoder(torch.zeros(5, 3)).shape == (5, 128)


def test_learned_variance_is_floored():
    """Outputs asking for s -> 0 get s = MIN_SCALE: log p(x|z) per pixel stays bounded."""
    lik = likelihood("gaussian-learned-decoder", dim=4)
    out = torch.cat([torch.zeros(1, 4), torch.full((1, 4), -1e4)], -1)
    assert torch.allclose(lik.scale(out), torch.tensor(MIN_SCALE))
    best = lik(out).log_prob(torch.zeros(1, 4))
    assert float(best) == pytest.approx(4 * (-math.log(MIN_SCALE) - 0.5 * math.log(2 * math.pi)),
                                        rel=1e-5)


# ---- data checks -----------------------------------------------------------------------------

def _grey(n=20):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(0))


def _nan():
    x = _grey()
    x[3, 5] = float("nan")
    return x


CHECK_ERRORS = [
    *[(case, _nan, ("NaN", "1 examples", "clean")) for case in CONFIGS],
    ("bernoulli", _grey, ("bernoulli", "binarize", "continuous-bernoulli", "gaussian")),
    ("bernoulli", lambda: _grey() * 255, ("bernoulli", "binarize", "[0, 1]", "gaussian")),
    ("continuous-bernoulli", lambda: _grey() * 255, ("[0, 1]", "divide by 255", "gaussian")),
    ("continuous-bernoulli", lambda: _grey() - 0.5, ("continuous-bernoulli", "[0, 1]")),
    ("discretized-logistic", _grey, ("off the 8-bit grid", "uint8", 'binarize = "none"')),
    ("discretized-logistic", lambda: torch.round(_grey() * 16) / 16,
     ("off the 8-bit grid", "e.g. 0.", "uint8", "continuous-bernoulli")),
    ("discretized-logistic", lambda: torch.round(_grey() * 255),
     ("k/255", "[0, 255]", "uint8", 'binarize = "none"')),
    ("beta-binomial", _grey, ("beta-binomial", "off the 8-bit grid", "uint8")),
    ("beta-binomial", lambda: torch.round(_grey() * 255), ("beta-binomial", "k/255", "[0, 255]")),
]


@pytest.mark.parametrize("case,make,words", CHECK_ERRORS,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CHECK_ERRORS)])
def test_check_refuses_unsuited_data_in_one_line(case, make, words):
    with pytest.raises(DataError) as info:
        likelihood(case).check(make(), "my data")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("my data")
    for word in words:
        assert word in msg, (word, msg)


@pytest.mark.parametrize("case", list(CONFIGS))
def test_check_accepts_suited_data(case, digits):
    likelihood(case).check(suited_data(case, digits, n=1500), "digits")
    if case not in BOUNDED:  # any real values
        likelihood(case).check(torch.randn(20, D) * 50, "real data")


def test_trainer_refuses_and_accepts_8bit_data(digits):
    """The trainer's data check runs likelihood.check: digits (k/16) are refused, the same
    images as uint8 are accepted and train."""
    grey, eight_bit = digits
    cfg = VAEConfig(latent_dim=2, hidden=(8,), likelihood="discretized-logistic")
    with pytest.raises(DataError, match="8-bit"):
        pyrovae.train(cfg, grey, epochs=1, batch_size=100, progress=False)
    small = from_arrays("digits8bit", RawData((eight_bit.train_x[:200] * 255).round().to(
        torch.uint8).numpy(), (eight_bit.test_x[:50] * 255).round().to(torch.uint8).numpy()))
    assert torch.equal(small.train_x, eight_bit.train_x[:200])
    run = pyrovae.train(cfg, small, epochs=1, batch_size=50, progress=False, fast=False)
    assert math.isfinite(run.history[-1]["test_elbo"])


# ---- training --------------------------------------------------------------------------------

@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("case", list(CONFIGS))
def test_every_likelihood_trains_with_every_objective(case, objective, digits):
    torch.manual_seed(0)
    x = suited_data(case, digits)
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), **CONFIGS[case]), (1, 8, 8))
    elbo = make_elbo(objective)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for step in range(2):
        opt.zero_grad()
        with pyro.validation_enabled(step == 0):  # as the trainer: Pyro's checks on step 1
            if has_differentiable_loss(elbo):
                loss = elbo.differentiable_loss(vae.model, vae.guide, x, n_data=1500)
                loss.backward()
                loss = float(loss.detach())
            else:
                loss = elbo.loss_and_grads(vae.model, vae.guide, x, n_data=1500)
        assert math.isfinite(loss)
        for name, p in vae.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert sum(float(p.grad.abs().sum()) for p in vae.parameters()) > 0
        opt.step()
    assert all(torch.isfinite(p).all() for p in vae.parameters())


@pytest.mark.parametrize("case", list(CONFIGS))
def test_vectorised_particles(case, digits):
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), **CONFIGS[case]), (1, 8, 8))
    loss = make_elbo("trace", num_particles=4).differentiable_loss(vae.model, vae.guide,
                                                                    suited_data(case, digits))
    assert torch.isfinite(loss)


# ---- the Bernoulli image's two-pass log-density ----------------------------------------------

def test_bernoulli_image_equals_torch_bernoulli_in_float64_with_gradients():
    """bernoulli_log_prob's sum_d (x_d - 1) l_d - softplus(-l_d) is torch's per-pixel
    Bernoulli summed over pixels: values and gradients, broadcasting x [B, D] against
    l [K, B, D], at logits from -100 to 100 (both of softplus's regimes, either side of torch's
    default threshold 20)."""
    from pyrovae.components.distributions import bernoulli_log_prob

    torch.manual_seed(0)
    logits = torch.cat([torch.randn(3, 4, 20, dtype=torch.float64) * 8,
                        torch.tensor([-100., -30, -20.5, -20, -19.5, -1e-3, 0, 1e-3, 19.5, 20,
                                      20.5, 30, 100, 5, -5, 2, -2, 0.5, -0.5, 1],
                                     dtype=torch.float64).expand(3, 1, 20)], dim=1)
    logits.requires_grad_(True)
    x = (torch.rand(5, 20) < 0.4).double()
    torch_ = pyro.distributions.Bernoulli(logits=logits).to_event(1)
    a, b = bernoulli_log_prob(logits, x), torch_.log_prob(x)
    assert a.shape == b.shape == (3, 5)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ga, = torch.autograd.grad(a.sum(), logits)
    gb, = torch.autograd.grad(b.sum(), logits)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-12)
    # x = 1 at l = 100 and x = 0 at l = -100 are certain: log p = 0 to float precision
    edge = bernoulli_log_prob(torch.tensor([[100.0, -100.0]]), torch.tensor([[1.0, 0.0]]))
    assert abs(edge.item()) < 1e-30


def test_bernoulli_image_takes_the_two_pass_sum_above_its_size_threshold():
    """Above DIRECT_ENTRIES the likelihood's log_prob is bernoulli_log_prob (float32 to
    rounding of torch's sum), at or below it torch's own, bit for bit."""
    from pyrovae.components import distributions as d

    torch.manual_seed(1)
    x = (torch.rand(50, 784) < 0.3).float()
    big = torch.randn(60, 50, 784) * 6                   # 2,352,000 entries > 2^21
    small = big[:1]
    torch_ = pyro.distributions.Bernoulli
    lik = pyrovae.components.likelihoods.BernoulliLikelihood()
    assert torch.equal(lik(big).log_prob(x), d.bernoulli_log_prob(big, x))
    torch.testing.assert_close(lik(big).log_prob(x), torch_(logits=big).to_event(1).log_prob(x))
    assert torch.equal(lik(small).log_prob(x), torch_(logits=small).to_event(1).log_prob(x))


def test_bernoulli_image_keeps_the_base_distribution_and_expands():
    """Sampling, the mean, expand (Pyro's plates) and a further to_event stay those of
    Bernoulli(logits).to_event(1); expand keeps the fast log_prob."""
    from pyrovae.components.distributions import BernoulliImage, bernoulli_image

    logits = torch.randn(4, 6)
    d = bernoulli_image(logits)
    assert torch.equal(d.mean, torch.sigmoid(logits))
    wide = d.expand(torch.Size([2, 4]))
    assert isinstance(wide, BernoulliImage) and wide.batch_shape == (2, 4)
    x = (torch.rand(4, 6) < 0.5).float()
    ref = pyro.distributions.Bernoulli(logits=logits).to_event(2).log_prob(x)
    torch.testing.assert_close(d.to_event(1).log_prob(x), ref)
    assert d.sample().shape == (4, 6)
