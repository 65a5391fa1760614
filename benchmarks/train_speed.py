"""Training throughput (samples/s) of pyrovae's objectives against plain PyTorch, a typical Pyro
VAE and (when it installs) pythae, on MNIST.

    python -m benchmarks.train_speed [--quick] [--batch-sizes 128 1024] [--reps 5]
                                     [--out benchmarks/results/train_speed.json] [--install-pythae]
                                     [--device cuda]

Every contender trains the same VAE, 784-400-50 with softplus hidden layers (encoder
784-400-2x50, decoder 50-400-784 logits or probs), with Adam(lr=1e-3), on dynamically binarized
MNIST held in memory as one [60000, 784] tensor whose consecutive slices are the minibatches:

    torch-reference   hand-written PyTorch: loc and softplus(raw)+1e-4 scale, Bernoulli
                      log-likelihood x*l - softplus(l), analytic Gaussian KL, loss scaled by N/B
                      as pyrovae's plate does; zero_grad / backward / step.
    pyro-example      what a typical Pyro user writes, after Pyro's examples/vae/vae.py:
                      nn.Modules registered with pyro.module, exp scale, sigmoid probs,
                      Bernoulli(probs), plate of size B, SVI(Trace_ELBO, pyro.optim.Adam),
                      svi.step(x) (Pyro's default validation on, as the user gets it).
    pythae            pythae's VAE with encoder/decoder of the same layers (see the JSON's
                      "pythae" entry for exactly what is timed), or the reason it is absent.
    pyrovae-<elbo>    pyrovae's Trainer.train_step for each objective in config.OBJECTIVES (and,
                      when TrainConfig has a ``fast`` field, the default objective with
                      fast=True and fast=False), advancing trainer.step as Trainer.run does;
                      run()'s other per-step bookkeeping (loss sum, finite check) is not timed.

All contenders are built once per batch size and then measured in ONE process, INTERLEAVED:
each repetition times every contender once (the order rotated by one from rep to rep), so load
from other users of the machine falls on all of them alike. A measurement is a few untimed
warm-up steps (JIT compilation happens there or in pyrovae's prepare()) followed by a fixed
number of timed steps; the clock (time.perf_counter) stops after float() of the last loss, so
any queued work is counted.

Reading the table: "median" is the median over repetitions of samples/s, "min"/"max" show the
spread. "vs torch" = median / median of torch-reference: the fraction of hand-written PyTorch
speed a contender reaches (1.0 = as fast; 0.6 = 40% slower). "vs pyro-ex" = median / median of
pyro-example: above 1.0 means faster than the plain Pyro VAE a user would write. Compare ratios
from the same run; absolute numbers move with the machine's load.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn
from torch.nn import functional as F

import pyrovae
from pyrovae.config import OBJECTIVES, TrainConfig, VAEConfig

from .common import environment, interleaved, make_pyrovae, steps_for, write_json

D, H, L = 784, 400, 50
MIN_SCALE = 1e-4  # as pyrovae.components.nets.mlp.MIN_SCALE
REFERENCE, PYRO_EXAMPLE = "torch-reference", "pyro-example"
PYTHAE_TIMED = ("a loop of optimizer.zero_grad(); loss = VAE.forward(DatasetOutput(data=xb)).loss;"
                " loss.backward(); torch.optim.Adam(lr=1e-3).step() -- the core of pythae's "
                "BaseTrainer.train_step without its DataLoader, loss.item() and callbacks; custom "
                "BaseEncoder 784-400-100 (loc, log_covariance = 2 log(softplus(raw)+1e-4)) and "
                "BaseDecoder 50-400-784 with sigmoid output, reconstruction_loss='bce', loss mean "
                "over the batch")


# ---- contenders: each make_* builds a model and returns step(xb) -> loss -------------------

def mlp(*sizes: int) -> nn.Sequential:
    """Linear layers with softplus between them (not after the last)."""
    layers = [m for a, b in zip(sizes[:-1], sizes[1:]) for m in (nn.Linear(a, b), nn.Softplus())]
    return nn.Sequential(*layers[:-1])


def make_torch_reference(n_data: int, device="cpu"):
    encoder, decoder = mlp(D, H, 2 * L).to(device), mlp(L, H, D).to(device)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)

    def step(xb):
        optimizer.zero_grad()
        loc, raw = encoder(xb).chunk(2, dim=-1)
        scale = F.softplus(raw) + MIN_SCALE
        logits = decoder(loc + scale * torch.randn_like(loc))
        log_px = (xb * logits - F.softplus(logits)).sum(-1)
        kl = (0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum(-1)
        loss = (kl - log_px).sum() * (n_data / xb.shape[0])
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


class ExampleEncoder(nn.Module):
    """The encoder of Pyro's examples/vae/vae.py."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(D, H), nn.Linear(H, L), nn.Linear(H, L)
        self.softplus = nn.Softplus()

    def forward(self, x):
        hidden = self.softplus(self.fc1(x))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class ExampleDecoder(nn.Module):
    """The decoder of Pyro's examples/vae/vae.py: pixel probabilities."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.softplus = nn.Linear(L, H), nn.Linear(H, D), nn.Softplus()

    def forward(self, z):
        return torch.sigmoid(self.fc21(self.softplus(self.fc1(z))))


def make_pyro_example(n_data: int, device="cpu"):
    pyro.clear_param_store()
    encoder, decoder = ExampleEncoder().to(device), ExampleDecoder().to(device)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], L),
                                                  x.new_ones(x.shape[0], L)).to_event(1))
            probs = decoder(z)
            pyro.sample("obs", dist.Bernoulli(probs, validate_args=False).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=Trace_ELBO())
    return svi.step


def make_pythae(n_data: int, device="cpu"):
    from pythae.data.datasets import DatasetOutput
    from pythae.models import VAE, VAEConfig as PythaeVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = mlp(D, H, 2 * L)

        def forward(self, x):
            loc, raw = self.net(x).chunk(2, dim=-1)
            scale = F.softplus(raw) + MIN_SCALE
            return ModelOutput(embedding=loc, log_covariance=2 * scale.log())

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mlp(L, H, D)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    config = PythaeVAEConfig(input_dim=(D,), latent_dim=L, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder()).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(xb):
        optimizer.zero_grad()
        loss = model(DatasetOutput(data=xb)).loss
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def has_fast() -> bool:
    return "fast" in TrainConfig.__dataclass_fields__


def contenders(data, batch_size: int, with_pythae: bool, device: str = "cpu") -> dict:
    """name -> step(xb) for every contender at this batch size, on ``device``."""
    n = data.num_train
    steps = {REFERENCE: make_torch_reference(n, device),
             PYRO_EXAMPLE: make_pyro_example(n, device)}
    if with_pythae:
        steps["pythae"] = make_pythae(n, device)
    on = {"device": device}
    for elbo in OBJECTIVES:
        steps[f"pyrovae-{elbo}"] = make_pyrovae(data, batch_size, {"elbo": elbo}, on)
    if has_fast():
        default = VAEConfig().elbo
        for fast in (True, False):
            steps[f"pyrovae-{default}[fast={fast}]"] = make_pyrovae(
                data, batch_size, {"elbo": default}, {"fast": fast, **on})
    return steps


def pythae_status(install: bool) -> str | None:
    """None when pythae imports; else why not, after at most one pinned ``pip install pythae``."""
    try:
        import pythae  # noqa: F401
        return None
    except Exception as err:  # noqa: BLE001 - an installed but broken pythae counts as absent
        reason = f"{type(err).__name__}: {err}"
    if not install:
        return f"not installed: {reason} (--install-pythae tries pip once)"
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as pins:  # change nothing installed
        pins.write("\n".join(line for line in freeze.splitlines() if "==" in line))
        pins.flush()
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", pins.name,
                               "pythae"], capture_output=True, text=True)
    if done.returncode:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()] or ["(no message)"]
        return f"not installed: pinned `pip install pythae` failed: {lines[-1]}"
    importlib.invalidate_caches()
    try:
        import pythae  # noqa: F401
        return None
    except Exception as err:  # noqa: BLE001
        return f"not installed: installed but import fails: {type(err).__name__}: {err}"


# ---- main ------------------------------------------------------------------------------------

def summarize(raw: dict) -> dict:
    med = {name: statistics.median(v) for name, v in raw.items()}
    return {name: {"samples_per_s": [round(s, 1) for s in v], "median": round(med[name], 1),
                   "min": round(min(v), 1), "max": round(max(v), 1),
                   "ratio_to_torch_reference": round(med[name] / med[REFERENCE], 3),
                   "ratio_to_pyro_example": round(med[name] / med[PYRO_EXAMPLE], 3)}
            for name, v in raw.items()}


def print_table(batch_size: int, n_steps: int, summary: dict) -> None:
    w = max(map(len, summary))
    print(f"\nbatch {batch_size} ({n_steps} timed steps per rep), samples/s")
    print(f"{'contender':<{w}}  {'median':>8}  {'min':>8}  {'max':>8}  {'vs torch':>8}  "
          f"{'vs pyro-ex':>10}")
    for name, s in summary.items():
        print(f"{name:<{w}}  {s['median']:>8,.0f}  {s['min']:>8,.0f}  {s['max']:>8,.0f}  "
              f"{s['ratio_to_torch_reference']:>8.2f}  {s['ratio_to_pyro_example']:>10.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few reps and steps (smoke run)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--reps", type=int, default=None, help="repetitions (5; quick: 2)")
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (every contender on it)")
    parser.add_argument("--install-pythae", action="store_true",
                        help="if pythae is missing, try `pip install pythae` once")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    warmup = 2 if args.quick else 5

    status = pythae_status(args.install_pythae)
    print(f"torch threads: {torch.get_num_threads()}; pythae: {status or 'available'}")
    data = pyrovae.load_dataset("mnist", binarize="dynamic")
    x = data.train_data(1, 0).to(args.device)  # Trainer.data.train_data(1, 0): [60000, 784]
    results, steps = {}, {}
    for batch_size in args.batch_sizes:
        steps[batch_size] = steps_for(batch_size, args.quick)
        print(f"batch {batch_size}: building contenders", flush=True)
        runs = {name: (step, batch_size, steps[batch_size])
                for name, step in contenders(data, batch_size, status is None,
                                             args.device).items()}
        raw = interleaved(runs, x, reps, warmup)
        results[str(batch_size)] = summarize(raw)
    for batch_size in args.batch_sizes:
        print_table(batch_size, steps[batch_size], results[str(batch_size)])
    write_json(args.out, {
        "benchmark": "train_speed", "unit": "training samples per second", **environment(),
        "device": args.device, "device_name": (torch.cuda.get_device_name()
                                               if args.device.startswith("cuda") else "cpu"),
        "batch_sizes": args.batch_sizes, "reps": reps, "warmup_steps": warmup,
        "timed_steps": {str(b): s for b, s in steps.items()}, "quick": args.quick,
        "fast_field": has_fast(), "pythae": status or PYTHAE_TIMED,
        "notes": "median/min/max over reps; ratios are ratios of medians; contenders are "
                 "described in benchmarks/train_speed.py's docstring",
        "results": results})


if __name__ == "__main__":
    main()
