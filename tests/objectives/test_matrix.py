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
from pyrovae.runtime.registry import BOUNDS, GRADIENTS, MODEL_KINDS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cells():
    return em.cells()


find = em.find


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


def test_the_kl_decomposition_axis_is_held_at_none_here_and_refused_off_its_cells(cells):
    """The matrix's cells train the plain KL term; the decomposition axis has its own cells
    (decomposition_combinations), refused in one line everywhere but vae/diagonal/meanfield
    (those are proven in tests/objectives/test_kl_decomposition.py)."""
    from pyrovae.config.combinations import decomposition_combinations
    assert not any("decomposition" in c.table.get("kl", {}) for c in cells)
    extra = decomposition_combinations(kinds=["vae", "cvae"])
    for name, c in extra:
        if c.accepted:
            assert (c.kind, c.guide, c.elbo, c.bound, c.gradient) == (
                "vae", "diagonal", "meanfield", "elbo", "reparam") and c.target == "decomposition"
        else:
            assert "\n" not in c.refused and len(c.refused) < 400, c.refused
    assert sum(c.accepted for _, c in extra) == 12  # 4 decompositions x 3 weightings


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
    """The exhaustive tier: every accepted cell that the fast tier does not check (together
    the two check each accepted cell once, with the same draws; about a minute)."""
    fast = {id(c) for c in _fast(cells)}
    failed = []
    for c in cells:
        if c.accepted and c.target != "biased" and id(c) not in fast:
            v = em.check(c, draws=30)
            if not v.passed:
                failed.append((c.label(), v))
    assert not failed, failed


# ---- a broken estimator makes the matrix fail -------------------------------------------------

@pytest.mark.parametrize("kind,guide,weighting", [("vae", "diagonal", "beta=0.5"),
                                                  ("vae", "diagonal", "warm-up"),
                                                  ("module", "one-layer", "beta=0.5"),
                                                  ("module", "two-layer", "beta=0.5")])
def test_the_old_dreg_coefficient_under_a_kl_weight_fails(cells, kind, guide, weighting):
    cell = find(cells, kind, guide, "iwae", "dreg", weighting)
    assert em.check(cell, draws=60).passed
    with em.broken("old-dreg"):
        verdict = em.check(cell, draws=60)
        # at KL weight 1 the old coefficient was right, and passes
        assert em.check(find(cells, kind, guide, "iwae", "dreg", "1"), draws=60).passed
    assert not verdict.passed and verdict.t > em.THRESHOLD, verdict


@pytest.mark.parametrize("defect,kind,guide,bound,gradient", [
    ("leak", "vae", "diagonal", "iwae", "dreg"),          # a dropped stop-gradient
    ("leak", "module", "one-layer", "iwae", "dreg"),
    ("rws-beta", "module", "discrete", "iwae", "rws"),     # wake-phi scaled by beta
    ("score-beta", "module", "discrete", "elbo", "score"),  # REINFORCE with beta log q(y)
])
def test_a_broken_estimator_fails_the_matrix(cells, defect, kind, guide, bound, gradient):
    cell = find(cells, kind, guide, bound, gradient, "beta=0.5")
    assert em.check(cell, draws=30).passed
    with em.broken(defect):
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


def test_tmc_with_several_sites_is_unbiased_for_the_weighted_evidence():
    """The multi-site tmc cells have no paired reference; their value is checked instead. With
    a KL weight beta the TMC estimate p^ = (1/K^2) sum over all combinations of the weighted
    importance ratios is unbiased for Z_beta = E_q[w] (log w = log p(x|z1) + beta (log p(z) -
    log q(z|x))), which single-draw importance weights from the independent reference also
    estimate without bias: the two means agree per point (nested guide q(z1|x) q(z2|z1, x))."""
    from benchmarks.exact_models import TwoLayer
    from benchmarks.reference_estimators import Particles
    from pyrovae.objectives import BoundObjective
    from pyrovae.runtime.rng import seeded
    m = TwoLayer(beta=0.5)
    x = m.data(4)
    tmc = BoundObjective("tmc", "reparam", num_particles=3)
    with seeded(0), torch.no_grad():
        est = torch.stack([tmc.per_point(m.model, m.guide, x)[0].exp() for _ in range(1500)])
        ref = torch.stack([Particles(m.model, m.guide, (x,), {}, 1, 1).log_w[0].exp()
                           for _ in range(6000)])
    z = (est.mean(0) - ref.mean(0)) / (est.var(0) / len(est) + ref.var(0) / len(ref)).sqrt()
    assert z.abs().max() < 4, z
    # and tmc is not the single-draw estimate: with K x K combinations its spread is smaller
    assert (est.var(0) < ref.var(0)).all()
