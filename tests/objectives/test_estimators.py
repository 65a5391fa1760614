"""Known answers for the bounds and gradient estimators (pyrovae/objectives: bounds.py,
particles.py, gradients/).

- STL, DReG and RWS-DReG give an exactly zero guide gradient at the exact posterior of a
  linear-Gaussian model, for every draw (Roeder et al.'s property); the plain gradient does not.
  Both with one latent site and with a hierarchical guide q(z1|x) q(z2|z1) (chained paths).
- DReG has IWAE's expected gradient (and RWS-DReG wake-phi's), with less variance at K = 16.
- Score-function estimators for a discrete guide site: the leave-one-out ELBO estimator and
  VIMCO match gradients of the exact expected bounds, computed by enumerating every draw.
- The bound identities (Renyi -> ELBO / IWAE, MIWAE(M,1) = ELBO, MIWAE(1,K) = IWAE, CIWAE's
  ends, the coefficients against autograd), and every bound <= the exact log p(x) per point
  under a minibatch plate, where Pyro's RenyiELBO(alpha=0) is not a bound.
"""

import itertools
import math

import pyro
import pyro.distributions as dist
import pyro.infer as infer
import pytest
import torch

from tests.support.linear_gaussian import (F64, INFLATE, L2, SHIFT, AmortizedTwoLayer, OneLayer, Posterior,
                             TwoLayer, _data_plate, _params, closed_form_marginal)
from pyrovae.config import ObjectiveConfig, SSVAEConfig, VAEConfig
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.interface import InterfaceError
from pyrovae.objectives import BoundObjective
from pyrovae.objectives.bounds import Bound, BoundSettings
from pyrovae.runtime.registry import BOUNDS
from pyrovae.runtime.rng import seeded

pytestmark = pytest.mark.usefixtures("one_thread")


def grads(module, objective, x, n_data=None) -> torch.Tensor:
    """One gradient draw of the loss w.r.t. the module's parameters (the guide's), flattened."""
    for p in module.parameters():
        p.grad = None
    objective.differentiable_loss(module.model, module.guide, x, n_data=n_data).backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in module.parameters()])


def moments(module, objective, x, draws: int, seed: int = 1):
    with seeded(seed):
        g = torch.stack([grads(module, objective, x) for _ in range(draws)])
    return g.mean(0), g.var(0)


def one_layer(**kw):
    m = OneLayer(**kw)
    with seeded(3):
        return m, m.marginal().sample((6,))


def two_layer(**kw):
    p = _params(0)
    with seeded(3):
        return AmortizedTwoLayer(p, **kw), closed_form_marginal(p).sample((6,))


MODELS = {"one-latent": one_layer, "two-latents": two_layer}


# ---- zero variance at the exact posterior ----------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("bound,gradient,k,groups", [
    ("elbo", "stl", 1, 1), ("elbo", "stl", 3, 1), ("iwae", "stl", 4, 1), ("iwae", "dreg", 4, 1),
    ("iwae", "rws-dreg", 4, 1), ("miwae", "dreg", 2, 2), ("piwae", "dreg", 2, 2),
    ("ciwae", "dreg", 4, 1), ("renyi", "stl", 4, 1)])
def test_guide_gradient_is_zero_for_every_draw_at_the_exact_posterior(model, bound, gradient, k,
                                                                      groups):
    m, x = MODELS[model]()
    sharp = BoundObjective(bound, gradient, k, groups=groups, biased=gradient == "stl")
    with seeded(0):
        for _ in range(4):
            assert grads(m, sharp, x).abs().max() < 1e-9
    plain = BoundObjective(bound, "reparam", k, groups=groups)
    with seeded(0):
        assert grads(m, plain, x).abs().max() > 1e-3  # the score term: noise, zero in mean


def test_the_exact_posterior_makes_every_bound_the_exact_log_likelihood():
    m, x = one_layer()
    exact = m.marginal().log_prob(x).mean()
    for bound in ("elbo", "iwae", "renyi", "miwae", "ciwae", "piwae"):
        obj = BoundObjective(bound, "reparam", 3, groups=2)
        with seeded(0):
            value = -obj.loss(m.model, m.guide, x) / x.shape[0]
        assert value == pytest.approx(float(exact), abs=1e-9), bound


# ---- unbiasedness and variance ------------------------------------------------------------

def _agree(mean_a, var_a, mean_b, var_b, draws, z=4.5):
    se = ((var_a + var_b) / draws).sqrt()
    live = se > 1e-12
    assert live.sum() > 4
    dev = ((mean_a - mean_b).abs()[live] / se[live]).max()
    assert dev < z, f"max deviation {dev:.2f} standard errors"


@pytest.mark.parametrize("model", MODELS)
def test_dreg_has_the_iwae_gradients_expectation_and_less_variance(model):
    m, x = MODELS[model](shift=0.3, inflate=1.3)
    draws = 300
    iw_mean, iw_var = moments(m, BoundObjective("iwae", "reparam", 16), x, draws)
    dr_mean, dr_var = moments(m, BoundObjective("iwae", "dreg", 16), x, draws, seed=2)
    _agree(iw_mean, iw_var, dr_mean, dr_var, draws)
    assert dr_var.sum() < 0.5 * iw_var.sum()


def test_rws_dreg_has_wake_phis_expectation_and_less_variance():
    m, x = one_layer(shift=0.3, inflate=1.3)
    draws = 300
    a_mean, a_var = moments(m, BoundObjective("iwae", "rws", 8), x, draws)
    b_mean, b_var = moments(m, BoundObjective("iwae", "rws-dreg", 8), x, draws, seed=2)
    _agree(a_mean, a_var, b_mean, b_var, draws)
    assert b_var.sum() < a_var.sum()


def test_rws_moves_the_guide_towards_the_posterior_not_along_the_bound():
    """wake-phi's expected gradient is sum_k w~_k grad log q(z_k): at the exact posterior it is
    zero in expectation (E_p grad log q = 0), like the bound's."""
    m, x = one_layer()
    mean, var = moments(m, BoundObjective("iwae", "rws", 8), x, 300)
    _agree(mean, var, torch.zeros_like(mean), torch.zeros_like(var), 300)


class Discrete(torch.nn.Module):
    """y ~ Categorical(1/C), x | y ~ N(mu_y, I); guide q(y|x) = softmax(W x + c): a sampled,
    not reparameterised, latent."""

    C, D = 3, 2

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.mu = 1.5 * torch.randn(self.C, self.D, generator=g, dtype=F64)
        self.W = torch.nn.Parameter(0.3 * torch.randn(self.C, self.D, generator=g, dtype=F64))
        self.c = torch.nn.Parameter(0.3 * torch.randn(self.C, generator=g, dtype=F64))

    def model(self, x, n_data=None):
        with _data_plate(x, n_data):
            y = pyro.sample("y", dist.Categorical(torch.full((self.C,), 1 / self.C, dtype=F64)))
            pyro.sample("x", dist.Normal(self.mu[y], 1.0).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with _data_plate(x, n_data):
            pyro.sample("y", dist.Categorical(logits=x @ self.W.T + self.c))

    def exact_bound(self, x, k: int, iwae: bool) -> torch.Tensor:
        """E over all C^k draws of the per-point bound, summed over points (enumerated)."""
        log_q = torch.log_softmax(x @ self.W.T + self.c, -1)                  # [B, C]
        log_joint = (dist.Normal(self.mu, 1.0).to_event(1).log_prob(x[:, None])
                     - math.log(self.C))                                      # [B, C]
        total = 0.0
        for ys in itertools.product(range(self.C), repeat=k):
            ys = list(ys)
            lw = log_joint[:, ys] - log_q[:, ys]                              # [B, k]
            bound = (torch.logsumexp(lw, 1) - math.log(k)) if iwae else lw.mean(1)
            total = total + (log_q[:, ys].sum(1).exp() * bound).sum()
        return total


@pytest.mark.parametrize("bound,gradient,k", [("elbo", "score", 3), ("iwae", "vimco", 3),
                                              ("iwae", "rws", 3)])
def test_score_function_estimators_match_the_enumerated_gradient(bound, gradient, k):
    m = Discrete()
    with seeded(5):
        x = m.mu[torch.randint(0, m.C, (4,))] + torch.randn(4, m.D, dtype=F64)
    draws = 2000
    mean, var = moments(m, BoundObjective(bound, gradient, k), x, draws)
    if gradient == "rws":  # wake-phi: sum_k w~_k grad log q(y_k), against E_p[grad log q(y)]
        post = torch.softmax(dist.Normal(m.mu, 1.0).to_event(1).log_prob(x[:, None]), -1)
        target = -(post.detach() * torch.log_softmax(x @ m.W.T + m.c, -1)).sum()
        # (self-normalised: biased for finite K, so compare loosely with the K -> inf answer)
        exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(target, [m.W, m.c])])
        assert torch.nn.functional.cosine_similarity(mean, exact, dim=0) > 0.9
        return
    exact = -m.exact_bound(x, k, iwae=bound == "iwae")
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(exact, [m.W, m.c])])
    _agree(mean, var, exact, torch.zeros_like(var), draws)


def test_pathwise_estimators_refuse_a_sampled_discrete_site():
    m = Discrete()
    x = torch.zeros(2, m.D, dtype=F64)
    for gradient in ("reparam", "stl", "dreg"):
        with pytest.raises(InterfaceError, match="'y' is not"):
            BoundObjective("iwae", gradient, 2, biased=True).differentiable_loss(m.model,
                                                                                 m.guide, x)


@pytest.mark.parametrize("bound,gradient", [("elbo", "score"), ("iwae", "vimco")])
def test_score_function_estimators_refuse_a_guide_with_nothing_to_score(bound, gradient):
    """On a fully reparameterised guide score/vimco would silently be reparam: refused."""
    m, x = one_layer()
    with pytest.raises(InterfaceError, match="every site of this guide is reparameterised"):
        BoundObjective(bound, gradient, 3).differentiable_loss(m.model, m.guide, x)


# ---- bound identities -----------------------------------------------------------------------

LW = 3 * torch.randn(6, 5, dtype=F64, generator=torch.Generator().manual_seed(0))


def value(name, k=6, lw=LW, **kw):
    return BOUNDS.get(name)(BoundSettings(num_particles=k, **kw)).value(lw)


def test_bound_identities():
    iwae, elbo = value("iwae"), value("elbo")
    assert torch.allclose(value("renyi", renyi_alpha=0.0), iwae)
    assert torch.allclose(value("renyi", renyi_alpha=1 - 1e-7), elbo, atol=1e-5)
    assert torch.allclose(value("renyi", renyi_alpha=1 + 1e-7), elbo, atol=1e-5)
    assert torch.allclose(value("miwae", k=1, groups=6), elbo)
    assert torch.allclose(value("miwae", k=6, groups=1), iwae)
    assert torch.allclose(value("ciwae", ciwae_beta=1.0), elbo)
    assert torch.allclose(value("ciwae", ciwae_beta=0.0), iwae)
    assert torch.allclose(value("piwae", k=3, groups=2), iwae)
    # the ordering: ELBO <= MIWAE(2, 3) <= IWAE(6); Renyi decreasing in alpha
    assert (elbo <= value("miwae", k=3, groups=2) + 1e-12).all()
    assert (value("miwae", k=3, groups=2) <= iwae + 1e-12).all()
    assert (value("renyi", renyi_alpha=0.7) <= value("renyi", renyi_alpha=0.2) + 1e-12).all()


@pytest.mark.parametrize("name,kw", [("elbo", {}), ("iwae", {}), ("renyi", {"renyi_alpha": 0.3}),
                                     ("miwae", {"groups": 2, "k": 3}),
                                     ("ciwae", {"ciwae_beta": 0.4}),
                                     ("piwae", {"groups": 2, "k": 3})])
def test_model_coefficients_are_the_bounds_derivatives(name, kw):
    k = kw.pop("k", 6)
    bound = BOUNDS.get(name)(BoundSettings(num_particles=k, **kw))
    lw = LW.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(bound.value(lw).sum(), lw)
    assert torch.allclose(bound.log_c(LW).exp(), auto)
    # DReG's dlog c / dlog w: the closed form equals the base class's autograd default
    assert torch.allclose(bound.dlog_c(LW), Bound.dlog_c(bound, LW), atol=1e-10)


def test_objectives_share_draws_so_identities_hold_end_to_end():
    """MIWAE(M, 1) on the same seed is the ELBO with M particles; Renyi near 1 is the ELBO."""
    m, x = two_layer(shift=0.3, inflate=1.3)

    def loss(**kw):
        with seeded(7):
            return BoundObjective(**kw).loss(m.model, m.guide, x)

    elbo = loss(bound="elbo", num_particles=4)
    assert loss(bound="miwae", num_particles=1, groups=4) == pytest.approx(elbo, rel=1e-12)
    assert loss(bound="renyi", num_particles=4, renyi_alpha=1 - 1e-6) == pytest.approx(elbo,
                                                                                       rel=1e-5)
    assert loss(bound="renyi", num_particles=4, renyi_alpha=0.0) == pytest.approx(
        loss(bound="iwae", num_particles=4), rel=1e-12)


# ---- bounds under minibatch plates -----------------------------------------------------------

@pytest.fixture(scope="module")
def minibatch():
    p = _params(0)
    exact = closed_form_marginal(p)
    with seeded(11):
        x = exact.sample((1000,))
    return TwoLayer(p, SHIFT, INFLATE), x[:20], float(exact.log_prob(x[:20]).mean())


@pytest.mark.parametrize("bound,k,kw", [("elbo", 5, {}), ("iwae", 5, {}), ("iwae", 1, {}),
                                        ("renyi", 5, {"renyi_alpha": 0.0}),
                                        ("renyi", 5, {"renyi_alpha": 0.5}),
                                        ("miwae", 3, {"groups": 2}), ("ciwae", 5, {}),
                                        ("piwae", 3, {"groups": 2})])
def test_every_bound_is_below_log_px_per_point_on_a_minibatch(minibatch, bound, k, kw):
    m, xb, exact = minibatch
    obj = BoundObjective(bound, "reparam", k, **kw)
    with seeded(0):
        per_point = torch.tensor([-obj.loss(m.model, m.guide, xb, n_data=1000) / 1000
                                  for _ in range(100)])
    se = float(per_point.std() / 10)
    assert per_point.mean() <= exact + 3 * se
    assert per_point.mean() > exact - 2.0  # a bound, and a close one for this guide


def test_pyro_renyi_elbo_is_not_a_bound_on_minibatches(minibatch):
    """Pyro 1.9's RenyiELBO scales the log weights by N/B inside the log-sum-exp: on 20 of 1000
    points its alpha = 0 'bound' is above log p(x); ours (and IWAE's) is below it."""
    m, xb, exact = minibatch
    pyro_renyi = infer.RenyiELBO(alpha=0.0, num_particles=5, max_plate_nesting=1)
    ours = BoundObjective("renyi", "reparam", 5, renyi_alpha=0.0)
    with seeded(0):
        theirs = sum(-pyro_renyi.loss(m.model, m.guide, xb, n_data=1000) / 1000
                     for _ in range(50)) / 50
        mine = sum(-ours.loss(m.model, m.guide, xb, n_data=1000) / 1000 for _ in range(50)) / 50
    assert mine < exact < theirs


# ---- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw,message", [
    ({"objective": {"bound": "tmc", "gradient": "dreg"}}, "takes gradient = reparam"),
    ({"objective": {"bound": "iwae", "gradient": "stl"}, "elbo": "trace", "num_particles": 5},
     "biased for bound"),
    ({"objective": {"bound": "renyi", "renyi_alpha": -0.5}}, "not a lower bound"),
    ({"objective": {"bound": "elbo", "gradient": "rws"}}, "works with bound = iwae"),
    ({"objective": {"bound": "elbo", "gradient": "stl"}}, "set model.elbo = \"trace\""),
    ({"objective": {"bound": "renyi"}, "kl": {"free_bits": 0.5}}, "free_bits"),
    ({"objective": {"bound": "iwae", "gradient": "vimco"}}, "num_particles >= 2"),
    ({"objective": {"bound": "renyi", "renyi_alpha": 1.0}}, "renyi_alpha = 1"),
    ({"objective": {"bound": "ciwae", "ciwae_beta": 1.5}}, "ciwae_beta"),
    ({"elbo": "iwae", "objective": {"bound": "iwae", "gradient": "dreg"}}, "both choose"),
])
def test_invalid_pairs_are_refused_in_one_line(kw, message):
    from pyrovae.config import section_from_dict
    with pytest.raises(ConfigError, match=message) as err:
        section_from_dict(VAEConfig, kw, "model")
    assert "\n" not in str(err.value)


def test_ssvae_objectives_need_y_sampled():
    with pytest.raises(ConfigError, match="set model.elbo = \"trace\""):
        SSVAEConfig(objective=ObjectiveConfig(bound="iwae", gradient="vimco"), num_particles=3)
    SSVAEConfig(elbo="trace", objective=ObjectiveConfig(bound="iwae", gradient="vimco"),
                num_particles=3)
    with pytest.raises(ConfigError, match="num_particles"):
        SSVAEConfig(elbo="trace", num_particles=3)  # the plain Pyro estimators: K = 1


# ---- tensor Monte Carlo -------------------------------------------------------------------

@pytest.mark.parametrize("independent", [False, True], ids=["nested", "all-pairs"])
def test_tmc_is_an_unbiased_estimate_of_px_and_exact_at_the_posterior(independent):
    """E[exp(L_TMC)] = p(x) for a guide that draws z2 given z1 (K per parent: nested) and for
    one that draws them independently (all K x K pairs: tensor Monte Carlo)."""
    m, x = two_layer(shift=0.2, inflate=1.2)
    p = _params(0)
    log_px = closed_form_marginal(p).log_prob(x)
    if independent:  # z2 from its posterior marginal, widened, whatever z1 is
        q = Posterior(p)
        with torch.no_grad():
            m.G.zero_()
            m.W2.copy_(q.K[:L2])
            m.c2.copy_((q.mz - q.K @ q.mx)[:L2])
            m.T2.copy_(1.2 * torch.linalg.cholesky(q.P[:L2, :L2]))
    obj = BoundObjective("tmc", "reparam", 3)
    with seeded(0):
        ratios = torch.stack([obj.bound.estimate(m.model, m.guide, (x,), {}, 1)[0] - log_px
                              for _ in range(400)]).exp()                    # [R, B]
    se = ratios.std(0) / 20
    assert ((ratios.mean(0) - 1).abs() < 4 * se + 1e-3).all()
    exact, xe = two_layer()
    with seeded(0):
        value = -obj.loss(exact.model, exact.guide, xe) / xe.shape[0]
    assert value == pytest.approx(float(closed_form_marginal(p).log_prob(xe).mean()), abs=1e-9)


def test_tmc_is_tighter_than_iwae_with_as_many_draws_per_site():
    m, x = two_layer(shift=0.3, inflate=1.3)
    exact = float(closed_form_marginal(_params(0)).log_prob(x).mean())

    def mean_value(bound):
        obj = BoundObjective(bound, "reparam", 4)
        with seeded(0):
            return sum(-obj.loss(m.model, m.guide, x) / x.shape[0] for _ in range(100)) / 100

    assert mean_value("iwae") < mean_value("tmc") < exact
    g = grads(m, BoundObjective("tmc", "reparam", 4), x)
    assert torch.isfinite(g).all() and g.abs().max() > 0


def test_tmc_takes_only_the_reparameterization_gradient():
    with pytest.raises(ConfigError, match="tmc.*takes gradient = reparam"):
        VAEConfig(objective=ObjectiveConfig(bound="tmc", gradient="stl"))
