"""The mixture prior's log-density by matrix products (pyrovae/components/mixture.py): equal to
torch's MixtureSameFamily (values and gradients, float32 and float64, extreme inputs), the mog
and vamp priors built on it with their draws unchanged, and the importance-sampled evaluation
of a VampPrior VAE making no [K, B, components, latent] tensor (measured with torch.profiler's
memory events)."""

import pyro.distributions as dist
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from pyrovae import VAE, VAEConfig
from pyrovae.components import mixture
from pyrovae.components.mixture import DiagonalGaussianMixture, mixture_log_prob
from pyrovae.evaluation.likelihood import log_likelihood, log_weights


@pytest.fixture(autouse=True)
def fast_path(monkeypatch):
    """Every size takes the matrix product (small ones take MixtureSameFamily's own)."""
    monkeypatch.setattr(mixture, "DIRECT_ENTRIES", 0)


def reference(logits, loc, scale):
    """torch's (Pyro's) MixtureSameFamily of the same diagonal Gaussians."""
    comp = dist.Independent(dist.Normal(loc, scale, validate_args=False), 1)
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), comp, validate_args=False)


def params(c, size, dtype, seed, spread=1.0, scale_lo=0.1, scale_hi=2.0, logit_sd=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = logit_sd * torch.randn(c, generator=g, dtype=dtype)
    loc = spread * torch.randn(c, size, generator=g, dtype=dtype)
    u = torch.rand(c, size, generator=g, dtype=dtype)
    scale = scale_lo * (scale_hi / scale_lo) ** u  # log-uniform in [lo, hi]
    return logits, loc, scale


def points(loc, scale, n, seed, far=0.0):
    """n draws near random components (within ~3 scales), plus n far from all when far > 0."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(loc.shape[0], (n,), generator=g)
    eps = torch.randn(n, loc.shape[1], generator=g, dtype=loc.dtype)
    z = loc[idx] + 1.5 * scale[idx] * eps
    if far:
        z = torch.cat([z, far * torch.randn(n, loc.shape[1], generator=g, dtype=loc.dtype)])
    return z


CASES = {  # name: (params keywords, far)
    "plain": ({}, 0.0),
    "far draws": ({}, 1e3),
    "tiny and huge scales": ({"scale_lo": 1e-3, "scale_hi": 1e3}, 50.0),
    "small scales, spread means": ({"spread": 20.0, "scale_lo": 1e-3, "scale_hi": 1e-2}, 0.0),
    "means far from 0": ({"spread": 1e3, "scale_lo": 0.05, "scale_hi": 0.5}, 0.0),
    "peaked weights": ({"logit_sd": 30.0}, 10.0),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_log_prob_equals_mixture_same_family(case, dtype):
    kw, far = CASES[case]
    logits, loc, scale = params(37, 6, dtype, seed=1, **kw)
    z = points(loc, scale, 200, seed=2, far=far)
    ours = DiagonalGaussianMixture(logits, loc, scale).log_prob(z)
    assert ours.dtype == dtype and ours.shape == (z.shape[0],)
    # the truth: the reference in float64 from the same (rounded) numbers
    truth = reference(logits.double(), loc.double(), scale.double()).log_prob(z.double())
    ref = reference(logits, loc, scale).log_prob(z)
    assert torch.isfinite(truth).all()
    torch.testing.assert_close(ours.double(), truth, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    if dtype == torch.float64:  # float64 in and out: as good as the reference itself
        torch.testing.assert_close(ours, truth, rtol=1e-10, atol=1e-9)


def test_blocks_and_shapes(monkeypatch):
    """Several row blocks, batch dims, expand (as a Pyro plate does) and broadcasting all give
    the reference's numbers and shapes."""
    logits, loc, scale = params(11, 4, torch.float64, seed=3)
    z = torch.randn(5, 7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ref = reference(logits, loc, scale)
    monkeypatch.setattr(mixture, "BLOCK_ENTRIES", 11 * 3)  # blocks of 3 rows
    d = DiagonalGaussianMixture(logits, loc, scale)
    torch.testing.assert_close(d.log_prob(z), ref.log_prob(z))
    e = d.expand((7,))
    assert type(e) is DiagonalGaussianMixture and e.batch_shape == (7,)
    torch.testing.assert_close(e.log_prob(z), ref.expand((7,)).log_prob(z))
    assert e.log_prob(z[0, 0]).shape == (7,)                        # one z, 7 batch elements
    assert d.log_prob(z[:, :0]).shape == (5, 0)                     # no rows
    with pytest.raises(ValueError, match="logits \\[C\\] and loc, scale \\[C, L\\]"):
        DiagonalGaussianMixture(logits, loc[0], scale[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_equal_mixture_same_family(dtype):
    """d/dz, d/dlogits, d/dloc, d/dscale of sum log p(z), as training takes them."""
    logits, loc, scale = params(9, 5, dtype, seed=5, scale_lo=0.05)
    z = points(loc, scale, 64, seed=6, far=5.0)
    grads = []
    for make in (DiagonalGaussianMixture, reference):
        args = [t.clone().requires_grad_() for t in (z, logits, loc, scale)]
        make(*args[1:]).log_prob(args[0]).sum().backward()
        grads.append([a.grad for a in args])
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9,
                                                                      "atol": 1e-9}
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, **tol)


def small_vae(prior, components=6, latent=3):
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=latent, hidden=(16,), elbo="trace",
                         prior={"name": prior, "components": components}), (1, 8, 8))


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_priors_use_it_with_unchanged_draws(prior):
    vae = small_vae(prior)
    p = vae.prior()
    assert type(p) is DiagonalGaussianMixture
    ref = reference(p.mixture_distribution.logits, p.component_distribution.base_dist.loc,
                    p.component_distribution.base_dist.scale)
    torch.manual_seed(7)
    ours = p.sample((50,))
    torch.manual_seed(7)
    torch.testing.assert_close(ours, ref.sample((50,)), rtol=0, atol=0)
    torch.testing.assert_close(vae.prior.log_prob(ours), ref.log_prob(ours))


def biggest_allocation(fn) -> int:
    """The largest block of CPU memory one operator allocated while fn() ran (bytes)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.cpu_memory_usage for e in prof.events())


def test_vamp_evaluation_makes_no_particle_by_component_tensor():
    """K = 64 draws of B = 32 points against 200 pseudo-inputs in L = 16 dimensions: the
    [K, B, 200, 16] float32 tensor of every component at every draw would be 26 MB; the
    importance-sampled evaluation's largest single allocation stays under a quarter of it
    (the decoder's [K, B, 64] outputs are 0.5 MB). MixtureSameFamily's, measured the same way,
    reaches it, so the measurement can fail."""
    k, b, c, latent = 64, 32, 200, 16
    vae = small_vae("vamp", components=c, latent=latent).eval()
    x = torch.bernoulli(torch.full((b, 64), 0.3), generator=torch.Generator().manual_seed(1))
    four_d = k * b * c * latent * 4
    ours = biggest_allocation(lambda: log_weights(vae, x, k))
    assert ours < four_d / 4, (ours, four_d)
    p = vae.prior()
    ref = reference(p.mixture_distribution.logits, p.component_distribution.base_dist.loc,
                    p.component_distribution.base_dist.scale).expand((b,))
    z = torch.randn(k, b, latent)
    assert biggest_allocation(lambda: ref.log_prob(z)) >= four_d
    assert biggest_allocation(lambda: p.expand((b,)).log_prob(z)) < four_d / 4


def test_vamp_nll_unchanged_by_the_fast_path(monkeypatch):
    """The importance-sampled log p(x) of a VampPrior VAE with the fast log-density equals the
    one computed with MixtureSameFamily's log_prob on the same draws (the same seed)."""
    vae = small_vae("vamp", components=20).eval()
    x = torch.bernoulli(torch.full((10, 64), 0.4), generator=torch.Generator().manual_seed(2))
    fast = log_likelihood(vae, x, num_samples=200, batch_size=5)
    fast_forward = type(vae.prior).forward
    monkeypatch.setattr(type(vae.prior), "forward",
                        lambda self: reference(*fast_forward(self)._params))
    assert type(vae.prior()) is not DiagonalGaussianMixture
    slow = log_likelihood(vae, x, num_samples=200, batch_size=5)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-5)


def test_traced_log_prob_runs_on_other_batch_sizes(monkeypatch):
    """torch.jit.trace (as the compiled objectives use) on one batch size replays correctly on
    others, including sizes that the eager path cuts into several row blocks."""
    logits, loc, scale = params(13, 4, torch.float32, seed=8)
    d = DiagonalGaussianMixture(logits, loc, scale)
    monkeypatch.setattr(mixture, "BLOCK_ENTRIES", 13 * 8)  # eager: blocks of 8 rows
    traced = torch.jit.trace(lambda z: d.expand(z.shape[:-1]).log_prob(z), (torch.randn(16, 4),))
    for n in (1, 5, 16, 100):
        z = torch.randn(n, 4)
        torch.testing.assert_close(traced(z), reference(logits, loc, scale).log_prob(z))


def test_small_problems_are_mixture_same_familys_bit_for_bit(monkeypatch):
    monkeypatch.setattr(mixture, "DIRECT_ENTRIES", 2 ** 18)
    logits, loc, scale = params(5, 3, torch.float32, seed=9)
    z = torch.randn(40, 7, 3)
    ours = DiagonalGaussianMixture(logits, loc, scale).expand((7,)).log_prob(z)
    assert torch.equal(ours, reference(logits, loc, scale).expand((7,)).log_prob(z))
