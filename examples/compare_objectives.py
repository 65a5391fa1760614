"""Train the same VAE with each objective, same data and seeds, and print a table.

    python examples/compare_objectives.py [--data digits] [--epochs 30] [--seeds 2]
"""

import argparse
import statistics

from pyrovae import VAEConfig, load_dataset, train
from pyrovae.config import OBJECTIVES


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    data = load_dataset(args.data, binarize="dynamic")
    print(f"| objective | test ELBO (mean over {args.seeds} seeds) | samples/s |")
    print("|---|---|---|")
    for name in OBJECTIVES:
        runs = [train(VAEConfig(latent_dim=8, hidden=(128,), elbo=name), data,
                      epochs=args.epochs, batch_size=64, lr=3e-3, seed=s, progress=False)
                for s in range(args.seeds)]
        elbo = statistics.mean(r.metrics["test_elbo"] for r in runs)
        speed = statistics.mean(r.metrics["train_samples_per_second"] for r in runs)
        print(f"| {name} | {elbo:.2f} | {speed:,.0f} |")


if __name__ == "__main__":
    main()
