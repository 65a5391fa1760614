"""Train the same MNIST VAE with each prior and print a table of test ELBOs (issue: priors).

    python examples/compare_priors.py [--epochs 20] [--priors normal mog vamp flow]
        [--out runs/priors] [--nll-samples 0]

784-400-50 MLP, Bernoulli likelihood, dynamic binarization, batch 128, Adam 1e-3, and the
Monte Carlo-KL objective `trace` for every prior (so the estimators are alike; the normal
prior could also use `meanfield`). Writes RUN_DIR/<prior>/ for each and RUN_DIR/priors.md,
RUN_DIR/priors.json.
"""

import argparse
import json
from pathlib import Path

from pyrovae import VAEConfig, load_dataset, train
from pyrovae.evaluation import log_likelihood
from pyrovae.reports.numbers import format_estimate

SETTINGS = {"normal": {}, "learnable-normal": {}, "mog": {"components": 10},
            "vamp": {"components": 500}, "flow": {"flow_layers": 4, "flow_type": "affine"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--priors", nargs="+", default=["normal", "mog", "vamp", "flow"])
    parser.add_argument("--out", default="runs/priors")
    parser.add_argument("--nll-samples", type=int, default=0,
                        help="also estimate the test NLL with this many importance samples "
                             "on the first 1000 test images")
    args = parser.parse_args()
    data = load_dataset("mnist", binarize="dynamic")
    rows = []
    for name in args.priors:
        cfg = VAEConfig(prior={"name": name, **SETTINGS[name]}, elbo="trace")
        run = train(cfg, data, epochs=args.epochs, out=Path(args.out) / name, force=True)
        row = {"prior": name, "test_elbo": run.metrics["test_elbo"],
               "test_elbo_se": run.metrics["test_elbo_se"], "test_kl": run.metrics["test_kl"],
               "seconds": run.metrics["seconds"]}
        if args.nll_samples:
            x = data.test_data()[:1000]
            row["test_nll_1000"] = -float(log_likelihood(run.vae, x, args.nll_samples).mean())
        rows.append(row)
        print(json.dumps(row))
    lines = ["| prior | test ELBO (nats) | KL | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['prior']} | {format_estimate(r['test_elbo'], r['test_elbo_se'])} | "
              f"{r['test_kl']:.1f} | {r['seconds']:.0f} |" for r in rows]
    print("\n".join(lines))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "priors.md").write_text("\n".join(lines) + "\n")
    (Path(args.out) / "priors.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
