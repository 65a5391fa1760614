"""Cost of the guide families (``[model.posterior]``): time per training step of each against the
diagonal Gaussian, on MNIST, so that runs can be compared at equal training time.

    python -m benchmarks.posterior_speed [--reps 7] [--steps 10] [--threads 1]
                                         [--families diagonal iaf]
                                         [--out benchmarks/results/posterior_speed.json]

What is timed: pyrovae's own training step (``Trainer.train_step``: the compiled JitTrace_ELBO
of ``elbo = "trace"``, fused Adam; benchmarks/common.py), for configs/mnist.toml's VAE
(784-400-50 MLP, softplus, Bernoulli, N(0, I) prior) at batch 128 on dynamically binarized MNIST,
with ``posterior = <family>`` and everything else equal. The families at their defaults:
``full`` (1,325 encoder outputs), ``lowrank`` (rank 2), ``iaf`` (2 steps, context 32, MADE
networks 82-200-200-100).

How: each family's trainer is built once and warmed up (2 untimed steps: JIT compilation), then
``--reps`` repetitions time every family once, round-robin with the order rotated by one each
rep, so the load of other users falls on all alike; a measurement is ``--steps`` steps on the
same fixed minibatches for every family, each step timed alone (stopped after float() of its
loss). Reported: the median ms/step over all reps x steps (a median over single steps shrugs
off the steps another process pre-empts) and ``ratio``, the family's median over the
diagonal's: how many diagonal epochs take as long as one epoch of the family. ``--threads``
sets torch's intra-op threads, 1 by default (on a small shared machine two threads that wait on
each other make step times swing by 2x and more; 0 keeps torch's choice). Absolute times move
with the machine's load; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import pyrovae

from .common import environment, step_times, make_pyrovae, write_json

FAMILIES = ("diagonal", "full", "lowrank", "iaf")
BATCH = 128



def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=7, help="round-robin repetitions")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--out", default="benchmarks/results/posterior_speed.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = pyrovae.load_dataset("mnist", binarize="dynamic")
    x = data.train_data(1, 0)
    batches = [x[i * BATCH:(i + 1) * BATCH] for i in range(args.steps)]
    started = time.perf_counter()
    steps_of = {}
    for family in args.families:
        torch.manual_seed(0)
        steps_of[family] = make_pyrovae(data, BATCH, model=dict(
            latent_dim=50, hidden=(400,), elbo="trace", posterior=family))
        for xb in batches[:2]:
            steps_of[family](xb)
    raw = {family: [] for family in args.families}
    for rep in range(args.reps):
        k = rep % len(args.families)
        for family in args.families[k:] + args.families[:k]:
            raw[family].extend(step_times(steps_of[family], batches, args.steps))
        print(f"  rep {rep + 1}/{args.reps}: " + ", ".join(
            f"{f} {statistics.median(raw[f][-args.steps:]):.1f} ms" for f in args.families),
            flush=True)
    base = statistics.median(raw[args.families[0]])
    rows = []
    for family, times in raw.items():
        median = statistics.median(times)
        rows.append({"posterior": family, "median_ms": round(median, 2),
                     "min_ms": round(min(times), 2), "max_ms": round(max(times), 2),
                     "ratio": round(median / base, 3),
                     "ms_per_step": [round(t, 2) for t in times]})
        print(f"{family:>9}: {median:6.1f} ms/step (median), x{median / base:.2f} the "
              f"{args.families[0]}'s")
    seconds = round(time.perf_counter() - started, 1)
    write_json(args.out, {
        "benchmark": "posterior_speed", "unit": "milliseconds per training step",
        **environment(), "batch_size": BATCH, "reps": args.reps,
        "timed_steps_per_rep": args.steps, "seconds": seconds,
        "data": "mnist (dynamic binarization)",
        "model": "784-400-50 MLP, softplus, bernoulli, N(0, I) prior, elbo = trace (JIT), "
                 "each posterior at its defaults",
        "notes": "median/min/max over all reps x timed steps; ratio = median / median of the "
                 "first family's", "results": rows})
    return {r["posterior"]: r for r in rows}


if __name__ == "__main__":
    main()
