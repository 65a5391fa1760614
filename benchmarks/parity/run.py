"""Parity at equal budget: pyrovae's ``burda-*`` recipe (one or two stochastic layers) against
the independent plain-torch reference (reference.py), trained for the same epochs, batch, Adam,
schedule, KL warm-up, initialisation scheme and averaging, each over several seeds, and both
evaluated by both importance-sampling evaluators on the same test points.

    python -m benchmarks.parity.run --recipe burda-vae-1 --epochs 10 --seeds 3 \\
        --points 2000 --nll-samples 1000 --out runs/parity-vae

For each seed s in 0..S-1 and each implementation (pyrovae: the recipe's config with
train.epochs = E and train.seed = s through ``pyrovae.train``; reference: ``reference.train``
with the settings read from the same config), the trained (averaged) weights are evaluated by

    pyrovae     ``pyrovae.evaluate_run`` (the reference's weights copied into pyrovae's HVAE)
    reference   ``reference.log_px`` (pyrovae's weights copied into the reference's module)

with K = --nll-samples draws on the first --points test images (the fixed binarized test
set). OUT holds:

    cells/IMPL-seedS.json   one trained run: history (test ELBO and each layer's KL per
                            epoch), NLLs, active units per layer, timings
                            (a rerun with the same settings reads these, not retrains)
    results.csv             one row per implementation x seed x evaluator
    results.md              mean +- standard error over seeds per implementation x evaluator,
                            each layer's final KL and active units (pyrovae's evaluator, on
                            either side's weights), and the paired differences (pyrovae -
                            reference) over seeds
    curves.png, curves.csv  test ELBO and each layer's KL per epoch of every run (the kept,
                            averaged weights)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from benchmarks.parity import reference as ref

IMPLS = ("pyrovae", "reference")
EVALUATORS = ("pyrovae", "reference")


def say(message: str) -> None:
    print(message, flush=True)


# ---- the recipe's settings, read for the reference -----------------------------------------

def recipe_config(name: str, epochs: int, seed: int, overrides=()):
    """pyrovae's recipe config with train.epochs, train.seed (and --set overrides) applied."""
    from pyrovae.reproduce.runner import recipe_config as pyrovae_recipe_config
    return pyrovae_recipe_config(name, epochs, [f"train.seed={seed}", "train.progress=false",
                                                *overrides])


def reference_settings(config) -> ref.Settings:
    """The reference's settings from a run config, refused in one line where the config asks
    for something the reference does not implement (so parity is never claimed for a
    different model)."""
    m, t, d = config.model, config.train, config.data
    checks = {"model.kind": (m.kind, "hvae"),
              "stochastic layers": (len(m.stochastic) in (1, 2), True),
              "model.activation": (m.activation, "tanh"), "model.init": (m.init, "glorot"),
              "model.likelihood": (m.likelihood.name, "bernoulli"),
              "model.kl.beta": (m.kl.beta, 1.0),
              "model.kl.schedule": (m.kl.schedule in ("constant", "linear"), True),
              "model.kl.free_bits": (m.kl.free_bits, 0.0),
              "model.kl_free_bits": (not any(getattr(m, "kl_free_bits", ())), True),
              "model.kl.decomposition": (m.kl.decomposition, "none"),
              "model.kl_weights": (all(w == 1.0 for w in m.kl_weights), True),
              "model.objective.gradient": (m.objective.gradient, "reparam"),
              "data.binarize": (d.binarize, "dynamic"), "train.clip_norm": (t.clip_norm, 0.0)}
    for key, (value, wanted) in checks.items():
        if value != wanted:
            shown = {"stochastic layers": len(m.stochastic), "model.kl.schedule": m.kl.schedule,
                     "model.kl_weights": list(m.kl_weights),
                     "model.kl_free_bits": list(getattr(m, "kl_free_bits", ()))}.get(key, value)
            lacks = {"stochastic layers": "1 or 2", "model.kl.schedule": "constant or linear",
                     "model.kl_weights": "all 1", "model.kl_free_bits": "none"}.get(key, repr(wanted))
            raise SystemExit(f"{key} = {shown!r}: the reference implements only {lacks}; "
                             f"choose a burda recipe or drop the --set that changed it")
    if m.objective.bound not in ("elbo", "iwae") or (m.objective.default and m.elbo != "trace"):
        raise SystemExit(f"model.objective.bound = {m.objective.bound!r}, elbo = {m.elbo!r}: "
                         f"the reference implements the trace ELBO and the IWAE bound only")
    warmup = m.kl.warmup if m.kl.schedule == "linear" else 0
    return ref.Settings(hidden=tuple(tuple(h) for h in m.hidden),
                        stochastic=tuple(m.stochastic), bound=m.objective.bound,
                        k=m.num_particles, batch_size=t.batch_size, lr=t.lr, lr_min=t.lr_min,
                        schedule=t.lr_schedule, ema=t.ema, warmup=warmup)


# ---- moving weights between the two modules (for the cross-evaluation) ---------------------

def _pairs(hvae, module: ref.BurdaVAE):
    pairs = [pair for mine, theirs in ((hvae.encoder, module.encoders),
                                       (hvae.decoder, module.decoders))
             for a, b in zip(mine, theirs) for pair in zip(a.parameters(), b.parameters())]
    if len(hvae.encoder) != len(module.encoders) or any(a.shape != b.shape for a, b in pairs):
        raise RuntimeError("the two models' weights do not correspond; the two models differ")
    return pairs


@torch.no_grad()
def to_reference(hvae, settings: ref.Settings, dim: int) -> ref.BurdaVAE:
    """A reference module holding pyrovae's HVAE's weights."""
    module = ref.BurdaVAE(dim, settings.hidden, settings.stochastic)
    for a, b in _pairs(hvae, module):
        b.copy_(a)
    return module


@torch.no_grad()
def to_pyrovae_run(module: ref.BurdaVAE, config, shape):
    """A pyrovae Run (no folder) whose HVAE holds the reference module's weights."""
    from pyrovae import HVAE, Run
    hvae = HVAE(config.model, shape)
    for a, b in _pairs(hvae, module):
        a.copy_(b)
    return Run(model=hvae, config=config)


# ---- one cell: train one implementation for one seed, evaluate with both -----------------

def _evaluate(run, module, x, data, args) -> dict:
    """test NLL (+- SE over points) of the same weights by both evaluators."""
    from pyrovae import evaluate_run
    out = {}
    start = time.perf_counter()
    result = evaluate_run(run, data, nll_samples=args.nll_samples, split="test",
                          max_points=args.points, progress=False)
    out["pyrovae"] = {"nll": result["test_nll"], "se": result["test_nll_se"],
                      "seconds": time.perf_counter() - start,
                      "active_units": {k[len("active_units_"):]: v for k, v in result.items()
                                       if k.startswith("active_units_")}
                      or {"z1": result["active_units"]}}
    start = time.perf_counter()
    lp = ref.log_px(module, x, args.nll_samples, seed=0)
    out["reference"] = {"nll": float(-lp.mean()),
                        "se": float(lp.std() / math.sqrt(len(lp))),
                        "seconds": time.perf_counter() - start}
    return out


def _curve_row(row: dict) -> dict:
    """epoch, test ELBO, seconds and each layer's KL term (``test_kl_z1``, ...) of a history
    row (a one-layer pyrovae run's ``test_kl`` is its z1's)."""
    kls = {k: v for k, v in row.items() if k.startswith("test_kl_z")}
    if not kls and "test_kl" in row:
        kls = {"test_kl_z1": row["test_kl"]}
    return {"epoch": row["epoch"], "test_elbo": row["test_elbo"], **kls,
            "seconds": row["seconds"]}


def train_cell(impl: str, seed: int, args, data) -> dict:
    """Train ``impl`` with ``seed`` for args.epochs and evaluate it by both evaluators."""
    config = recipe_config(args.recipe, args.epochs, seed, args.set)
    settings = reference_settings(config)
    x = data.test_data()[:args.points] if args.points else data.test_data()
    start = time.perf_counter()
    if impl == "pyrovae":
        from pyrovae import train
        run = train(config, data)
        history = [_curve_row(r) for r in run.history]
        module = to_reference(run.model, settings, data.dim)
    else:
        module, rows = ref.train(data, settings, args.epochs, seed, say)
        history = [_curve_row(r) for r in rows]
        run = to_pyrovae_run(module, config, data.shape)
    wall = time.perf_counter() - start
    train_seconds = sum(r["seconds"] for r in history)
    say(f"{impl} seed {seed}: trained {args.epochs} epochs in {wall:.0f} s "
        f"({train_seconds / args.epochs:.1f} s/epoch), final test ELBO "
        f"{history[-1]['test_elbo']:.2f}; evaluating (K = {args.nll_samples}) ...")
    nll = _evaluate(run, module, x, data, args)
    say(f"{impl} seed {seed}: test NLL {nll['pyrovae']['nll']:.2f} (pyrovae's evaluator, "
        f"{nll['pyrovae']['seconds']:.0f} s), {nll['reference']['nll']:.2f} (reference's, "
        f"{nll['reference']['seconds']:.0f} s)")
    return {"impl": impl, "seed": seed, "key": cell_key(args), "history": history,
            "sec_per_epoch": train_seconds / args.epochs, "train_wall": wall, "nll": nll,
            "settings": settings.__dict__}


def cell_key(args) -> dict:
    """What a cell's numbers depend on (a saved cell with another key is recomputed)."""
    return {"recipe": args.recipe, "epochs": args.epochs, "points": args.points,
            "nll_samples": args.nll_samples, "set": list(args.set)}


# ---- the tables and the figure -------------------------------------------------------------

def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error std / sqrt(n) (nan for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def summarise(cells: list[dict]) -> dict:
    """(impl, evaluator) -> (mean, se, values) over seeds; ("diff", evaluator) -> pyrovae -
    reference paired by seed; ("evaluators", impl) -> pyrovae's - reference's evaluator on
    the same weights."""
    table = {}
    by = {(c["impl"], c["seed"]): c for c in cells}
    seeds = sorted({c["seed"] for c in cells})
    for impl in IMPLS:
        for ev in EVALUATORS:
            vals = [by[impl, s]["nll"][ev]["nll"] for s in seeds if (impl, s) in by]
            if vals:
                table[impl, ev] = (*mean_se(vals), vals)
        vals = [by[impl, s]["nll"]["pyrovae"]["nll"] - by[impl, s]["nll"]["reference"]["nll"]
                for s in seeds if (impl, s) in by]
        if vals:
            table["evaluators", impl] = (*mean_se(vals), vals)
    both = [s for s in seeds if ("pyrovae", s) in by and ("reference", s) in by]
    for ev in EVALUATORS:
        vals = [by["pyrovae", s]["nll"][ev]["nll"] - by["reference", s]["nll"][ev]["nll"]
                for s in both]
        if vals:
            table["diff", ev] = (*mean_se(vals), vals)
    return table


def _layer_numbers(cell: dict) -> dict:
    """The last epoch's KL term of each layer (``kl_z1``, ...) and each layer's active units
    by pyrovae's evaluator (``active_units_z1``, ...) of one cell."""
    last = cell["history"][-1]
    kls = {k[len("test_"):]: v for k, v in last.items() if k.startswith("test_kl_z")}
    units = cell["nll"]["pyrovae"].get("active_units", {})
    return {**kls, **{f"active_units_{k}": v for k, v in units.items()}}


def _pm(mean: float, se: float) -> str:
    return f"{mean:.2f} ± {se:.2f}" if not math.isnan(se) else f"{mean:.2f}"


def write_outputs(cells: list[dict], args, out: Path, command: str) -> str:
    """results.csv, results.md, curves.csv and curves.png; returns the markdown."""
    from pyrovae.runtime.files import write_csv

    rows = []
    for c in cells:
        for ev in EVALUATORS:
            rows.append({"recipe": args.recipe, "epochs": args.epochs, "impl": c["impl"],
                         "seed": c["seed"], "evaluator": ev, "test_nll": c["nll"][ev]["nll"],
                         "test_nll_se_points": c["nll"][ev]["se"],
                         "eval_seconds": c["nll"][ev]["seconds"],
                         "final_test_elbo": c["history"][-1]["test_elbo"],
                         **_layer_numbers(c),
                         "sec_per_epoch": c["sec_per_epoch"], "points": args.points,
                         "nll_samples": args.nll_samples})
    write_csv(out / "results.csv", rows)
    write_csv(out / "curves.csv", [{"impl": c["impl"], "seed": c["seed"], **r}
                                   for c in cells for r in c["history"]])
    t = summarise(cells)
    by = {(c["impl"], c["seed"]): c for c in cells}
    lines = [f"`{command}`", "",
             f"{args.recipe}, {args.epochs} epochs each, test NLL (nats) by importance sampling "
             f"with K = {args.nll_samples} on the first {args.points or 'all'} test images; "
             f"mean ± standard error over seeds.", "",
             "| implementation | seeds | NLL, pyrovae's evaluator | NLL, reference's evaluator "
             "| final test ELBO | final KL per layer | active units per layer | s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for impl in IMPLS:
        mine = [c for c in cells if c["impl"] == impl]
        if not mine:
            continue
        elbo = mean_se([c["history"][-1]["test_elbo"] for c in mine])
        spe = sum(c["sec_per_epoch"] for c in mine) / len(mine)
        cols = [_pm(*t[impl, ev][:2]) if (impl, ev) in t else "" for ev in EVALUATORS]
        layers = [_layer_numbers(c) for c in mine]
        kl = " / ".join(_pm(*mean_se([n[k] for n in layers])[:2]) for k in layers[0]
                        if k.startswith("kl_"))
        au = " / ".join(", ".join(str(n[k]) for n in layers) for k in layers[0]
                        if k.startswith("active_"))
        lines.append(f"| {impl} | {len(mine)} | {cols[0]} | {cols[1]} | {_pm(*elbo)} | {kl} "
                     f"| {au} | {spe:.1f} |")
    lines += ["", "| difference | mean ± SE over seeds | per seed |", "|---|---|---|"]
    for ev in EVALUATORS:
        if ("diff", ev) in t:
            m, se, vals = t["diff", ev]
            lines.append(f"| pyrovae − reference, {ev}'s evaluator | {_pm(m, se)} | "
                         f"{', '.join(f'{v:+.2f}' for v in vals)} |")
    for impl in IMPLS:
        if ("evaluators", impl) in t:
            m, se, vals = t["evaluators", impl]
            lines.append(f"| pyrovae's − reference's evaluator, {impl}'s weights | "
                         f"{_pm(m, se)} | {', '.join(f'{v:+.3f}' for v in vals)} |")
    lines += ["", "Per seed (NLL by pyrovae's / reference's evaluator; ± over test points):", ""]
    for (impl, seed), c in sorted(by.items()):
        n = c["nll"]
        lines.append(f"- {impl} seed {seed}: {n['pyrovae']['nll']:.2f} ± "
                     f"{n['pyrovae']['se']:.2f} / {n['reference']['nll']:.2f} ± "
                     f"{n['reference']['se']:.2f}")
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    _plot(cells, args, out / "curves.png")
    return text


def _plot(cells: list[dict], args, path: Path) -> None:
    """Test ELBO per epoch (left) and each layer's KL term per epoch (right; z1 solid, z2
    dashed) of every run, coloured by implementation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"pyrovae": "tab:blue", "reference": "tab:orange"}
    styles = {"test_kl_z1": "-", "test_kl_z2": "--"}
    for c in cells:
        epochs = [r["epoch"] for r in c["history"]]
        first = c["seed"] == min(d["seed"] for d in cells if d["impl"] == c["impl"])
        left.plot(epochs, [r["test_elbo"] for r in c["history"]], color=colours[c["impl"]],
                  alpha=0.8, label=c["impl"] if first else None)
        for key, style in styles.items():
            if key in c["history"][-1]:
                right.plot(epochs, [r.get(key) for r in c["history"]], style,
                           color=colours[c["impl"]], alpha=0.8,
                           label=f"{c['impl']} {key[len('test_kl_'):]}" if first else None)
    left.set_xlabel("epoch")
    left.set_ylabel("test ELBO (nats, averaged weights)")
    left.set_title(f"{args.recipe}: pyrovae vs plain-torch reference")
    left.legend()
    right.set_xlabel("epoch")
    right.set_ylabel("KL term per layer (nats)")
    right.set_title("each stochastic layer's KL (z1 solid, z2 dashed)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the command ---------------------------------------------------------------------------

def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.parity.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="burda-vae-1",
                   help="a burda recipe, one or two stochastic layers (burda-vae-1, "
                        "burda-iwae5-1, burda-iwae5-2, ...)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of each run (both sides)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 of each side")
    p.add_argument("--points", type=int, default=2000, help="first N test images (0 = all)")
    p.add_argument("--nll-samples", type=int, default=1000, help="K draws per point")
    p.add_argument("--set", action="append", default=[],
                   help="a pyrovae override of the recipe, applied to both sides (e.g. "
                        "train.ema=0, or data.name=\"digits\" for a quick check)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    p.add_argument("--out", default="runs/parity", help="the output folder")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.seeds < 1 or args.nll_samples < 25 or args.points < 0:
        p.error("--epochs and --seeds must be >= 1, --nll-samples >= 25, --points >= 0")
    args.points = args.points or None
    return args


def main(argv=None) -> str:
    args = parse(argv)
    command = "python -m benchmarks.parity.run " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    config = recipe_config(args.recipe, args.epochs, 0, args.set)
    reference_settings(config)  # refuse a recipe the reference does not implement, up front
    say(f"loading {config.data.name} ...")
    data = ref.load_data(config.data)
    cells = []
    for seed in range(args.seeds):
        for impl in IMPLS:
            path = out / "cells" / f"{impl}-seed{seed}.json"
            if path.is_file():
                saved = json.loads(path.read_text())
                if saved.get("key") == cell_key(args):
                    say(f"{impl} seed {seed}: read from {path}")
                    cells.append(saved)
                    continue
            say(f"{impl} seed {seed}: training {args.recipe} for {args.epochs} epochs ...")
            cell = train_cell(impl, seed, args, data)
            path.write_text(json.dumps(cell, indent=1))
            cells.append(cell)
            write_outputs(cells, args, out, command)
    text = write_outputs(cells, args, out, command)
    say(text)
    return text


if __name__ == "__main__":
    main()
