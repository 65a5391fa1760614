"""Known answers for the generic, trace-based evaluation (pyrovae/runtime/traces.py and
what is built on it): a user-written two-layer linear-Gaussian model whose log p(x), exact
posterior and ELBO are closed-form; the SSVAE's importance weights (bounds, independent draws
per particle, common noise only across the enumerated classes, Rao-Blackwellisation); and the
refusal of a site outside the data plate.

Two-layer model:   z2 ~ N(0, I_L2),  z1 | z2 ~ N(A z2 + a, S1),  x | z1 ~ N(B z1 + b, S2)
so that            x ~ N(B a + b, B (A A^T + S1) B^T + S2).
Written as v = (z2, z1, x) = M eps + m with eps ~ N(0, I): the joint Gaussian of v is
N(m, M M^T), and its posterior given x is the usual Gaussian conditioning (Schur complement).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from pyrovae import SSVAE, SSVAEConfig
from pyrovae.evaluation import elbo_terms, evaluate_elbo, log_likelihood, log_weights
from pyrovae.evaluation.likelihood import reduce_log_weights
from pyrovae.runtime.traces import log_mean_exp, point_traces
from pyrovae.runtime.interface import InterfaceError
from pyrovae.runtime.rng import seeded

pytestmark = pytest.mark.usefixtures("one_thread")

from tests.support.linear_gaussian import (F64, D, L1, L2, SHIFT, INFLATE, Posterior, TwoLayer, _data_plate,
                             _params, closed_form_marginal)


@pytest.fixture(scope="module")
def lg():
    p = _params(0)
    exact = closed_form_marginal(p)
    gen = torch.Generator().manual_seed(1)
    x = exact.loc + torch.randn(400, D, generator=gen, dtype=F64) @ exact.scale_tril.T
    return p, exact, x


def test_joint_gaussian_matches_the_model_and_the_posterior_is_exact(lg):
    """Sanity of the references themselves: the joint's x block is the closed-form p(x), and
    p(x) p(z|x) = p(x, z) evaluated with the model's own factors."""
    p, exact, x = lg
    post = Posterior(p)
    torch.testing.assert_close(post.x_block, exact.covariance_matrix)
    # z2 is independent of x given z1: the conditional's slope on x vanishes
    k2, k1 = post.K[:L2], post.K[L2:]
    torch.testing.assert_close(k2 - post.G @ k1, torch.zeros(L2, D, dtype=F64), atol=1e-10,
                               rtol=0)
    z = post.mvn(x[:20]).sample()
    z2, z1 = z[:, :L2], z[:, L2:]
    joint = (Normal(0.0, 1.0).log_prob(z2).sum(-1)
             + Normal(z2 @ p["A"].T + p["a"], p["s1"]).log_prob(z1).sum(-1)
             + Normal(z1 @ p["B"].T + p["b"], p["s2"]).log_prob(x[:20]).sum(-1))
    torch.testing.assert_close(exact.log_prob(x[:20]) + post.mvn(x[:20]).log_prob(z), joint)


@pytest.mark.parametrize("k", [10, 50])
def test_exact_posterior_guide_gives_the_exact_log_likelihood(lg, k):
    p, exact, x = lg
    m = TwoLayer(p)
    x = x[:30]
    est = log_likelihood(m, x, num_samples=k, batch_size=16)
    assert est.dtype == F64 and est.shape == (30,)
    err = (est - exact.log_prob(x)).abs().max()
    assert err < 1e-4, float(err)
    # every weight is p(x): zero variance across the draws, and the draws do differ
    t = point_traces(m, x, particles=k)
    assert sorted(t.sampled) == ["z1", "z2"] and t.observed == ["x"] and not t.enumerated
    assert t.lp_model["z1"].shape == (k, 30)
    z1 = t.guide.nodes["z1"]["value"]
    assert z1.shape == (k, 30, L1) and z1.std(dim=0).min() > 0.05
    lw = log_weights(m, x, k)
    assert lw.shape == (k, 30) and float(lw.std(dim=0).max()) < 1e-8
    torch.testing.assert_close(lw, exact.log_prob(x).expand(k, 30), atol=1e-8, rtol=0)


def _is_with_se(m, x, k, seed, enumerate="all"):
    """IS log p(x) [N] and its delta-method standard error std(w) / (sqrt(K) mean(w))."""
    def reduce(lw):
        w = torch.exp(lw - lw.max(dim=0).values)
        return log_mean_exp(lw), w.std(dim=0) / (math.sqrt(lw.shape[0]) * w.mean(dim=0))
    parts = reduce_log_weights(m, x, reduce, num_samples=k, batch_size=20, seed=seed,
                               enumerate=enumerate)
    return torch.cat([a for a, _ in parts]), torch.cat([s for _, s in parts])


def test_approximate_guide_converges_to_the_closed_form_as_k_grows(lg):
    p, exact, x = lg
    m = TwoLayer(p, shift=SHIFT, inflate=INFLATE)
    x = x[:20]
    log_px = exact.log_prob(x)
    # K = 5, repeated with 10 seeds: its bias (about -0.3 here) is ~5 of its SEs below 0
    err5 = torch.stack([_is_with_se(m, x, 5, seed=s)[0] - log_px for s in range(10)])
    est5000, se = _is_with_se(m, x, 5000, seed=3)
    err5000 = est5000 - log_px
    assert err5.abs().mean() > 3 * err5000.abs().mean(), (err5.abs().mean(), err5000.abs().mean())
    assert float(err5.mean()) < 0  # the IWAE bound at small K is low on average
    assert float(err5000.abs().mean()) < 0.05
    # within a few standard errors, point by point and on average (bias ~ se^2 / 2 only)
    assert (err5000.abs() < 4 * se + 1e-6).all(), (err5000, se)
    assert abs(float(err5000.mean())) < 4 * float(se.pow(2).sum().sqrt()) / len(se)
    # the same draws as log_likelihood's
    torch.testing.assert_close(log_likelihood(m, x, 5000, batch_size=20, seed=3), est5000)


def test_elbo_of_the_approximate_guide_is_log_px_minus_the_closed_form_kl(lg):
    """E[ELBO(x)] = log p(x) - KL(q(z|x) || p(z|x)); both Gaussians, so the KL is closed form
    (and here the same for every x)."""
    p, exact, x = lg
    m = TwoLayer(p, shift=SHIFT, inflate=INFLATE)
    log_px = exact.log_prob(x)
    kl = kl_divergence(m.guide_joint(x), Posterior(p).mvn(x))
    assert float(kl.min()) > 0.3
    expected = log_px - kl                                             # [N]
    result = evaluate_elbo(m, x, batch_size=128, seed=5)
    assert result["kl_estimator"] == "monte-carlo"
    assert result["elbo"] < float(log_px.mean())
    # the residual ELBO_i - (log p(x_i) - KL) has mean zero; its SE is the MC noise alone
    with seeded(6):
        resid = elbo_terms(m, x, particles=8).elbo - expected          # [8, N]
    se = float(resid.std()) / math.sqrt(resid.numel())
    assert abs(float(resid.mean())) < 4 * se, (float(resid.mean()), se)
    assert abs(result["elbo"] - float(expected.mean())) < 4 * float(resid.std()) / math.sqrt(
        len(x)), (result["elbo"], float(expected.mean()))
    # the exact guide's ELBO is log p(x) exactly, draw by draw
    exact_terms = elbo_terms(TwoLayer(p), x[:10], particles=4)
    torch.testing.assert_close(exact_terms.elbo, log_px[:10].expand(4, 10), atol=1e-8, rtol=0)


def test_elbo_terms_match_a_hand_computation_at_the_guides_draws(lg):
    p, _, x = lg
    m = TwoLayer(p, shift=SHIFT, inflate=INFLATE)
    x = x[:12]
    pyro.set_rng_seed(11)
    t = point_traces(m, x, enumerate="all")
    pyro.set_rng_seed(11)
    terms = elbo_terms(m, x)  # analytic_kl=True asked, but two sampled sites: Monte Carlo
    z1, z2 = t.guide.nodes["z1"]["value"], t.guide.nodes["z2"]["value"]
    assert z1.shape == (12, L1) and z2.shape == (12, L2)
    post = Posterior(p)
    mean = post.mean(x)
    m2, m1 = mean[:, :L2], mean[:, L2:]
    log_px_z = Normal(z1 @ p["B"].T + p["b"], p["s2"]).log_prob(x).sum(-1)
    log_pz1 = Normal(z2 @ p["A"].T + p["a"], p["s1"]).log_prob(z1).sum(-1)
    log_pz2 = Normal(0.0, 1.0).log_prob(z2).sum(-1)
    log_qz1 = MultivariateNormal(m1 + SHIFT, scale_tril=INFLATE * post.tril1).log_prob(z1)
    log_qz2 = MultivariateNormal(m2 + (z1 - m1) @ post.G.T,
                                 scale_tril=INFLATE * post.tril2).log_prob(z2)
    hand = log_px_z + log_pz1 + log_pz2 - log_qz1 - log_qz2
    torch.testing.assert_close(terms.log_px_z, log_px_z)
    torch.testing.assert_close(terms.kl, log_qz1 + log_qz2 - log_pz1 - log_pz2)
    torch.testing.assert_close(terms.elbo, hand)
    assert terms.analytic_kl is False
    torch.testing.assert_close(t.log_weight(), hand)  # one draw: log w is the ELBO's integrand
    for name, want in (("x", log_px_z), ("z1", log_pz1), ("z2", log_pz2)):
        torch.testing.assert_close(t.lp_model[name], want, msg=name)
    torch.testing.assert_close(t.lp_guide["z1"], log_qz1)
    torch.testing.assert_close(t.lp_guide["z2"], log_qz2)
    assert evaluate_elbo(m, x)["kl_estimator"] == "monte-carlo"


# ---- the SSVAE -------------------------------------------------------------------------------

C, DS = 3, 12


def tiny_ssvae(**kw) -> SSVAE:
    cfg = SSVAEConfig(**{"latent_dim": 2, "hidden": (5,), "classifier": (4,), "num_classes": C,
                         "labels": C, **kw})
    torch.manual_seed(0)
    return SSVAE(cfg, (DS,)).double()


@pytest.fixture(scope="module")
def xb():
    gen = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.rand(40, DS, generator=gen, dtype=F64), generator=gen)


@torch.no_grad()
def quadrature_log_px(m: SSVAE, x, lim: float = 7.0, n: int = 281) -> torch.Tensor:
    """log p(x) = log sum_y p(y) int N(z; 0, I) p(x|y,z) dz on a grid over z in R^2 (the
    integrand is smooth and negligible beyond |z| = 7: a Riemann sum to ~1e-11)."""
    g = torch.linspace(-lim, lim, n, dtype=F64)
    zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    log_pz = Normal(0.0, 1.0).log_prob(zz).sum(-1)
    terms = []
    for c in range(C):
        logits = m.decoder(zz, torch.full((zz.shape[0],), c))
        # Bernoulli: log p(x|z) = sum_d x_d l_d - softplus(l_d), for every x and z at once
        log_px_z = x @ logits.T - torch.nn.functional.softplus(logits).sum(-1)
        terms.append(log_px_z + log_pz - math.log(C))                   # [N, G]
    return torch.logsumexp(torch.cat(terms, 1), 1) + 2 * math.log(float(g[1] - g[0]))


def test_ssvae_importance_sampled_nll_is_below_the_negative_elbo(xb):
    m = tiny_ssvae()
    nll = -log_likelihood(m, xb, num_samples=300, batch_size=20, seed=1)
    result = evaluate_elbo(m, xb, seed=2)
    neg_elbo = -result["elbo"]
    # the ELBO's own MC noise at fixed points: spread of repeated one-draw ELBOs per point
    with seeded(4):
        draws = elbo_terms(m, xb, particles=50).elbo                    # [50, N]
    mc_se = float(draws.std(dim=0).pow(2).mean().sqrt()) / math.sqrt(xb.shape[0])
    assert float(nll.mean()) <= neg_elbo + 3 * mc_se, (float(nll.mean()), neg_elbo, mc_se)
    # and point by point against the ELBO's expectation (mean of 50 draws)
    elbo_i = draws.mean(dim=0)
    se_i = draws.std(dim=0) / math.sqrt(50)
    assert (-nll >= elbo_i - 4 * se_i).all()
    assert abs(float(elbo_i.mean()) - result["elbo"]) < 4 * mc_se
    # against the exact log p(x) (quadrature): ELBO < IS(K) <= log p(x) on average. E IS(K) <=
    # log p(x) by Jensen at every K; the margin covers the mean of 40 heavy-tailed estimates
    exact = quadrature_log_px(m, xb)
    assert result["elbo"] < float(-nll.mean()) <= float(exact.mean()) + 0.1
    assert (elbo_i < exact).all()


@pytest.mark.parametrize("common", [True, False])
def test_ssvae_particles_are_independent_and_classes_share_noise_only_if_common(xb, common):
    m = tiny_ssvae(common_noise=common)
    k, x = 64, xb[:8]
    pyro.set_rng_seed(0)
    t = point_traces(m, x, particles=k, enumerate="all")
    assert t.enumerated == ["y"] and t.sampled == ["z"]
    node = t.guide.nodes["z"]
    z = node["value"]
    assert z.shape == (C, k, 8, 2)
    base = node["fn"].base_dist
    eps = (z - base.loc) / base.scale                                    # [C, K, B, L]
    if common:
        assert type(base).__name__ == "CommonNoiseNormal"
        torch.testing.assert_close(eps, eps[:1].expand_as(eps))         # classes share noise
    else:
        assert (eps[0] - eps[1]).abs().min() > 0
    # no two particles of the same point (and class) are the same draw
    flat = eps.permute(0, 2, 1, 3).reshape(C * 8, k, 2)                  # [C*B, K, L]
    dist_kk = torch.cdist(flat, flat) + torch.eye(k, dtype=F64) * 1e9
    assert float(dist_kk.min()) > 1e-8
    # and the K noises look like independent N(0, 1) draws, not one repeated or scaled value
    assert float(eps.std(dim=1).min()) > 0.3
    assert abs(float(eps.mean())) < 0.1 and abs(float(eps.std()) - 1.0) < 0.1
    lw = log_weights(m, x, k)
    assert lw.shape == (k, 8) and float(lw.std(dim=0).min()) > 1e-3


def widened(m: SSVAE, scale: float = 1.3) -> SSVAE:
    """m with q(z|x,y)'s standard deviations set near ``scale`` (> the prior's 1): an untrained
    M2 has a near-prior posterior and encoder scales ~0.4 < 1/sqrt(2), whose importance weights
    have infinite variance (so no standard error means anything). Wider than the posterior,
    the weights are bounded and the delta-method SE below is a valid yardstick."""
    last = [layer for layer in m.encoder.modules() if isinstance(layer, torch.nn.Linear)][-1]
    latent = m.config.latent_dim
    with torch.no_grad():
        last.weight[latent:] *= 0.1
        last.bias[latent:] = math.log(math.expm1(scale))
    return m


def test_ssvae_enumerated_and_sampled_weights_estimate_the_same_log_px(xb):
    """sum_y q(y) p(x,y,z_y)/(q(y) q(z_y|x,y)) (enumerate="all") and p(x,y,z)/(q(y|x) q(z|x,y))
    with y ~ q(y|x) (enumerate="none") both have expectation p(x); with K draws each log of
    the mean is off by its delta-method SE (the bias, ~SE^2/2, is negligible here). Both are
    also checked against log p(x) by quadrature over the 2-d z."""
    m = widened(tiny_ssvae())
    x, k = xb[:10], 4000
    scale = m.encode(x)[1]
    assert float(scale.min()) > 1.1  # bounded weights: q(z|x,y) wider than p(z) >= p(z|x,y)
    (a, sa), (n, sn) = (_is_with_se(m, x, k, seed=7, enumerate=mode) for mode in ("all", "none"))
    tol = 4 * torch.sqrt(sa**2 + sn**2) + 1e-6
    assert ((a - n).abs() < tol).all(), ((a - n).abs(), tol)
    assert float(tol.max()) < 0.2  # tight enough to catch a dropped log q(y|x) (~1 nat)
    exact = quadrature_log_px(m, x)
    for est, se in ((a, sa), (n, sn)):
        assert ((est - exact).abs() < 4 * se + 1e-6).all(), (est - exact, se)
    assert float(sa.mean()) < float(sn.mean())  # summing y out removes its noise
    torch.testing.assert_close(log_likelihood(m, x, k, seed=7, enumerate="none"), n)
    # K draws with y sampled: both y values and z differ across the particles
    pyro.set_rng_seed(0)
    t = point_traces(m, x, particles=200, enumerate="none")
    assert t.enumerated == [] and sorted(t.sampled) == ["y", "z"]
    y = t.guide.nodes["y"]["value"]
    assert y.shape == (200, 10) and all(len(y[:, i].unique()) > 1 for i in range(10))


# ---- site discovery --------------------------------------------------------------------------

class Outside(PyroModule):
    """A global latent 'g' outside the data plate (or in a plate of another name)."""

    def __init__(self, plate_name=None):
        super().__init__()
        self.plate_name = plate_name

    def _g(self):
        if self.plate_name is None:
            return pyro.sample("g", dist.Normal(torch.zeros((), dtype=F64), 1.0))
        with pyro.plate(self.plate_name, 1):
            return pyro.sample("g", dist.Normal(torch.zeros((), dtype=F64), 1.0))

    def model(self, x, n_data=None):
        self._g()
        with _data_plate(x, n_data):
            pyro.sample("x", dist.Normal(torch.zeros_like(x), 1.0).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        self._g()


@pytest.mark.parametrize("plate_name", [None, "rows"])
def test_a_site_outside_the_data_plate_is_refused_in_one_line_naming_it(lg, plate_name):
    _, _, x = lg
    with pytest.raises(InterfaceError) as err:
        log_likelihood(Outside(plate_name), x[:4], num_samples=3)
    message = str(err.value)
    assert "\n" not in message and "'g'" in message and "data" in message
