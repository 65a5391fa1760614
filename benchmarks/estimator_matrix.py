"""The combination matrix, checked: every bound x gradient x KL weighting x kind x guide that
the config accepts (``pyrovae.config.combinations``), held against a reference gradient written
independently of ``pyrovae/objectives`` (``benchmarks/reference_estimators.py``).

    python -m benchmarks.estimator_matrix                 # every accepted cell (~ minutes)
    python -m benchmarks.estimator_matrix --kinds vae --draws 60

For a cell: the kind's tiny model on 16 scikit-learn digits (dynamic binarization), its
trainer built as ``pyrovae train`` builds it (the warm-up read at step 5, beta_t = 0.5 of its
top), then R draws of the pyrovae estimator's loss gradient g_r and, on the same random
numbers, of the reference gradient h_r of the cell's target (``bound``: the reparameterised +
REINFORCE gradient of E[bound]; ``wake``: wake-theta/wake-phi; ``piwae``: IWAE(M K) for the
model's parameters, MIWAE(M, K) for the guide's). With d_r = g_r - h_r, mean m and standard
error s (per parameter):

    bias = |m| / |mean h|     (the relative error of the mean gradient)
    T    = |m|^2 / |s|^2      (~ 1 when unbiased; a bias of a few standard errors gives >> 9)

A cell passes when T < 9, or |m| < 1e-5 of the draws' typical norm (estimator and reference
equal draw by draw, up to rounding), and the loss values agree the same way (the objective's
value is -(N/B) sum_b L_b of the bound its docs name; Pyro's meanfield reaches it only in
expectation). For the exact modules the estimator's and the reference's own means must also
meet the known answer (``known_answer``). Writes ``docs/figures/estimator_matrix.md`` (the table
docs/estimators.md shows) and ``benchmarks/results/estimator_matrix.json``.

The KL decomposition axis (``[model.kl] decomposition``: tc, dip-i, dip-ii) is held at
``none`` in these cells; its own cells (``combinations.decomposition_combinations``) are
counted in the JSON's ``decompositions``, and its accepted ones (vae, diagonal, meanfield) are
held draw by draw against a plain-torch reference of the stated surrogate in
``tests/objectives/test_kl_decomposition.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from benchmarks.exact_models import MODELS, Discrete, OneLayer
from benchmarks.reference_estimators import reference_draw
from pyrovae import DataConfig, RunConfig, TrainConfig, load_dataset
from pyrovae.config.combinations import (WARMUP_STEP, Combination, combinations,
                                         decomposition_combinations, summary, with_biased)
from pyrovae.config.fields import section_from_dict
from pyrovae.runtime.interface import InterfaceError, max_plate_nesting
from pyrovae.objectives import has_differentiable_loss, objective_for
from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.runtime.rng import seeded
from pyrovae.training.trainer import trainer_class
from pyrovae.kinds.module.model import build_user_module

ROOT = Path(__file__).resolve().parent.parent
BATCH, THRESHOLD, ROUNDING = 16, 9.0, 1e-5
EXACT_N = 100   # the exact modules' data set size N (a minibatch of 6 or 4: N/B != 1)
EXACT_DRAWS = 3  # the exact modules' cells take this many times the draws


@dataclass
class Verdict:
    """What a cell's check measured."""

    passed: bool
    bias: float          # |m| / |mean reference|
    t: float             # |m|^2 / |s|^2
    draws: int
    note: str = ""


@dataclass
class Case:
    """What a cell's check runs: the objective, the two programs, their arguments, the
    parameters, the model's plate nesting and the bound's settings."""

    objective: object
    model: object
    guide: object
    args: tuple
    kwargs: dict
    params: list
    nesting: int
    particles: int          # S: every draw (M K for miwae/piwae)
    settings: dict
    exact: object = None    # the module, for the known-answer tier (module cells)


_DATA: dict = {}


def _digits():
    if "digits" not in _DATA:
        _DATA["digits"] = load_dataset("digits", binarize="dynamic", train_size=128,
                                       test_size=16)
    return _DATA["digits"]


def _settings(config) -> tuple[int, dict]:
    objective = getattr(config, "objective", None)
    settings = {}
    if objective is not None:
        # the chosen bound's own settings (the defaults of the others, as before)
        settings = dict(groups=getattr(objective, "groups", 1),
                        alpha=getattr(objective, "renyi_alpha", 0.5),
                        b=getattr(objective, "ciwae_beta", 0.5))
    grouped = objective is not None and objective.bound in ("miwae", "piwae")
    return config.num_particles * (settings["groups"] if grouped else 1), settings


def build(cell: Combination) -> Case:
    """A cell's case, as ``pyrovae train`` builds it: the kind's trainer on 16 digits (a
    warm-up read at step 5), or for kind "module" the exact model the cell names."""
    cls = MODEL_KINDS.capability(cell.kind, "config")
    model = section_from_dict(cls, cell.table, "model")
    particles, settings = _settings(model)
    if cell.kind == "module":
        module = build_user_module(model, (EXACT_N,))
        x = module.data()
        return Case(objective_for(model, 1), module.model, module.guide, (x,),
                    {"n_data": EXACT_N}, list(module.parameters()), 1, particles, settings,
                    module)
    config = RunConfig(model=model, data=DataConfig(name="digits", binarize="dynamic"),
                       train=TrainConfig(batch_size=BATCH, progress=False, fast=False, seed=0))
    trainer = trainer_class(config)(config, _digits(), None)
    trainer.prepare()
    trainer.step = WARMUP_STEP
    xb = trainer.data.train_data(1, 0)[:BATCH]
    params = [p for p in trainer.vae.parameters() if p.requires_grad]
    return Case(trainer.elbo, trainer.model_fn, trainer.guide_fn, trainer.step_args(xb),
                {"n_data": trainer.n}, params, max_plate_nesting(trainer.vae), particles,
                settings)


def _flat(params) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params]).double()


def estimator_draw(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of pyrovae's (loss value, loss gradient)."""
    for p in case.params:
        p.grad = None
    if has_differentiable_loss(case.objective):
        loss = case.objective.differentiable_loss(case.model, case.guide, *case.args,
                                                  **case.kwargs)
        loss.backward()
    else:
        loss = case.objective.loss_and_grads(case.model, case.guide, *case.args, **case.kwargs)
    value = loss.detach() if torch.is_tensor(loss) else torch.tensor(loss)
    return value.double(), _flat(case.params)


def estimator_gradient(case: Case) -> torch.Tensor:
    return estimator_draw(case)[1]


def reference(case: Case, target: str, bound: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of the reference (loss value, gradient of ``target``) on the same random
    numbers."""
    value, grad = reference_draw(target, bound, case.model, case.guide, case.args, case.kwargs,
                                 case.params, case.particles, case.nesting, **case.settings)
    return value.double(), grad.double()


def _t(d: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(mean, T = |mean|^2 / |standard error|^2) of paired differences d [R, P]."""
    m, s = d.mean(0), d.std(0) / d.shape[0] ** 0.5
    return m, float(m.pow(2).sum() / s.pow(2).sum().clamp_min(1e-300))


def compare(estimator, reference, draws: int, seed: int = 0) -> Verdict:
    """Paired draws of two (loss value, gradient) functions on the same random numbers (module
    docstring): both the values' and the gradients' means must agree."""
    values, diffs, refs = [], [], []
    for r in range(draws):
        with seeded(seed + r):
            v, g = estimator()
        with seeded(seed + r):
            w, h = reference()
        values.append(torch.stack([v - w, w]))
        diffs.append(g - h)
        refs.append(h)
    d, h, vals = torch.stack(diffs), torch.stack(refs), torch.stack(values)
    m, t = _t(d)
    bias = float(m.norm() / h.mean(0).norm().clamp_min(1e-300))
    exact = float(m.norm()) < ROUNDING * float(h.norm(dim=1).mean())
    mv, tv = _t(vals[:, :1])
    value_exact = float(mv.abs()) < ROUNDING * float(vals[:, 1].abs().mean())
    passed = (exact or t < THRESHOLD) and (value_exact or tv < THRESHOLD)
    note = "equal draw by draw" if exact and value_exact else ""
    if not (value_exact or tv < THRESHOLD):
        note = f"value off: T {tv:.1f}"
    return Verdict(passed, bias, 0.0 if exact else t, draws, note)


def against_exact(draws_fn, exact: torch.Tensor, draws: int, seed: int = 0) -> Verdict:
    """Unpaired: the mean of ``draws`` gradient draws against an exact expected gradient."""
    with seeded(seed):
        g = torch.stack([draws_fn() for _ in range(draws)])
    m, s = g.mean(0) - exact, g.std(0) / draws ** 0.5
    t = float(m.pow(2).sum() / s.pow(2).sum().clamp_min(1e-300))
    exact_hit = float(m.norm()) < ROUNDING * float(g.norm(dim=1).mean())
    return Verdict(exact_hit or t < THRESHOLD, float(m.norm() / exact.norm()), t, draws,
                   "exact answer")


def known_answer(cell: Combination, case: Case) -> torch.Tensor | None:
    """The exact expected loss gradient of an exact module's cell, where it is closed form:
    the one-layer model's ELBO (any estimator of it), the discrete model's ELBO, IWAE and
    wake-phi (by enumeration)."""
    module = case.exact
    x, n = case.args[0], case.kwargs["n_data"]
    if isinstance(module, OneLayer) and cell.bound == "elbo" and cell.target == "bound":
        grads = torch.autograd.grad(module.exact_loss(x, n), case.params)
        return torch.cat([g.reshape(-1) for g in grads])
    if isinstance(module, Discrete) and cell.target in ("bound", "wake") and cell.bound in (
            "elbo", "iwae"):
        return module.exact_gradient(x, cell.target, cell.bound, case.particles, n)
    return None


def check(cell: Combination, draws: int = 60, seed: int = 0) -> Verdict:
    """Hold one accepted cell against its target (module docstring); a cell the first step
    refuses in one line (a module's guide the estimator cannot serve) says so."""
    if cell.target == "biased":
        return Verdict(True, float("nan"), float("nan"), 0, "biased: asked for by name")
    case = build(cell)
    target, bound = cell.target, cell.bound
    if case.exact is not None:
        draws *= EXACT_DRAWS     # tiny models: more draws, for the sharpest check
    try:
        with seeded(seed):
            estimator_gradient(case)
    except InterfaceError as err:
        return Verdict(True, float("nan"), float("nan"), 0, f"refused at the first step: {err}")
    if cell.bound == "tmc":
        if _latent_sites(case) > 1:   # K^n combinations: no paired reference
            return Verdict(True, float("nan"), float("nan"), 0, TMC_NOTE)
        bound = "iwae"                # one site: TMC(K) is IWAE(K), draw by draw
    verdict = compare(lambda: estimator_draw(case), lambda: reference(case, target, bound),
                      draws, seed)
    if case.exact is not None:
        exact = known_answer(cell, case)
        if exact is not None:         # the estimator's own mean against the known answer
            own = against_exact(lambda: estimator_gradient(case), exact, 4 * draws, seed + 1)
            ref = against_exact(lambda: reference(case, target, bound)[1], exact, 4 * draws,
                                seed + 2)
            ok = verdict.passed and own.passed and ref.passed
            verdict = Verdict(ok, own.bias, max(verdict.t, own.t, ref.t), verdict.draws,
                              f"exact answer (T {own.t:.1f}; reference T {ref.t:.1f})")
    return verdict


TMC_NOTE = ("tmc with several latent sites: its value is an unbiased estimate of p(x) "
            "(tests/objectives/test_estimators.py, linear-Gaussian, nested and all-pairs guides) and its "
            "gradient the autograd of that value")


def _latent_sites(case: Case) -> int:
    with seeded(0), torch.no_grad():
        trace = poutine.trace(case.guide).get_trace(*case.args, **case.kwargs)
    return sum(1 for s in trace.nodes.values()
               if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s))


def exact_cells(cell: Combination) -> list[Combination]:
    """A module cell, once per exact model and KL weight (1, 0.5): the module's own weight."""
    out = []
    for name in MODELS:
        for beta in (1.0, 0.5):
            table = {**cell.table, "target": f"benchmarks.exact_models:{MODELS[name].__name__}",
                     "args": {"beta": beta}}
            out.append(dataclasses.replace(cell, guide=name, table=table,
                                           weighting="1" if beta == 1 else f"beta={beta:g}"))
    return out


def cells(kinds=None, biased: bool = True) -> list[Combination]:
    """Every cell (module cells once per exact model and KL weight), plus the biased
    estimators asked for by name (``with_biased``)."""
    out = []
    for c in combinations(kinds=kinds):
        out += exact_cells(c) if c.kind == "module" else [c]
    if biased:
        out += [with_biased(c) for c in out if not c.accepted and "objective.biased" in c.refused]
    return out


def markdown(rows: list[tuple[Combination, Verdict | None]]) -> str:
    """The accepted cells, one row each with what it estimates and how it was checked; then
    the refused ones, grouped by kind, pair and the refusal's reason."""
    lines = ["| kind | guide | bound | gradient | KL weight | estimates | status | bias | T |",
             "|---|---|---|---|---|---|---|---:|---:|"]
    for c, v in rows:
        if not c.accepted:
            continue
        if c.target == "biased":
            status = "biased (opt-in)"
        elif v is None or not v.passed:
            status = "FAILED"
        elif v.note.startswith("refused"):
            status = "refused at step 1"
        elif v.draws == 0:
            status = "value checked (tests)"
        else:
            status = "exact answer" if v.note.startswith("exact") else "checked"
        bias = "" if v is None or v.draws == 0 else f"{v.bias:.1e}"
        t = "" if v is None or v.draws == 0 else ("=" if v.note.startswith("equal")
                                                   else f"{v.t:.1f}")
        lines.append(f"| {c.kind} | {c.guide} | {c.bound} | {c.estimator} | {c.weighting} | "
                     f"{c.target} | {status} | {bias} | {t} |")
    groups: dict[tuple, list] = {}
    for c, _ in rows:
        if not c.accepted:
            key = (c.kind, c.bound, c.estimator, c.refused)
            groups.setdefault(key, []).append(c)
    lines += ["", "Refused when the config is read (one line each; guides and KL weights "
              "grouped):", "",
              "| kind | bound | gradient | guides | KL weights | refusal |",
              "|---|---|---|---|---|---|"]
    for (kind, bound, estimator, reason), group in groups.items():
        guides = ", ".join(dict.fromkeys(c.guide for c in group))
        weights = ", ".join(dict.fromkeys(c.weighting for c in group))
        reason = reason.replace("|", "\\|")
        lines.append(f"| {kind} | {bound} | {estimator} | {guides} | {weights} | {reason} |")
    return "\n".join(lines) + "\n"


# ---- deliberately broken estimators: the matrix must fail them -----------------------------

@contextlib.contextmanager
def broken(name: str):
    """Patch one known defect into pyrovae's estimators for the duration of the block:

    old-dreg    DReG's z-path coefficient w~^2 (e/c = 1 - dlog c) whatever the KL weight
    leak        log q at the fixed values keeps its z-path (a dropped stop-gradient)
    rws-beta    wake-phi with the KL-weighted log q (beta times the target)
    score-beta  the REINFORCE term with beta log q(y) (the KL weight of the draw's log q)
    """
    from pyrovae.objectives import particles
    from pyrovae.objectives.gradients import base, dreg, rws, score
    patches = {
        "old-dreg": (dreg.DReG, "surrogate", lambda self, bound, draw: base.pathwise(
            bound, draw, 1 - bound.dlog_c(draw.log_w.detach()))),
        "leak": (particles, "_log_q", _leaky(particles._log_q)),
        "rws-beta": (rws.RWS, "surrogate", lambda self, bound, draw: base.weighted(
            bound.log_c(draw.log_w), draw.log_p) + base.weighted(
            draw.log_w.detach() - torch.logsumexp(draw.log_w.detach(), 0), draw.log_q)),
        "score-beta": (score, "with_score_terms", _weighted_score),
    }
    owner, attr, replacement = patches[name]
    original = getattr(owner, attr)
    setattr(owner, attr, replacement)
    try:
        yield
    finally:
        setattr(owner, attr, original)


def _leaky(log_q):
    def leaky(guide_trace, latents, shape, fixed=False):
        return log_q(guide_trace, latents, shape, fixed=False)
    return leaky


def _weighted_score(bound, draw, signal):
    weight = draw.kl_weight if draw.kl_weight is not None else 1.0
    return bound.value(draw.log_w) + (signal(draw.log_w.detach()) * weight
                                      * draw.log_q_score).sum(0)


#: (defect, kind, guide, bound, gradient, KL weight) measured by ``--broken``
BROKEN = [("old-dreg", "vae", "diagonal", "iwae", "dreg", w) for w in ("beta=0.5", "warm-up", "1")] + [
    ("old-dreg", "module", g, "iwae", "dreg", w) for g in ("one-layer", "two-layer")
    for w in ("beta=0.5", "1")] + [
    ("leak", "vae", "diagonal", "iwae", "dreg", "beta=0.5"),
    ("leak", "module", "one-layer", "iwae", "dreg", "beta=0.5"),
    ("rws-beta", "module", "discrete", "iwae", "rws", "beta=0.5"),
    ("score-beta", "module", "discrete", "elbo", "score", "beta=0.5")]


def find(all_cells, kind, guide, bound, gradient, weighting, elbo="trace") -> Combination:
    """The one cell with these axes (the biased opt-in variants left out)."""
    (cell,) = [c for c in all_cells if (c.kind, c.guide, c.bound, c.gradient, c.weighting,
                                        c.elbo) == (kind, guide, bound, gradient, weighting, elbo)
               and c.target != "biased"]
    return cell


def measure_broken(draws: int) -> list[dict]:
    """Each defect of ``BROKEN`` on its cell: the verdict with and without it."""
    all_cells = cells(["vae", "module"], biased=False)
    rows = []
    for defect, *axes in BROKEN:
        cell = find(all_cells, *axes)
        sound = check(cell, draws)
        with broken(defect):
            bad = check(cell, draws)
        rows.append({"defect": defect, "cell": cell.label(), "sound_t": sound.t,
                     "sound_passed": sound.passed, "broken_t": bad.t,
                     "broken_passed": bad.passed, "note": bad.note})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="*", default=None)
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--broken", action="store_true",
                        help="measure the deliberately broken estimators (BROKEN) instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.broken:
        rows = measure_broken(args.draws)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "estimator_matrix_broken.json").write_text(json.dumps(rows, indent=1))
        for r in rows:
            print(f"{r['defect']:10s} {r['cell']:55s} sound T {r['sound_t']:8.1f} "
                  f"broken T {r['broken_t']:9.1f} {'FAILS' if not r['broken_passed'] else 'passes'}")
        return 0
    from tqdm import tqdm
    todo = cells(args.kinds)
    start = time.perf_counter()
    rows = []
    for c in tqdm(todo, desc="cells"):
        rows.append((c, check(c, args.draws) if c.accepted else None))
    seconds = time.perf_counter() - start
    failed = [c.label() for c, v in rows if v is not None and not v.passed]
    result = {"summary": summary([c for c, _ in rows]),
              "decompositions": summary([c for _, c in decomposition_combinations(
                  kinds=args.kinds)]), "seconds": seconds,
              "draws": args.draws, "failed": failed,
              "cells": [{"label": c.label(), "refused": c.refused, "target": c.target,
                         **({"bias": v.bias, "t": v.t, "passed": v.passed, "note": v.note}
                            if v else {})} for c, v in rows]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimator_matrix.json").write_text(json.dumps(result, indent=1))
    (ROOT / "docs" / "figures" / "estimator_matrix.md").write_text(markdown(rows))
    print(json.dumps({k: result[k] for k in ("summary", "decompositions", "seconds", "failed")},
                     indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
