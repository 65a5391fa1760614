"""The main job through the Python API: the 784-400-50 VAE on dynamically binarized MNIST.

    python examples/train_mnist.py [--epochs 10] [--out runs/mnist-api]
"""

import argparse

from pyrovae import VAEConfig, load_dataset, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs/mnist-api")
    args = parser.parse_args()
    data = load_dataset("mnist", binarize="dynamic")
    cfg = VAEConfig(latent_dim=50, hidden=(400,), likelihood="bernoulli", elbo="meanfield")
    run = train(cfg, data, epochs=args.epochs, batch_size=128, lr=1e-3, out=args.out, force=True)
    for row in run.history:
        print(f"epoch {row['epoch']:3d}  train ELBO {row['train_elbo']:8.2f}  "
              f"test ELBO {row['test_elbo']:8.2f}")
    print(f"wrote {run.path}/")


if __name__ == "__main__":
    main()
