"""Pyro's examples/cvae task with pyrovae: predict the hidden quadrants of an MNIST digit from
1, 2 or 3 visible ones, with a conditional VAE and with the deterministic baseline network, and
compare their conditional negative log-likelihoods -log p(x_out | x_in) (docs/conditional.md).

    python examples/cvae_quadrants.py [--epochs 2] [--baseline-epochs 2] [--nll-samples 100]
                                      [--points 1000] [--out runs/cvae-quadrants]

For each number of visible quadrants v = 1, 2, 3 (1 = bottom-left, 2 = left half, 3 = all but
bottom-right, as Pyro's example):

  * the baseline (pyrovae.kinds.cvae.baseline): an MLP x_in -> 500 -> 500 -> logits of x_out,
    Adam (lr 1e-3, batch 128) on the summed binary cross-entropy of the hidden pixels; its NLL
    is that cross-entropy on the test images (exact: for binary pixels it is -log p(x_out|x_in)
    under independent Bernoullis);
  * the CVAE (kind "cvae", configs/cvae-mnist.toml's networks: latent 200, MLPs of 500-500,
    ReLU; TraceMeanField_ELBO, Adam lr 1e-3, batch 128), trained by pyrovae.train; its NLL is
    pyrovae.evaluate_run's importance-sampled -log p(x_out | x_in) with K = --nll-samples
    draws per image (and the PSIS k-hat of the weights).

Both see dynamically binarized MNIST (a fresh Bernoulli draw of the training images every
epoch, the same draws for both) and are scored on the same binarized draw of the first
--points test images. Writes OUT/results.md and results.csv (the table), OUT/cvae_plot_q{v}.png
(rows: visible input, truth, baseline, 5 CVAE draws; one column per test image), and one
pyrovae run folder per v (OUT/cvae-q{v}/, which `pyrovae evaluate` reads too).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from pyrovae import CVAEConfig, evaluate_run, load_dataset, train
from pyrovae.kinds.cvae import baseline_nll, save_predictions, train_baseline
from pyrovae.config import DataConfig, RunConfig, TrainConfig
from pyrovae.reports.numbers import format_estimate
from pyrovae.runtime.files import write_csv


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visible", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--epochs", type=int, default=2, help="CVAE epochs (default 2)")
    p.add_argument("--baseline-epochs", type=int, default=2, help="baseline epochs (default 2)")
    p.add_argument("--nll-samples", type=int, default=100, help="importance samples K per image")
    p.add_argument("--points", type=int, default=1000, help="first N test images scored")
    p.add_argument("--train-size", type=int, default=0, help="first N training images (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--out", default="runs/cvae-quadrants")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python examples/cvae_quadrants.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:])
    started = time.perf_counter()
    source = DataConfig(name="mnist", binarize="dynamic", train_size=args.train_size)
    data = load_dataset(source)
    x_test = data.test_data()[:args.points]
    rows = []
    for v in args.visible:
        print(f"--- {v} visible quadrant{'s' if v > 1 else ''} ---", flush=True)
        t0 = time.perf_counter()
        base = train_baseline(data, v, epochs=args.baseline_epochs, batch_size=128, lr=1e-3,
                              seed=args.seed, log=lambda r: print(
                                  f"baseline epoch {r['epoch']}: train NLL {r['train_nll']:.2f}"
                                  f"  test NLL {r['test_nll']:.2f}", flush=True))
        base_seconds = time.perf_counter() - t0
        nll_base = baseline_nll(base.net, x_test)

        t0 = time.perf_counter()
        config = RunConfig(model=CVAEConfig(visible=v), data=source,
                           train=TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3,
                                             seed=args.seed, progress=False))
        run = train(config, data, out=out / f"cvae-q{v}", force=True)
        for r in run.history:
            print(f"CVAE epoch {r['epoch']}: train ELBO {r['train_elbo']:.2f}  test ELBO "
                  f"{r['test_elbo']:.2f}", flush=True)
        cvae_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = evaluate_run(run, data, nll_samples=args.nll_samples, max_points=args.points,
                          seed=args.seed, progress=False)
        eval_seconds = time.perf_counter() - t0
        save_predictions(run.vae, x_test[:10], out / f"cvae_plot_q{v}.png", samples=5,
                         seed=args.seed, baseline=base.net)
        row = {"visible": v, "hidden_pixels": run.vae.out_dim, "points": len(x_test),
               "baseline_nll": float(nll_base.mean()),
               "baseline_nll_se": float(nll_base.std() / math.sqrt(len(nll_base))),
               "cvae_nll": ev["test_nll"], "cvae_nll_se": ev["test_nll_se"],
               "cvae_elbo": ev["test_elbo"], "cvae_kl": ev["rate"],
               "khat_share_above_0_7": ev["khat_share_above_0_7"],
               "nll_samples": args.nll_samples, "cvae_epochs": args.epochs,
               "baseline_epochs": args.baseline_epochs,
               "baseline_seconds": round(base_seconds, 1), "cvae_seconds": round(cvae_seconds, 1),
               "eval_seconds": round(eval_seconds, 1)}
        row["gap"] = row["baseline_nll"] - row["cvae_nll"]
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()},
              flush=True)
    write_table(rows, out, command, time.perf_counter() - started)
    print(f"wrote {out}/results.md, results.csv, cvae_plot_q*.png "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


def write_table(rows: list[dict], out: Path, command: str, seconds: float) -> None:
    write_csv(out / "results.csv", rows)
    heads = [f"{r['visible']} quadrant{'s' if r['visible'] > 1 else ''}" for r in rows]
    cell = lambda r, k: format_estimate(r[k], r[k + "_se"])  # noqa: E731
    lines = [f"`{command}` ({seconds / 60:.1f} min)", "",
             "-log p(x_out | x_in), nats per test image (mean +- standard error over the "
             f"first {rows[0]['points']} binarized MNIST test images):", "",
             "| | " + " | ".join(heads) + " |", "|---" * (len(rows) + 1) + "|",
             "| NN (baseline) | " + " | ".join(cell(r, "baseline_nll") for r in rows) + " |",
             f"| CVAE (IS, K = {rows[0]['nll_samples']}) | "
             + " | ".join(cell(r, "cvae_nll") for r in rows) + " |",
             "| Performance gap | " + " | ".join(f"{r['gap']:.2f}" for r in rows) + " |",
             "| CVAE -ELBO | " + " | ".join(f"{-r['cvae_elbo']:.2f}" for r in rows) + " |",
             "| k-hat > 0.7 (share) | " + " | ".join(f"{r['khat_share_above_0_7']:.3f}"
                                                   for r in rows) + " |",
             "| hidden pixels | " + " | ".join(str(r["hidden_pixels"]) for r in rows) + " |",
             "| seconds: baseline / CVAE / evaluation | " + " | ".join(
                 f"{r['baseline_seconds']:.0f} / {r['cvae_seconds']:.0f} / {r['eval_seconds']:.0f}"
                 for r in rows) + " |", ""]
    (out / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
