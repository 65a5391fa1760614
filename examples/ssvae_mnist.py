"""Reproduce the semi-supervised MNIST table (issue: ssvae): test accuracy of the M2 model at
100 / 600 / 1000 / 3000 labels, and the sampled-y objective beside the enumerated one.

    python examples/ssvae_mnist.py [--labels 100 600 1000 3000] [--sampled 100]
        [--config configs/ssvae-mnist.toml] [--set KEY=VALUE ...] [--set-for N:KEY=VALUE ...]
        [--out runs/ssvae-table]

Each row trains configs/ssvae-mnist.toml (docs/ssvae.md: the recipe and the budget) with
``labels = N`` into OUT/enum-N/ (``--sampled N``: also ``elbo = "trace"``, y sampled, into
OUT/trace-N/), one run at a time; ``--set-for N:KEY=VALUE`` changes a key for the enumerated
row with N labels only (default: ``100:epochs=200 100:lr=1e-3``, the fewest labels
need the longest run, docs/ssvae.md). It writes OUT/table.md and OUT/table.json. A run folder
that already holds a finished run is read, not retrained, so the script can be stopped and
restarted. Tip on a shared CPU: OMP_NUM_THREADS=1 is faster than contending threads.
"""

import argparse
import json
from pathlib import Path

from pyrovae import PyroVAEError, load, load_config, load_dataset, train

LONG_ROW = ["100:epochs=200", "100:lr=1e-3"]  # the --set-for default


def run_row(config, out, data):
    """Train ``config`` (or read the run, when finished) into ``out``; its table row."""
    if (out / "metrics.json").is_file():
        run = load(out)
    else:
        run = train(config, data, out=out, force=True)
    metrics, tc = run.metrics, run.config.train
    return {"labels": metrics["labels"], "objective": metrics["objective"],
            "lr": f"{tc.lr:g}" + (f" {tc.lr_schedule}" if tc.lr_schedule != "constant" else ""),
            "alpha": metrics["alpha"], "test_accuracy": metrics["test_accuracy"],
            "test_accuracy_at_best_val": metrics["test_accuracy_at_best_val"],
            "best_val_epoch": metrics["best_val_epoch"], "epochs": metrics["epochs"],
            "test_elbo": metrics["test_elbo"], "minutes": metrics["seconds"] / 60,
            "run": str(out)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="*", default=[100, 600, 1000, 3000])
    parser.add_argument("--sampled", type=int, nargs="*", default=[100],
                        help="label counts also run with sampled y (Trace_ELBO)")
    parser.add_argument("--config", default="configs/ssvae-mnist.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set-for", action="append", default=None, metavar="N:KEY=VALUE",
                        help="a --set for the enumerated row with N labels only (default: "
                             + " ".join(LONG_ROW) + ")")
    parser.add_argument("--out", default="runs/ssvae-table")
    args = parser.parse_args()
    row_sets = {}
    for item in args.set_for or LONG_ROW:
        n, sep, setting = item.partition(":")
        if not (sep and n.isdigit() and "=" in setting):
            parser.error(f"--set-for {item!r} is not N:KEY=VALUE, e.g. 100:epochs=50")
        row_sets.setdefault(int(n), []).append(setting)
    jobs = [(n, "enum") for n in args.labels] + [(n, "trace") for n in args.sampled]
    configs = {}  # every row's config is checked before the first one trains
    for n, objective in jobs:
        sets = [*args.set, f"labels={n}", f"elbo={objective}",
                *(row_sets.get(n, []) if objective == "enum" else [])]
        try:
            configs[n, objective] = load_config(args.config, sets)
        except PyroVAEError as err:
            parser.error(f"row {objective}-{n}: {err}")
    data = load_dataset(configs[jobs[0]].data)
    rows = []
    for (n, objective), config in configs.items():
        rows.append(run_row(config, Path(args.out) / f"{objective}-{n}", data))
        print(json.dumps(rows[-1]))
    lines = ["| labels | objective | lr | epochs | test accuracy (last epoch) | at best "
             "validation (epoch) | test ELBO | minutes |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['labels']} | {r['objective']} | {r['lr']} | {r['epochs']} | "
              f"{r['test_accuracy']:.4f} | "
              f"{r['test_accuracy_at_best_val']:.4f} ({r['best_val_epoch']}) | "
              f"{r['test_elbo']:.1f} | {r['minutes']:.1f} |" for r in rows]
    print("\n".join(lines))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "table.md").write_text("\n".join(lines) + "\n")
    (Path(args.out) / "table.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
