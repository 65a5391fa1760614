"""Bring your own model: a two-stochastic-layer VAE written by hand, trained and evaluated.

pyrovae trains, resumes, evaluates and compares it like a built-in model (docs/custom_models.md).

The model is Burda et al. (2015)'s two-layer architecture, x -> h -> z1 -> h -> z2:

    generative  p(z2) p(z1|z2) p(x|z1)   z2 ~ N(0, I), z1 ~ N(mu(z2), diag(sigma(z2)^2)),
                                         x ~ Bernoulli(logits(z1))
    inference   q(z1|x) q(z2|z1)         diagonal Gaussians from small tanh MLPs

Run from the repository root (``examples`` has no ``__init__.py``; from the root it imports as
a namespace package, so the run records ``target = "examples.custom_model:TwoLayerVAE"``, and
``pyrovae.load``, ``pyrovae evaluate`` and ``pyrovae train --resume`` find it when they
too run from the root)::

    python -m examples.custom_model --epochs 5 --out runs/two-layer --nll-samples 1000
    pyrovae evaluate runs/two-layer --nll-samples 5000 --trust-module  # rebuilds the class
    pyrovae train --resume runs/two-layer --set epochs=10 --trust-module  # continue the run

(``--trust-module``: your consent to import the class a run folder names, which a run folder
alone never causes; ``pyrovae.load(RUN, trust_module=True)`` in Python.)

Compare objectives on this model with a config file of kind "module" (two-layer.toml)::

    [model]
    kind = "module"
    target = "examples.custom_model:TwoLayerVAE"
    args = {hidden = [100, 50], latent = [100, 50]}
    elbo = "trace"

    [data]
    name = "mnist"
    binarize = "dynamic"

    [train]
    epochs = 5

    pyrovae compare two-layer.toml --vary elbo=trace,iwae+num_particles=5 --out runs/cmp
    pyrovae compare two-layer.toml --vary num_particles=1,5 --set elbo=iwae --out runs/cmp-k
"""

from __future__ import annotations

import argparse
import contextlib
import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyrovae.runtime.rng import seeded


class GaussianMLP(nn.Module):
    """in -> tanh -> tanh -> (loc, scale) of a diagonal Gaussian over ``out`` dimensions."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(),
                                  nn.Linear(hidden, hidden), nn.Tanh())
        self.loc, self.scale = nn.Linear(hidden, n_out), nn.Linear(hidden, n_out)

    def forward(self, h):
        h = self.body(h)
        return self.loc(h), nn.functional.softplus(self.scale(h)) + 1e-4


class TwoLayerVAE(PyroModule):
    """p(z2) p(z1|z2) p(x|z1) with guide q(z1|x) q(z2|z1); ``hidden``/``latent``: the widths
    of the (x, z1) and (z1, z2) stages. Capabilities: sample, reconstruct."""

    max_plate_nesting = 1  # only the "data" plate

    def __init__(self, input_shape, hidden=(100, 50), latent=(100, 50)):
        super().__init__()
        self.input_shape, self.hidden, self.latent = tuple(input_shape), hidden, latent
        (h1, h2), (l1, l2), d = hidden, latent, math.prod(self.input_shape)
        self.encoder = nn.ModuleDict({"z1": GaussianMLP(d, h1, l1),     # q(z1|x)
                                      "z2": GaussianMLP(l1, h2, l2)})   # q(z2|z1)
        self.decoder = nn.ModuleDict({"z1": GaussianMLP(l2, h2, l1),     # p(z1|z2)
                                      "x": nn.Sequential(               # logits of p(x|z1)
                                          nn.Linear(l1, h1), nn.Tanh(), nn.Linear(h1, h1),
                                          nn.Tanh(), nn.Linear(h1, d))})

    def _plate(self, x, n_data):  # every site in "data"; N / B scales a minibatch to N points
        b = x.shape[0]
        return pyro.plate("data", n_data or b, subsample=torch.arange(b, device=x.device))

    def model(self, x, n_data=None):
        with self._plate(x, n_data):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(self.latent[1]), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(*self.decoder["z1"](z2)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder["x"](z1)).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with self._plate(x, n_data):
            z1 = pyro.sample("z1", dist.Normal(*self.encoder["z1"](x)).to_event(1))
            pyro.sample("z2", dist.Normal(*self.encoder["z2"](z1)).to_event(1))

    @torch.no_grad()
    def sample(self, n, seed=None, temperature=1.0):  # E[x|z1], z2 ~ p(z2), z1 ~ p(z1|z2)
        device = next(self.parameters()).device
        with seeded(seed) if seed is not None else contextlib.nullcontext():
            z2 = temperature * torch.randn(n, self.latent[1], device=device)
            loc, scale = self.decoder["z1"](z2)
            z1 = loc + temperature * scale * torch.randn_like(loc)
        return torch.sigmoid(self.decoder["x"](z1))

    @torch.no_grad()
    def reconstruct(self, x):  # E[x | z1 = E_q[z1|x]]
        return torch.sigmoid(self.decoder["x"](self.encoder["z1"](x)[0]))


def main(argv=None):
    from pyrovae import evaluate_run, load_dataset, train
    from pyrovae.reports.numbers import format_estimate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/two-layer")
    parser.add_argument("--nll-samples", type=int, default=1000, metavar="K",
                        help="importance samples per test point for log p(x) (>= 25)")
    parser.add_argument("--eval-points", type=int, default=1000,
                        help="evaluate on the first N test images (0 = all 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial parameters "
                        "and of training (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = parser.parse_args(argv)

    # The class under its import path, not as "__main__" (python -m runs this file as
    # __main__, and a run records the module of the class to rebuild it from).
    try:
        from examples.custom_model import TwoLayerVAE as Model
    except ImportError:
        raise SystemExit("run from the repository root: python -m examples.custom_model") from None

    data = load_dataset("mnist", binarize="dynamic")
    pyro.set_rng_seed(args.seed)  # train() seeds training; the initial parameters are ours
    run = train(Model(data.shape), data, out=args.out, epochs=args.epochs, batch_size=100,
                lr=1e-3, seed=args.seed, progress=False, force=args.force)
    for row in run.history:
        print(f"epoch {row['epoch']:3d}  train ELBO {row['train_elbo']:8.2f}  "
              f"test ELBO {row['test_elbo']:8.2f}")
    result = evaluate_run(run, data, nll_samples=args.nll_samples,
                          max_points=args.eval_points or None, progress=False)
    elbo = format_estimate(result["test_elbo"], result["test_elbo_se"])
    nll = format_estimate(result["test_nll"], result["test_nll_se"])
    print(f"test ELBO {elbo}  NLL (K={args.nll_samples}) {nll}  "
          f"on {result['num_points']} test images")
    print(f"k-hat > 0.7: {result['khat_share_above_0_7']:.1%} of points;  "
          f"train {run.metrics['seconds']:.0f} s, evaluate {result['eval_seconds']:.0f} s")
    print(f"wrote {run.path}/")


if __name__ == "__main__":
    main()
