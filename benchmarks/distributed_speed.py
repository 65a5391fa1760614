"""Data-parallel throughput: training samples/s of one process against R processes started by
torchrun, on the main job's model (configs/mnist.toml: 784-400-50, batch 128, meanfield), and
the time of the sharded importance-sampled NLL.

    python -m benchmarks.distributed_speed [--procs 2] [--batch-sizes 128 1024] [--reps 2]
                                           [--train-size 30720] [--nll-points 500]
                                           [--out benchmarks/results/distributed_speed.json]

Each measurement is one ``pyrovae train`` of one epoch on the first ``--train-size`` MNIST
images, in fresh processes, and reads ``train_samples_per_second`` from metrics.json: global
samples (the whole batch of every step) over the seconds of the training loop (the epoch's
test ELBO, the start-up and the JIT compilation are not in it). Contenders, interleaved over
the repetitions (the order rotated by one from rep to rep):

    1 proc x 1 thread    one process, OMP_NUM_THREADS=1
    1 proc x R threads   one process using all R cores through torch's threads
    R procs x 1 thread   torchrun --nproc_per_node=R, gloo, one thread each

    scaling efficiency   = (R procs x 1 thread) / (R x (1 proc x 1 thread))
    vs threads           = (R procs x 1 thread) / (1 proc x R threads)

Then ``pyrovae evaluate`` of the last run's model with K = ``--nll-k`` on ``--nll-points`` test
images, one process against R (``nll_seconds`` from eval.json; the per-point results are the
same, tests/training/test_distributed.py). Numbers are reported, never asserted; on a shared machine
compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import environment, write_json

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mnist.toml"


def _env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def _launch(procs: int, args: list[str], threads: int) -> None:
    if procs == 1:
        cmd = [sys.executable, "-m", "pyrovae", *args]
    else:
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={procs}",
               "-m", "pyrovae", *args]
    done = subprocess.run(cmd, env=_env(threads), cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")


def train_once(folder: Path, procs: int, threads: int, batch_size: int, train_size: int) -> float:
    """Training samples/s of one epoch (metrics.json)."""
    out = folder / f"run-{procs}x{threads}-b{batch_size}"
    _launch(procs, ["train", str(CONFIG), "--set", "epochs=1", "--set", "progress=false",
                    "--set", f"batch_size={batch_size}", "--set", f"data.train_size={train_size}",
                    "--set", "data.test_size=1000", "--out", str(out), "--force"], threads)
    return json.loads((out / "metrics.json").read_text())["train_samples_per_second"]


def nll_once(run: Path, folder: Path, procs: int, k: int, points: int) -> float:
    """Seconds of the importance-sampled NLL (eval.json's nll_seconds)."""
    out = folder / f"eval-{procs}"
    _launch(procs, ["evaluate", str(run), "--nll-samples", str(k), "--points", str(points),
                    "--quiet", "--out", str(out)], 1)
    return json.loads((out / "eval.json").read_text())["nll_seconds"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=30720)
    parser.add_argument("--nll-k", type=int, default=1000)
    parser.add_argument("--nll-points", type=int, default=500)
    parser.add_argument("--out", default="benchmarks/results/distributed_speed.json")
    args = parser.parse_args(argv)
    r = args.procs
    contenders = {"1 proc x 1 thread": (1, 1), f"1 proc x {r} threads": (1, r),
                  f"{r} procs x 1 thread": (r, 1)}
    names = list(contenders)
    results = {}
    with tempfile.TemporaryDirectory(prefix="pyrovae-dist-") as tmp:
        folder = Path(tmp)
        for batch_size in args.batch_sizes:
            raw = {name: [] for name in names}
            for rep in range(args.reps):
                k = rep % len(names)
                for name in names[k:] + names[:k]:
                    procs, threads = contenders[name]
                    raw[name].append(train_once(folder, procs, threads, batch_size,
                                                args.train_size))
                print(f"batch {batch_size} rep {rep + 1}/{args.reps}: " + ", ".join(
                    f"{n} {raw[n][-1]:,.0f}" for n in names), flush=True)
            med = {n: statistics.median(v) for n, v in raw.items()}
            one, many, threads = med[names[0]], med[names[2]], med[names[1]]
            results[str(batch_size)] = {
                "samples_per_s": {n: [round(s, 1) for s in v] for n, v in raw.items()},
                "median": {n: round(v, 1) for n, v in med.items()},
                "scaling_efficiency": round(many / (r * one), 3),
                "procs_vs_threads": round(many / threads, 3)}
        run = folder / f"run-{r}x1-b{args.batch_sizes[-1]}"
        seconds = {p: nll_once(run, folder, p, args.nll_k, args.nll_points) for p in (1, r)}
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\ntraining samples/s (medians of {args.reps}; one epoch of {args.train_size} images)")
    print(f"{'batch':>6}  " + "  ".join(f"{n:>20}" for n in names) + "  efficiency  vs threads")
    for b, res in results.items():
        print(f"{b:>6}  " + "  ".join(f"{res['median'][n]:>20,.0f}" for n in names)
              + f"  {res['scaling_efficiency']:>10.2f}  {res['procs_vs_threads']:>10.2f}")
    print(f"NLL K={args.nll_k} on {args.nll_points} images: 1 process {seconds[1]:.1f} s, "
          f"{r} processes {seconds[r]:.1f} s (speed-up {seconds[1] / seconds[r]:.2f}x)")
    write_json(args.out, {
        "benchmark": "distributed_speed", "unit": "training samples per second (global)",
        **environment(), "procs": r, "reps": args.reps, "train_size": args.train_size,
        "config": "configs/mnist.toml, epochs=1, data.test_size=1000",
        "backend": "gloo (CPU)", "results": results,
        "nll": {"k": args.nll_k, "points": args.nll_points,
                "seconds": {str(p): round(s, 2) for p, s in seconds.items()},
                "speedup": round(seconds[1] / seconds[r], 3)}})


if __name__ == "__main__":
    main()
