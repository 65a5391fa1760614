"""Numbers of the applications against known answers: AUROC, interpolation paths, the
masked likelihood of imputation, masks, tempered prior draws, latent rankings, projections,
and the data subset by class (pyrovae/applications, DataConfig.classes)."""

import math

import numpy as np
import pytest
import torch
from pyro import poutine
from sklearn.metrics import roc_auc_score

from pyrovae import VAE, DataConfig, VAEConfig, load_config, load_dataset
from pyrovae.applications import (auroc, interpolation_path, latent_ranking, make_mask,
                                  observe_only, project_2d)
from pyrovae.applications.imputation import impute_missing, mask_pixels
from pyrovae.applications.latent import centroid_accuracy
from pyrovae.config import RunConfig, to_toml
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.kinds.vae.model import tempered_sample

SHAPE, D = (1, 8, 8), 64


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def small_vae(prior="normal", latent_dim=3, likelihood="bernoulli", seed=0):
    torch.manual_seed(seed)
    elbo = "meanfield" if prior in ("normal", "learnable-normal") else "trace"
    cfg = VAEConfig(latent_dim=latent_dim, hidden=(16,), prior={"name": prior, "components": 4},
                    likelihood=likelihood, elbo=elbo)
    return VAE(cfg, SHAPE).eval()


def binary(b=6, seed=1):
    return torch.bernoulli(torch.full((b, D), 0.4), generator=torch.Generator().manual_seed(seed))


# ---- AUROC ---------------------------------------------------------------------------------


def test_auroc_known_answers():
    labels = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert auroc([1, 2, 3, 4, 5], labels) == 1.0            # every anomaly above every normal
    assert auroc([5, 4, 3, 2, 1], labels) == 0.0
    assert auroc([7, 7, 7, 7, 7], labels) == 0.5            # all tied: chance
    assert auroc([1, 2, 4, 3, 5], labels) == pytest.approx(5 / 6)  # 5 of 6 pairs ordered
    assert auroc([1, 2, 4, 4, 5], labels) == pytest.approx((5 + 0.5) / 6)  # one tie = 1/2


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 500).astype(float)          # many ties
    labels = rng.random(500) < 0.3 + 0.02 * scores
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_errors():
    with pytest.raises(DataError, match="normal and anomalous"):
        auroc([1, 2], [True, True])
    with pytest.raises(DataError, match="one label per score"):
        auroc([1, 2, 3], [True, False])
    with pytest.raises(DataError, match="NaN"):
        auroc([1, float("nan")], [True, False])


# ---- interpolation -------------------------------------------------------------------------


def test_interpolation_endpoints_and_linear_midpoint():
    za, zb = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 3.0, 1.5])
    for kind in ("linear", "spherical"):
        path = interpolation_path(za, zb, 7, kind)
        assert path.shape == (7, 3)
        assert torch.equal(path[0], za) and torch.equal(path[-1], zb)
    mid = interpolation_path(za, zb, 3, "linear")[1]
    assert torch.allclose(mid, (za + zb) / 2)


def test_spherical_interpolation_stays_on_the_sphere():
    za, zb = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])   # 90 degrees apart, radius 3
    path = interpolation_path(za, zb, 5, "spherical")
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0), atol=1e-6)
    angle = math.pi / 8                                            # a quarter of the way
    assert torch.allclose(path[1], 3 * torch.tensor([math.cos(angle), math.sin(angle)]),
                          atol=1e-6)
    # in the prior's standard coordinates: N(m, s^2) -> slerp of (z - m) / s
    loc, scale = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.5])
    shifted = interpolation_path(loc + scale * za, loc + scale * zb, 5, "spherical", loc, scale)
    assert torch.allclose((shifted - loc) / scale, path, atol=1e-6)
    assert torch.linalg.vector_norm(interpolation_path(za, za, 4, "spherical") - za) < 1e-6


def test_interpolation_errors():
    z = torch.zeros(2)
    with pytest.raises(ConfigError, match="steps"):
        interpolation_path(z, z, 1)
    with pytest.raises(ConfigError, match="linear or spherical"):
        interpolation_path(z, z, 3, "cubic")


# ---- masked likelihood (imputation) --------------------------------------------------------


def masked_log_prob(vae, x, visible, z):
    """log p(x_obs | z) read off a trace of the model under observe_only, z fixed."""
    conditioned = poutine.condition(vae.model, data={"z": z})
    with observe_only(visible):
        trace = poutine.trace(conditioned).get_trace(x)
    site = trace.nodes["x"]
    return site["fn"].log_prob(site["value"])


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "discretized-logistic"])
def test_masked_likelihood_ignores_hidden_pixels_exactly(likelihood):
    vae = small_vae(likelihood=likelihood)
    x = binary()
    visible = make_mask("random:0.5", len(x), SHAPE, seed=3)
    z = torch.randn(len(x), 3)
    changed = torch.where(visible, x, 1 - x)                  # every hidden pixel flipped
    assert torch.equal(masked_log_prob(vae, x, visible, z),
                       masked_log_prob(vae, changed, visible, z))
    assert not torch.equal(masked_log_prob(vae, x, ~visible, z),
                           masked_log_prob(vae, changed, ~visible, z))
    full = torch.ones_like(visible)
    plain = poutine.trace(poutine.condition(vae.model, data={"z": z})).get_trace(x).nodes["x"]
    assert torch.allclose(masked_log_prob(vae, x, full, z), plain["fn"].log_prob(x))


def test_masked_bernoulli_equals_the_sum_over_visible_pixels():
    vae = small_vae()
    x, z = binary(), torch.randn(6, 3)
    visible = make_mask("left-half", 6, SHAPE)
    logits = vae.decoder(z)
    by_hand = ((x * logits - torch.nn.functional.softplus(logits)) * visible).sum(1)
    assert torch.allclose(masked_log_prob(vae, x, visible, z), by_hand, atol=1e-5)
    with pytest.raises(TypeError, match="one event dimension"):
        mask_pixels(torch.distributions.Normal(0.0, 1.0), visible)


def test_impute_keeps_visible_pixels_and_weights_are_normalised():
    vae = small_vae()
    x = binary()
    visible = make_mask("center", 6, SHAPE)
    torch.manual_seed(0)
    got = impute_missing(vae, x, visible, torch.full((D,), 0.3), gibbs_steps=2, num_samples=20)
    for name in ("one_pass", "gibbs", "importance", "resampled"):
        assert torch.equal(got[name][visible], x[visible])
        assert ((got[name] >= 0) & (got[name] <= 1)).all()
    assert ((got["ess"] >= 1 - 1e-4) & (got["ess"] <= 20 + 1e-4)).all()


def test_masks():
    left = make_mask("left-half", 2, SHAPE).reshape(2, 8, 8)
    assert not left[:, :, :4].any() and left[:, :, 4:].all()
    centre = make_mask("center", 1, SHAPE).reshape(8, 8)
    assert (~centre).sum() == 16 and not centre[2:6, 2:6].any()
    assert (~make_mask("top-half", 1, SHAPE).reshape(8, 8)[:4]).all()
    rand = make_mask("random:0.5", 200, SHAPE, seed=1)
    assert abs((~rand).double().mean() - 0.5) < 0.02
    assert torch.equal(rand, make_mask("random:0.5", 200, SHAPE, seed=1))
    assert make_mask("random:0.25", 3, (10,)).shape == (3, 10)
    with pytest.raises(ConfigError, match="0 < P < 1"):
        make_mask("random:1.5", 1, SHAPE)
    with pytest.raises(ConfigError, match="not one of"):
        make_mask("diagonal", 1, SHAPE)
    with pytest.raises(DataError, match="use random:P"):
        make_mask("left-half", 1, (10,))


# ---- tempered prior draws ------------------------------------------------------------------


def test_temperature_scales_the_spread_of_prior_draws():
    vae = small_vae(latent_dim=4)
    torch.manual_seed(0)
    z = tempered_sample(vae.prior(), 20000, 0.5)
    assert torch.allclose(z.std(0), torch.full((4,), 0.5), atol=0.02)
    mog = small_vae("mog", latent_dim=2)
    prior = mog.prior()
    z = tempered_sample(prior, 500, 1e-4)                   # collapses onto component means
    locs = prior.component_distribution.mean
    assert torch.cdist(z, locs).min(1).values.max() < 1e-2
    flow = small_vae("flow", latent_dim=2)
    z = tempered_sample(flow.prior(), 5, 1e-6)               # base draws ~ base mean 0
    assert torch.allclose(z, z[:1].expand(5, 2), atol=1e-3)
    assert vae.sample(3, seed=0, temperature=0.7).shape == (3, D)
    with pytest.raises(ConfigError, match="> 0"):
        tempered_sample(vae.prior(), 2, 0.0)


# ---- latent rankings and projections -------------------------------------------------------


def test_latent_ranking_kl_is_the_closed_form():
    vae = small_vae(latent_dim=3)
    x = binary(50)
    rank = latent_ranking(vae, x)
    mu, sd = vae.encode(x)
    by_hand = (0.5 * (mu ** 2 + sd ** 2 - 1) - torch.log(sd)).mean(0)
    assert torch.allclose(rank["kl"], by_hand, atol=1e-5)
    assert torch.allclose(rank["activity"], mu.var(0))
    assert rank["kl"][rank["order"]].tolist() == sorted(by_hand.tolist(), reverse=True)
    mog = latent_ranking(small_vae("mog"), x)               # no per-dimension KL: activity
    assert mog["kl"] is None and mog["order_by"] == "activity"


def test_pca_projection_recovers_known_variances():
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(4000, 3, generator=gen) * torch.tensor([3.0, 2.0, 0.5])
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen))
    xy, names, ratio = project_2d(raw @ rotation.T, "pca")
    assert names == ("PC1", "PC2")
    assert ratio == pytest.approx([9 / 13.25, 4 / 13.25], abs=0.02)
    assert xy.var(0).tolist() == pytest.approx([9, 4], rel=0.06)
    two = torch.randn(10, 2)
    assert torch.equal(project_2d(two)[0], two.double())
    xy, names, _ = project_2d(raw, "kl", order=torch.tensor([2, 0, 1]))
    assert names == ("z2", "z0") and torch.equal(xy, raw.double()[:, [2, 0]])
    with pytest.raises(ConfigError, match="not one of"):
        project_2d(raw, "tsne")


def test_centroid_accuracy():
    xy = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    assert centroid_accuracy(xy, torch.tensor([0, 0, 1, 1])) == 1.0
    assert centroid_accuracy(xy, torch.tensor([0, 1, 0, 1])) == 0.5


# ---- data subset by class ------------------------------------------------------------------


def test_classes_filter_train_and_test():
    data = load_dataset(DataConfig(name="digits", classes=(3, 7), test_size=20))
    assert set(data.train_y.tolist()) == {3, 7} and set(data.test_y.tolist()) == {3, 7}
    assert len(data.test_x) == 20 and len(data.train_x) == len(data.train_y)
    everything = load_dataset("digits")
    keep = (everything.train_y == 3) | (everything.train_y == 7)
    assert torch.equal(data.train_x, everything.train_x[keep])


def test_classes_validation_and_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="twice"):
        DataConfig(classes=(1, 1))
    with pytest.raises(ConfigError, match=">= 0"):
        DataConfig(classes=(-1,))
    with pytest.raises(DataError, match=r"no examples with that label.*\[12\]|\[12\].*no examples"):
        load_dataset(DataConfig(name="digits", classes=(0, 12)))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((20, 4)).astype(np.float32))
    with pytest.raises(DataError, match="needs labels"):
        load_dataset(DataConfig(name=str(tmp_path / "x.npy"), classes=(0,)))
    config = RunConfig(data=DataConfig(name="digits", classes=(0, 1, 2)))
    (tmp_path / "c.toml").write_text(to_toml(config))
    assert load_config(tmp_path / "c.toml").data.classes == (0, 1, 2)
    assert load_config(tmp_path / "c.toml", ["classes=[4]"]).data.classes == (4,)
    assert DataConfig().classes == ()


def test_mixture_proposal_density_by_hand():
    from pyrovae.applications.imputation import _mixture_draws

    torch.manual_seed(0)
    props = [(torch.randn(4, 2), torch.rand(4, 2) + 0.5) for _ in range(3)]
    z, log_r = _mixture_draws(props, 30)
    assert z.shape == (30, 4, 2)
    dens = sum(torch.distributions.Normal(m, s).log_prob(z).sum(-1).exp() for m, s in props) / 3
    assert torch.allclose(log_r, dens.log(), atol=1e-5)


def test_importance_imputation_converges_to_the_exact_conditional_mean():
    """A 1-D latent and 4 pixels: E[x_hidden | x_obs] by quadrature over z, against the
    self-normalised importance estimate with many particles (the guide widened to N(0, 1.5^2)
    so that the weights are well behaved and the estimate is sharp)."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=1, hidden=(8,), activation="tanh"), (1, 2, 2)).eval()
    vae.encode = lambda x: (torch.zeros(len(x), 1), torch.full((len(x), 1), 1.5))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    visible = torch.tensor([[True, True, False, False], [True, False, True, False]])
    grid = torch.linspace(-8, 8, 20001)[:, None]                         # z on a fine grid
    with torch.no_grad():
        probs = torch.sigmoid(vae.decoder(grid))                         # [G, 4]
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(grid[:, 0])
        exact = []
        for xi, vi in zip(x, visible):
            log_lik = (torch.distributions.Bernoulli(probs).log_prob(xi) * vi).sum(1)
            post = torch.softmax(log_prior + log_lik, 0)
            exact.append((post[:, None] * probs).sum(0))
        got = impute_missing(vae, x, visible, torch.full((4,), 0.5), gibbs_steps=3,
                             num_samples=40000)
    exact = torch.stack(exact)
    assert torch.allclose(got["importance"][~visible], exact[~visible], atol=5e-3)
    assert torch.equal(got["importance"][visible], x[visible])


def test_ratio_score_is_elbo_score_plus_background_log_prob():
    from pyrovae.applications import anomaly_scores
    from pyrovae.applications.anomaly import background_log_prob

    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    m = torch.tensor([0.5, 0.0])                      # clamped to 1e-3 on the second pixel
    expected = torch.tensor([math.log(0.5) + math.log(0.999), math.log(0.5) + math.log(1e-3)])
    assert torch.allclose(background_log_prob(x, m), expected.double())
    vae, xb = small_vae(), binary(5)
    mean = torch.full((D,), 0.3)
    ratio = anomaly_scores(vae, xb, "ratio", 4, mean_image=mean)
    elbo = anomaly_scores(vae, xb, "elbo", 4)
    assert torch.allclose(ratio, elbo + background_log_prob(xb, mean))
    with pytest.raises(ConfigError, match="bernoulli"):
        anomaly_scores(small_vae(likelihood="gaussian"), xb, "ratio", mean_image=mean)
    with pytest.raises(ConfigError, match="not one of"):
        anomaly_scores(vae, xb, "entropy")


def test_elbo_score_is_minus_the_elbo_per_example():
    from pyrovae import evaluate_elbo
    from pyrovae.applications import anomaly_scores
    from pyrovae.evaluation import log_weights

    vae, x = small_vae(), binary(40)
    scores = anomaly_scores(vae, x, "elbo", 2000)
    torch.manual_seed(0)
    monte_carlo = -log_weights(vae, x, 2000).double().mean(0)       # the same ELBO, MC KL
    assert torch.allclose(scores, monte_carlo, atol=0.05)
    assert float(scores.mean()) == pytest.approx(-evaluate_elbo(vae, x)["elbo"], abs=0.05)
    mog = small_vae("mog")                                          # no closed-form KL
    assert torch.isfinite(anomaly_scores(mog, x, "elbo", 5)).all()


def test_latent_score_is_the_distance_to_the_k_th_nearest_training_code():
    from pyrovae.applications.anomaly import anomaly_scores, latent_distance

    vae = small_vae()
    x_train, x = binary(40, seed=2), binary(7, seed=3)
    codes, mu = vae.encode(x_train)[0].numpy(), vae.encode(x)[0].numpy()
    brute = np.sort(np.linalg.norm(mu[:, None] - codes[None], axis=-1), axis=1)  # [7, 40]
    for k in (1, 3):
        got = latent_distance(vae, x, x_train, neighbours=k, chunk=2).numpy()
        np.testing.assert_allclose(got, brute[:, k - 1], rtol=1e-5, atol=1e-6)
    # a training point is its own nearest code: score 0
    own = anomaly_scores(vae, x_train[:5], "latent", x_train=x_train)
    np.testing.assert_allclose(own.numpy(), 0.0, atol=1e-4)
    with pytest.raises(ConfigError, match="neighbours"):
        latent_distance(vae, x, x_train, neighbours=41)
    with pytest.raises(ConfigError, match="training points"):
        anomaly_scores(vae, x, "latent")
