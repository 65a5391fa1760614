"""log p(x) of a trained run by importance sampling (IS, K draws of q(z|x)) against annealed
importance sampling (AIS, T steps, C chains, L leapfrog steps, from the guide or the prior),
on the same test points, each with its time: which estimate is higher at equal compute?

    python -m examples.ais_study --run runs/ais-main --points 100 --ks 500 5000
    python -m examples.ais_study --run runs/ais-main --points 100 --ts 10 30 100 300 1000
    python -m examples.ais_study --run runs/ais-main --points 100 --prior-ts 100 1000 \
        --figure docs/figures/ais_mnist.png

Each call adds its rows to OUT/sweep.csv (a setting measured again replaces its row; per-point
estimates in OUT/points/) and redraws OUT/sweep.png (and ``--figure``): the mean over points of
log p(x) - IS(K=5000) log p(x), paired, with its standard error, against seconds per point.
Both are stochastic lower bounds on log p(x), so higher is better. Times are wall-clock on
one thread and include Pyro's tracing overhead.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from pyrovae import load, load_dataset
from pyrovae.evaluation.ais import AISOptions, ais_log_likelihood
from pyrovae.evaluation.likelihood import log_likelihood
from pyrovae.runtime.files import read_csv, write_csv
from pyrovae.reports.numbers import format_estimate
from pyrovae.reports.plots import plt, save_figure

REFERENCE = "IS K=5000"


def measure(fn) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    log_px = fn()
    return np.asarray(log_px, dtype=np.float64), time.perf_counter() - start


def settings(args) -> list[tuple[str, str, int, object]]:
    """(estimator, label, x setting, function -> log p(x) [N]) of every requested setting."""
    out = [("IS", f"IS K={k}", k, lambda k=k: log_likelihood(
        args.vae, args.x, k, batch_size=args.batch_size, seed=args.seed).numpy())
        for k in args.ks]
    for init, ts in (("guide", args.ts), ("prior", args.prior_ts)):
        for t in ts:
            opts = AISOptions(steps=t, chains=args.chains, leapfrog=args.leapfrog, init=init)
            out.append((f"AIS {init}", f"AIS {init} T={t} C={args.chains} L={args.leapfrog}",
                        t, lambda o=opts: ais_log_likelihood(
                            args.vae, args.x, o, batch_size=args.batch_size,
                            seed=args.seed)["log_px"].numpy()))
    return out


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for est, color in (("IS", "tab:blue"), ("AIS guide", "tab:orange"),
                       ("AIS prior", "tab:green")):
        rs = sorted((r for r in rows if r["estimator"] == est), key=lambda r: r["seconds"])
        if not rs:
            continue
        ax.errorbar([r["seconds_per_point"] for r in rs], [r["minus_reference"] for r in rs],
                    yerr=[r["minus_reference_se"] for r in rs], marker="o", color=color,
                    label=est, capsize=3)
        for r in rs:
            ax.annotate(("K=" if est == "IS" else "T=") + str(r["setting"]),
                        (r["seconds_per_point"], r["minus_reference"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per test point (1 thread)")
    ax.set_ylabel(f"log p(x) - {REFERENCE} (nats, paired)")
    n = rows[0]["points"]
    ax.set_title(f"IS vs AIS on {n} test points (higher is better: both are lower bounds)",
                 fontsize=10)
    ax.legend()
    save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--ks", type=int, nargs="*", default=[])
    p.add_argument("--ts", type=int, nargs="*", default=[])
    p.add_argument("--prior-ts", type=int, nargs="*", default=[])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--leapfrog", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/ais-study/sweep")
    p.add_argument("--figure", help="also write the figure here (e.g. docs/figures/...)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = load(args.run)
    args.vae = run.vae
    args.x = load_dataset(run.config.data).test_data()[:args.points]
    out = Path(args.out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    table = out / "sweep.csv"
    rows = {r["label"]: r for r in read_csv(table)} if table.exists() else {}
    ref_file = out / "points" / f"{REFERENCE}.npy"
    todo = settings(args)
    if not ref_file.exists() and 5000 not in args.ks:
        args.ks = [5000]
        todo = settings(args)[:1] + todo
    for est, label, setting, fn in todo:
        log_px, seconds = measure(fn)
        np.save(out / "points" / f"{label}.npy", log_px)
        print(f"{label:<28} mean log p(x) {log_px.mean():.3f}  {seconds:.1f} s", flush=True)
        rows[label] = {"estimator": est, "label": label, "setting": setting,
                       "points": len(log_px), "log_px": float(log_px.mean()),
                       "log_px_se": float(log_px.std(ddof=1) / math.sqrt(len(log_px))),
                       "seconds": round(seconds, 2),
                       "seconds_per_point": seconds / len(log_px)}
    ref = np.load(ref_file)
    for r in rows.values():
        d = np.load(out / "points" / f"{r['label']}.npy") - ref
        r["minus_reference"] = float(d.mean())
        r["minus_reference_se"] = float(d.std(ddof=1) / math.sqrt(len(d)))
    ordered = sorted(rows.values(), key=lambda r: (r["estimator"], r["setting"]))
    write_csv(table, ordered)
    plot(ordered, out / "sweep.png")
    if args.figure:
        plot(ordered, Path(args.figure))
    for r in ordered:
        diff = format_estimate(r["minus_reference"], r["minus_reference_se"])
        print(f"{r['label']:<28} {r['log_px']:9.3f}  minus IS5000 "
              f"{'' if diff.startswith('-') else '+'}{diff}  {r['seconds']:.1f} s")


if __name__ == "__main__":
    main()
