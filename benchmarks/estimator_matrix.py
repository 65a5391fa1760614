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
equal draw by draw, up to rounding). Writes ``docs/figures/estimator_matrix.md`` (the table
docs/estimators.md shows) and ``benchmarks/results/estimator_matrix.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from benchmarks.reference_estimators import reference_gradient
from pyrovae import DataConfig, RunConfig, TrainConfig, load_dataset
from pyrovae.config.combinations import (WARMUP_STEP, Combination, combinations, summary,
                                         with_biased)
from pyrovae.config.fields import section_from_dict
from pyrovae.interface import max_plate_nesting
from pyrovae.objectives import has_differentiable_loss
from pyrovae.registry import MODEL_KINDS
from pyrovae.rng import seeded
from pyrovae.training.trainer import trainer_class

ROOT = Path(__file__).resolve().parent.parent
BATCH, THRESHOLD, ROUNDING = 16, 9.0, 1e-5


@dataclass
class Verdict:
    """What a cell's check measured."""

    passed: bool
    bias: float          # |m| / |mean reference|
    t: float             # |m|^2 / |s|^2
    draws: int
    note: str = ""


_DATA: dict = {}


def _data(kind: str):
    key = "digits"
    if key not in _DATA:
        _DATA[key] = load_dataset("digits", binarize="dynamic", train_size=128, test_size=16)
    return _DATA[key]


def build(cell: Combination):
    """(trainer, minibatch, args) of a cell, as ``pyrovae train`` would build it."""
    cls = MODEL_KINDS.capability(cell.kind, "config")
    model = section_from_dict(cls, cell.table, "model")
    data = _data(cell.kind)
    config = RunConfig(model=model, data=DataConfig(name="digits", binarize="dynamic"),
                       train=TrainConfig(batch_size=BATCH, progress=False, fast=False, seed=0))
    trainer = trainer_class(config)(config, data, None)
    trainer.prepare()
    trainer.step = WARMUP_STEP
    xb = trainer.data.train_data(1, 0)[:BATCH]
    return trainer, xb, trainer.step_args(xb)


def _estimator_gradient(trainer, args, params) -> torch.Tensor:
    for p in params:
        p.grad = None
    elbo = trainer.elbo
    if has_differentiable_loss(elbo):
        elbo.differentiable_loss(trainer.model, trainer.guide, *args, n_data=trainer.n).backward()
    else:
        elbo.loss_and_grads(trainer.model, trainer.guide, *args, n_data=trainer.n)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params]).double()


def _reference(cell: Combination, trainer, args, params) -> torch.Tensor:
    objective = getattr(trainer.config.model, "objective", None)
    settings = {}
    if objective is not None:
        settings = dict(groups=objective.groups, alpha=objective.renyi_alpha,
                        b=objective.ciwae_beta)
    k = trainer.config.model.num_particles
    grouped = cell.bound in ("miwae", "piwae")
    particles = k * (settings.get("groups", 1) if grouped else 1)
    return reference_gradient(cell.target, cell.bound, trainer.model, trainer.guide, args,
                              {"n_data": trainer.n}, params, particles,
                              max_plate_nesting(trainer.vae), **settings).double()


def compare(estimator, reference, draws: int, seed: int = 0) -> Verdict:
    """Paired draws of two gradient functions on the same random numbers (module docstring)."""
    diffs, refs = [], []
    for r in range(draws):
        with seeded(seed + r):
            g = estimator()
        with seeded(seed + r):
            h = reference()
        diffs.append(g - h)
        refs.append(h)
    d, h = torch.stack(diffs), torch.stack(refs)
    m, s = d.mean(0), d.std(0) / draws ** 0.5
    scale = h.norm(dim=1).mean()
    bias = float(m.norm() / h.mean(0).norm().clamp_min(1e-300))
    t = float(m.pow(2).sum() / s.pow(2).sum().clamp_min(1e-300))
    exact = float(m.norm()) < ROUNDING * float(scale)
    return Verdict(exact or t < THRESHOLD, bias, 0.0 if exact else t, draws,
                   "equal draw by draw" if exact else "")


def check(cell: Combination, draws: int = 60, seed: int = 0) -> Verdict:
    """Hold one accepted cell against its target (module docstring)."""
    if cell.target == "biased":
        return Verdict(True, float("nan"), float("nan"), 0, "biased: asked for by name")
    trainer, xb, args = build(cell)
    params = [p for p in trainer.vae.parameters() if p.requires_grad]
    reference = cell
    if cell.bound == "tmc":
        if _latent_sites(trainer, args) > 1:   # K^n combinations: no paired reference
            return Verdict(True, float("nan"), float("nan"), 0, TMC_NOTE)
        reference = dataclasses.replace(cell, bound="iwae")  # one site: TMC(K) is IWAE(K)
    return compare(lambda: _estimator_gradient(trainer, args, params),
                   lambda: _reference(reference, trainer, args, params), draws, seed)


TMC_NOTE = ("tmc with several latent sites: its value is an unbiased estimate of p(x) "
            "(tests/test_estimators.py, linear-Gaussian, nested and all-pairs guides, "
            "beta 1 and 0.5) and its gradient the autograd of that value")


def _latent_sites(trainer, args) -> int:
    with seeded(0), torch.no_grad():
        trace = poutine.trace(trainer.guide).get_trace(*args, n_data=trainer.n)
    return sum(1 for s in trace.nodes.values()
               if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s))


def cells(kinds=None, biased: bool = True) -> list[Combination]:
    """The accepted cells, plus the biased estimators asked for by name (``with_biased``)."""
    out = [c for c in combinations(kinds=kinds)]
    if biased:
        out += [with_biased(c) for c in out if not c.accepted and "objective.biased" in c.refused]
    return out


def markdown(rows: list[tuple[Combination, Verdict | None]]) -> str:
    lines = ["| kind | guide | bound | gradient | KL weight | estimates | status | bias | T |",
             "|---|---|---|---|---|---|---|---:|---:|"]
    for c, v in rows:
        if not c.accepted:
            continue
        status = "biased (opt-in)" if c.target == "biased" else (
            "checked" if v and v.passed and v.draws else ("value checked (tests)"
                                                           if v and v.passed else "FAILED"))
        bias = "" if v is None or v.draws == 0 else f"{v.bias:.1e}"
        t = "" if v is None or v.draws == 0 else ("=" if v.note else f"{v.t:.1f}")
        lines.append(f"| {c.kind} | {c.guide} | {c.bound} | {c.estimator} | {c.weighting} | "
                     f"{c.target} | {status} | {bias} | {t} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="*", default=None)
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from tqdm import tqdm
    todo = cells(args.kinds)
    start = time.perf_counter()
    rows = []
    for c in tqdm(todo, desc="cells"):
        rows.append((c, check(c, args.draws) if c.accepted else None))
    seconds = time.perf_counter() - start
    failed = [c.label() for c, v in rows if v is not None and not v.passed]
    result = {"summary": summary([c for c, _ in rows]), "seconds": seconds,
              "draws": args.draws, "failed": failed,
              "cells": [{"label": c.label(), "refused": c.refused, "target": c.target,
                         **({"bias": v.bias, "t": v.t, "passed": v.passed, "note": v.note}
                            if v else {})} for c, v in rows]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimator_matrix.json").write_text(json.dumps(result, indent=1))
    (ROOT / "docs" / "figures" / "estimator_matrix.md").write_text(markdown(rows))
    print(json.dumps({k: result[k] for k in ("summary", "seconds", "failed")}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
