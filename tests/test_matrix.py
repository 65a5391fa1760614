"""The combination matrix (pyrovae.config.combinations, benchmarks/estimator_matrix.py): every
bound x gradient x KL weighting x kind x guide the config accepts is held against a reference
gradient written independently of pyrovae/objectives, on the same random numbers, and against
exact answers where they exist (linear-Gaussian ELBO in closed form, a discrete latent by
enumeration); everything else is refused in one line. Deliberately broken estimators (the old
DReG coefficient under a KL weight, a dropped stop-gradient, a KL-weighted score function) make
the matrix fail."""

import dataclasses
import math

import pytest
import torch

from benchmarks import estimator_matrix as em
from pyrovae.config.combinations import combinations, summary
from pyrovae.objectives import bounds
from pyrovae.objectives.gradients import base, dreg, rws
from pyrovae.registry import BOUNDS, GRADIENTS, MODEL_KINDS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cells():
    return em.cells()


def find(cells, kind, guide, bound, gradient, weighting, elbo="trace"):
    (cell,) = [c for c in cells if (c.kind, c.guide, c.bound, c.gradient, c.weighting, c.elbo)
               == (kind, guide, bound, gradient, weighting, elbo) and c.target != "biased"]
    return cell


# ---- the matrix is generated, and refusals are one line ------------------------------------

def test_the_matrix_covers_every_registered_component(cells):
    seen = {(c.bound, c.gradient, c.kind) for c in cells}
    for bound in BOUNDS:
        for gradient in GRADIENTS:
            for kind in MODEL_KINDS:
                assert (bound, gradient, kind) in seen
    counts = summary([c for c in cells if c.table.get("objective", {}).get("biased") is None])
    assert counts["accepted"] > 300 and counts["refused"] > 1000
    refused = [c for c in cells if not c.accepted]
    assert all("\n" not in c.refused and len(c.refused) < 400 for c in refused)


def test_a_registered_bound_joins_the_matrix_with_the_estimators_it_admits():
    class Half(bounds.IWAE):
        pass
    BOUNDS.register("half-test", Half, dreg=True)
    try:
        mine = [c for c in combinations(kinds=["vae"]) if c.bound == "half-test"]
        accepted = {c.gradient for c in mine if c.accepted}
        assert accepted == {"reparam", "dreg"}  # stl: biased at K = 3; rws/score/vimco: undefined
    finally:
        BOUNDS.unregister("half-test")


@pytest.mark.parametrize("bound,gradient,kind,weighting,text", [
    ("iwae", "stl", "vae", "1", "is biased for bound"),
    ("iwae", "dreg", "hvae", "per-layer", "one KL weight on every layer"),
    ("iwae", "dreg", "ssvae", "1", "samples the class y ~ q(y|x)"),
    ("iwae", "vimco", "vae", "beta=0.5", "every latent of kind = \"vae\" is reparameterised"),
    ("elbo", "score", "hvae", "1", "score-function estimator"),
])
def test_refusals_name_the_pair_and_the_alternative(cells, bound, gradient, kind, weighting, text):
    guide = "diagonal" if kind in ("vae", "ssvae") else "own"
    cell = find(cells, kind, guide, bound, gradient, weighting)
    assert not cell.accepted and text in cell.refused


def test_the_docs_table_is_the_current_matrix(cells):
    """docs/figures/estimator_matrix.md (written by python -m benchmarks.estimator_matrix) lists
    exactly the accepted cells of today's registries, none FAILED."""
    text = (em.ROOT / "docs" / "figures" / "estimator_matrix.md").read_text()
    table = text.split("\n\n")[0].splitlines()[2:]
    rows = {tuple(part.strip() for part in line.strip("|").split("|")[:5]) for line in table}
    want = {(c.kind, c.guide, c.bound, c.estimator, c.weighting) for c in cells if c.accepted}
    assert rows == want
    assert not any("FAILED" in line for line in table)


# ---- every accepted cell meets its target ----------------------------------------------------

def _fast(cells):
    """The fast tier: every exact-module cell, every pair on vae/diagonal under beta = 0.5,
    and one multi-sample DReG/RWS cell per other kind and guide."""
    out = []
    for c in cells:
        if not c.accepted or c.target == "biased":
            continue
        if c.kind == "module" or (c.kind, c.guide, c.weighting) == ("vae", "diagonal", "beta=0.5"):
            out.append(c)
        elif c.gradient in ("dreg", "vimco", "rws") and c.bound == "iwae" and c.weighting in (
                "beta=0.5", "1") and c.guide != "diagonal" or (
                c.kind in ("hvae", "cvae", "ssvae") and c.bound in ("iwae", "piwae")
                and c.weighting != "per-layer"):
            out.append(c)
    return out


def test_fast_tier(cells):
    failed = []
    for c in _fast(cells):
        v = em.check(c, draws=30)
        if not v.passed:
            failed.append((c.label(), v))
    assert not failed, failed


@pytest.mark.slow
def test_every_accepted_combination_meets_its_target(cells):
    """The exhaustive tier: every accepted cell (about two minutes)."""
    failed = []
    for c in cells:
        if c.accepted and c.target != "biased":
            v = em.check(c, draws=30)
            if not v.passed:
                failed.append((c.label(), v))
    assert not failed, failed


# ---- a broken estimator makes the matrix fail -------------------------------------------------

def _old_dreg(self, bound, draw):
    """The coefficient DReG had before: e = w~^2 for IWAE (e/c = 1 - dlog c, the beta = 1
    form) whatever the KL weight."""
    return base.pathwise(bound, draw, 1 - bound.dlog_c(draw.log_w.detach()))


@pytest.mark.parametrize("kind,guide,weighting", [("vae", "diagonal", "beta=0.5"),
                                                  ("module", "one-layer", "beta=0.5")])
def test_the_old_dreg_coefficient_under_a_kl_weight_fails(cells, monkeypatch, kind, guide,
                                                          weighting):
    cell = find(cells, kind, guide, "iwae", "dreg", weighting)
    assert em.check(cell, draws=30).passed
    monkeypatch.setattr(dreg.DReG, "surrogate", _old_dreg)
    verdict = em.check(cell, draws=60)
    assert not verdict.passed and verdict.t > em.THRESHOLD, verdict
    # at KL weight 1 the old coefficient was right, and passes
    one = find(cells, kind, guide, "iwae", "dreg", "1")
    assert em.check(one, draws=30).passed


def test_a_dropped_stop_gradient_fails(cells, monkeypatch):
    """log q at the fixed values with its z-path left in (no detach): DReG's guide gradient
    gains a term, caught on the exact linear-Gaussian module."""
    from pyrovae.objectives import particles
    cell = find(cells, "module", "one-layer", "iwae", "dreg", "1")
    original = particles._log_q

    def leaky(guide_trace, latents, shape, fixed=False):
        return original(guide_trace, latents, shape, fixed=False)
    monkeypatch.setattr(particles, "_log_q", leaky)
    assert not em.check(cell, draws=60).passed


def test_a_kl_weighted_score_function_fails(cells, monkeypatch):
    """The REINFORCE term must use log q(y) itself; weighting it by beta (as the draw's
    weighted log q does) is biased, caught against the enumerated answer."""
    cell = find(cells, "module", "discrete", "elbo", "score", "beta=0.5")
    assert em.check(cell, draws=30).passed

    def weighted_score(bound, draw, signal):
        s = bound.value(draw.log_w)
        return s + (signal(draw.log_w.detach()) * 0.5 * draw.log_q_score).sum(0)
    from pyrovae.objectives.gradients import score
    monkeypatch.setattr(score, "with_score_terms", weighted_score)
    assert not em.check(cell, draws=30).passed


def test_rws_wake_phi_scaled_by_the_kl_weight_fails(cells, monkeypatch):
    cell = find(cells, "module", "discrete", "iwae", "rws", "beta=0.5")
    assert em.check(cell, draws=30).passed

    def scaled(self, bound, draw):
        log_w = draw.log_w.detach()
        log_wn = log_w - torch.logsumexp(log_w, dim=0)
        return (base.weighted(bound.log_c(log_w), draw.log_p)
                + base.weighted(log_wn, draw.log_q))     # beta * log q: the old wake-phi
    monkeypatch.setattr(rws.RWS, "surrogate", scaled)
    assert not em.check(cell, draws=30).passed


# ---- the reference itself meets the known answers -------------------------------------------

@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_the_reference_gradient_is_the_closed_form_elbo_gradient(beta):
    from benchmarks.exact_models import OneLayer
    from benchmarks.reference_estimators import reference_gradient
    m = OneLayer(beta=beta)
    x, params = m.data(), list(m.parameters())
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(m.exact_loss(x, 100), params)])
    verdict = em.against_exact(
        lambda: reference_gradient("bound", "elbo", m.model, m.guide, (x,), {"n_data": 100},
                                   params, 4, 1), exact, 400)
    assert verdict.passed and verdict.bias < 0.05, verdict
    assert math.isfinite(verdict.t)


def test_kl_weight_changes_the_dreg_coefficient_as_derived():
    """e/c = 1 - beta dlog c: at beta = 1 IWAE's w~ (e = w~^2), at beta = 0 one (e = c)."""
    lw = torch.randn(5, 3, dtype=torch.float64)
    iwae = bounds.IWAE(bounds.BoundSettings(5))
    wn = torch.softmax(lw, 0)
    assert torch.allclose(1 - 1.0 * iwae.dlog_c(lw), wn)
    assert torch.allclose(1 - 0.0 * iwae.dlog_c(lw), torch.ones_like(wn))
    half = 1 - 0.5 * iwae.dlog_c(lw)
    assert torch.allclose(wn * half, 0.5 * wn + 0.5 * wn**2)
    assert dataclasses.is_dataclass(bounds.BoundSettings)
