"""Stochastic variational inference: fit a VAE's model and guide by maximising an ELBO.

Each step takes a minibatch x [B, D] sliced from the training tensor (shuffled each epoch,
the last partial batch dropped so every step has the same shape), computes the chosen Pyro
ELBO's differentiable loss -ELBO (scaled to the whole data set by the model's plate),
back-propagates, and takes one Adam step over all parameters (one torch optimizer, not one per
parameter). The loss is only copied to the host every ``log_every`` steps and at the end of an
epoch; after each epoch the test ELBO is evaluated, a history row and a checkpoint written.
"""

from __future__ import annotations

import platform
import time
from dataclasses import replace
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..config import RunConfig, VAEConfig
from ..data import Dataset
from ..errors import ConfigError
from ..evaluation import evaluate_elbo
from ..files import atomic_write, write_csv, write_json
from ..model import VAE
from ..objectives import has_differentiable_loss, make_elbo
from ..reports import save_elbo_curves, save_reconstructions, save_samples
from ..rng import seed_everything
from .checkpoint import CHECKPOINT_NAME, save_checkpoint
from .run import Run, config_text, describe_device, prepare_run_dir

_PERM_SEED_OFFSET = 7919  # the data order uses a stream apart from dynamic binarization


def resolve_config(config: VAEConfig | RunConfig, data: Dataset, overrides: dict) -> RunConfig:
    """A RunConfig from a model config or a whole run config, with ``train`` keyword overrides."""
    if isinstance(config, VAEConfig):
        config = RunConfig(model=config)
        config = replace(config, data=replace(config.data, name=data.name,
                                              binarize=data.binarize, seed=data.seed))
    elif not isinstance(config, RunConfig):
        raise ConfigError(f"train() needs a VAEConfig or RunConfig, got {type(config).__name__}")
    if overrides:
        fields = set(config.train.__dataclass_fields__)
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"unknown train() option '{unknown[0]}' (valid: "
                              f"{', '.join(sorted(fields))})")
        config = replace(config, train=replace(config.train, **overrides))
    return config


def check_compatible(config: RunConfig, data: Dataset, vae: VAE) -> None:
    """Refuse, before any training, data that the model cannot fit."""
    if config.train.batch_size > data.num_train:
        raise ConfigError(f"train.batch_size = {config.train.batch_size} is larger than the "
                          f"training set ({data.num_train} examples); lower it")
    vae.likelihood.check(data.train_data(0, config.train.seed), f"{data.name} training data")
    vae.likelihood.check(data.test_data(), f"{data.name} test data")


def _versions() -> dict:
    return {"pyrovae": __version__, "pyro": pyro.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def train(config: VAEConfig | RunConfig, data: Dataset, out: str | Path | None = None,
          force: bool = False, **train_options) -> Run:
    """Train a VAE on ``data`` and (if ``out`` is given) write a run folder there.

    ``config`` is a :class:`VAEConfig` (then ``train_options`` such as ``epochs=10``,
    ``batch_size=128``, ``lr=1e-3``, ``seed=0``, ``device="cpu"`` fill the train section) or a
    whole :class:`RunConfig`. Returns a :class:`Run` with the trained VAE, the per-epoch
    history and the final metrics (ELBOs in nats per data point, higher is better).
    """
    config = resolve_config(config, data, train_options)
    tc = config.train
    device = describe_device(tc.device)
    out_dir = prepare_run_dir(out, config, force) if out is not None else None

    seed_everything(tc.seed)
    vae = VAE(config.model, data.shape).to(device)
    data = data.to(device)
    check_compatible(config, data, vae)

    elbo = make_elbo(config.model.elbo, config.model.num_particles)
    differentiable = has_differentiable_loss(elbo)
    optimizer = torch.optim.Adam(vae.parameters(), lr=tc.lr)
    n, bsz = data.num_train, tc.batch_size
    steps_per_epoch = n // bsz
    if out_dir is not None:
        atomic_write(out_dir / "config.toml", config_text(config))

    model, guide = vae.model, vae.guide  # bound once: JIT objectives key graphs on their ids
    history: list[dict] = []
    step, start = 0, time.perf_counter()
    bar = tqdm(total=tc.epochs * steps_per_epoch, disable=not tc.progress, unit="step",
               dynamic_ncols=True, desc="train")
    for epoch in range(1, tc.epochs + 1):
        epoch_start = time.perf_counter()
        x_epoch = data.train_data(epoch, tc.seed)
        gen = torch.Generator().manual_seed(tc.seed * _PERM_SEED_OFFSET + epoch)
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        vae.train()
        for i in range(steps_per_epoch):
            xb = x_epoch[order[i * bsz:(i + 1) * bsz]]
            with pyro.validation_enabled(step == 0):  # validate the first step only
                if differentiable:
                    loss = elbo.differentiable_loss(model, guide, xb, n_data=n)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    loss = loss.detach()
                else:
                    optimizer.zero_grad(set_to_none=True)
                    loss = torch.as_tensor(elbo.loss_and_grads(model, guide, xb, n_data=n))
            optimizer.step()
            loss_sum += loss
            step += 1
            bar.update(1)
            if step % tc.log_every == 0:
                bar.set_postfix(epoch=epoch, elbo=f"{-float(loss) / n:.2f}")
        train_elbo = -float(loss_sum) / (steps_per_epoch * n)
        # the test ELBO uses the analytic KL where one exists: the same expectation as every
        # objective's estimate, with less variance
        test = evaluate_elbo(vae, data.test_data(), tc.eval_batch_size, seed=tc.seed)
        history.append({"epoch": epoch, "step": step, "train_elbo": train_elbo,
                        "test_elbo": test["elbo"], "test_log_px_z": test["log_px_z"],
                        "test_kl": test["kl"], "beta": vae.beta,
                        "seconds": time.perf_counter() - epoch_start})
        bar.set_postfix(epoch=epoch, train_elbo=f"{train_elbo:.2f}", test_elbo=f"{test['elbo']:.2f}")
        if out_dir is not None:
            write_csv(out_dir / "history.csv", history)
            save_checkpoint(out_dir / CHECKPOINT_NAME, {
                "config": config.to_dict(), "input_shape": list(data.shape),
                "model": vae.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "step": step})
    bar.close()
    seconds = time.perf_counter() - start
    vae.eval()
    metrics = {
        "train_elbo": history[-1]["train_elbo"], "test_elbo": test["elbo"],
        "test_elbo_se": test["elbo_se"], "test_log_px_z": test["log_px_z"],
        "test_kl": test["kl"], "epochs": tc.epochs, "steps": step, "seconds": seconds,
        "train_samples_per_second": step * bsz / max(seconds, 1e-9),
        "objective": config.model.elbo, "test_kl_estimator": test["kl_estimator"],
        "num_train": n, "num_test": int(data.test_x.shape[0]), "device": str(device),
        "versions": _versions(),
    }
    run = Run(vae, config, out_dir, history, metrics)
    if out_dir is not None:
        write_reports(run, data)
    return run


def write_reports(run: Run, data: Dataset) -> None:
    """metrics.json and the PNGs of a finished run."""
    out = run.path
    save_samples(run.vae, out / "samples.png", seed=run.config.train.seed)
    run.metrics["reconstruction_mse"] = save_reconstructions(run.vae, data.test_data(),
                                                             out / "reconstructions.png")
    save_elbo_curves(run.history, out / "elbo.png")
    write_json(out / "metrics.json", run.metrics)
