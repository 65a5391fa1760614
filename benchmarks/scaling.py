"""How pyrovae's training time scales with batch size and latent size, on MNIST.

    python -m benchmarks.scaling [--quick] [--reps 5] [--out benchmarks/results/scaling.json]

pyrovae's default model and objective (784-400-L MLP, softplus, Bernoulli likelihood) trained by
Trainer.train_step on dynamically binarized MNIST in memory, timed as in benchmarks.train_speed
by benchmarks.common (warm-up steps, then a fixed number of timed steps, ~7.7k samples, ending
in a float() of the loss), for batch sizes 32, 128, 512, 1024 at L = 50 and for L = 2, 10, 50,
200 at batch 128. All eight settings are measured in one process, interleaved: every repetition
times each once.

The unit is seconds per epoch-equivalent: 60,000 / (samples/s), i.e. the training time of one
pass over MNIST's training set without evaluation or checkpoints (median, min and max over reps).
"""

from __future__ import annotations

import argparse
import statistics

import pyrovae

from .common import environment, interleaved, make_pyrovae, steps_for, write_json

EPOCH = 60_000
BATCH_SIZES = (32, 128, 512, 1024)
LATENT_SIZES = (2, 10, 50, 200)
LATENT_BATCH = 128


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few reps and steps (smoke run)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (5; quick: 2)")
    parser.add_argument("--out", default="benchmarks/results/scaling.json")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    warmup = 2 if args.quick else 5

    data = pyrovae.load_dataset("mnist", binarize="dynamic")
    x = data.train_data(1, 0)
    settings = [("batch", b, b, 50) for b in BATCH_SIZES] + \
               [("latent", z, LATENT_BATCH, z) for z in LATENT_SIZES]
    runs = {(kind, v): (make_pyrovae(data, batch, {"latent_dim": latent}), batch,
                        steps_for(batch, args.quick))
            for kind, v, batch, latent in settings}
    raw = interleaved(runs, x, reps, warmup, label=lambda key: f"{key[0]}={key[1]}")

    results = {"batch_size": {}, "latent_dim": {}}
    for (kind, v), sps in raw.items():
        seconds = [EPOCH / s for s in sps]
        results["batch_size" if kind == "batch" else "latent_dim"][str(v)] = {
            "batch_size": runs[(kind, v)][1], "timed_steps": runs[(kind, v)][2],
            "samples_per_s": [round(s, 1) for s in sps],
            "seconds_per_epoch": [round(s, 2) for s in seconds],
            "median": round(statistics.median(seconds), 2),
            "min": round(min(seconds), 2), "max": round(max(seconds), 2)}

    for table, what in (("batch_size", "batch size (latent 50)"),
                        ("latent_dim", f"latent size (batch {LATENT_BATCH})")):
        print(f"\n| {what} | s/epoch (median) | min | max | samples/s (median) |")
        print("|---:|---:|---:|---:|---:|")
        for v, r in results[table].items():
            print(f"| {v} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
                  f"{EPOCH / r['median']:,.0f} |")
    print()
    write_json(args.out, {
        "benchmark": "scaling", "unit": "seconds per 60,000 training samples",
        "objective": pyrovae.VAEConfig().elbo, **environment(), "reps": reps,
        "warmup_steps": warmup, "quick": args.quick, "results": results})


if __name__ == "__main__":
    main()
