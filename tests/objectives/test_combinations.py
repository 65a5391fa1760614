"""Every (prior x likelihood x objective) combination that is valid trains; every invalid one
fails when the config is built, before any training."""

import itertools

import numpy as np
import pytest
import torch

from pyrovae import DataConfig, RunConfig, TrainConfig, VAEConfig, load_dataset
from pyrovae.config import (ANALYTIC_KL_OBJECTIVES, ANALYTIC_KL_PRIORS, LIKELIHOODS, OBJECTIVES,
                            PRIORS)
from pyrovae.data import RawData, from_arrays
from pyrovae.runtime.errors import ConfigError
from pyrovae.training.trainer import Trainer

ANALYTIC_OBJECTIVES = tuple(ANALYTIC_KL_OBJECTIVES)  # the registry's capability (its contents:
# tests/runtime/test_architecture.py)
ALL = list(itertools.product(PRIORS, LIKELIHOODS, OBJECTIVES))
VALID = [c for c in ALL if c[2] not in ANALYTIC_OBJECTIVES or c[0] in ANALYTIC_KL_PRIORS]
INVALID = [c for c in ALL if c not in VALID]


@pytest.fixture(scope="module")
def datasets():
    binary = load_dataset("digits", binarize="dynamic", train_size=256, test_size=32)
    grey = load_dataset("digits", binarize="none", train_size=256, test_size=32)
    to_bytes = lambda x: np.round(x.numpy() * 255).astype(np.uint8)  # noqa: E731
    eight_bit = from_arrays("digits-8bit", RawData(to_bytes(grey.train_x), to_bytes(grey.test_x)))
    return {"bernoulli": binary, "discretized-logistic": eight_bit, "beta-binomial": eight_bit,
            "other": grey}


@pytest.mark.parametrize("prior,likelihood,elbo", VALID, ids=["-".join(c) for c in VALID])
def test_valid_combination_trains(datasets, prior, likelihood, elbo):
    data = datasets.get(likelihood, datasets["other"])
    model = VAEConfig(latent_dim=3, hidden=(16,), likelihood=likelihood, elbo=elbo,
                      prior={"name": prior, "components": 4, "flow_layers": 1})
    cfg = RunConfig(model=model, data=DataConfig(name="digits"),
                    train=TrainConfig(batch_size=64, lr=1e-2, progress=False, fast=False))
    trainer = Trainer(cfg, data, None)
    trainer.prepare()
    x = trainer.data.train_data(1, 0)
    before = [p.detach().clone() for p in trainer.vae.parameters()]
    losses = [float(trainer.train_step(x[i * 64:(i + 1) * 64])) for i in range(3)]
    assert all(np.isfinite(losses)), losses
    moved = [not torch.equal(a, b) for a, b in zip(before, trainer.vae.parameters())]
    assert all(moved), [n for (n, _), m in zip(trainer.vae.named_parameters(), moved) if not m]
    assert all(torch.isfinite(p).all() for p in trainer.vae.parameters())


@pytest.mark.parametrize("prior,likelihood,elbo", INVALID, ids=["-".join(c) for c in INVALID])
def test_invalid_combination_fails_at_config_time(prior, likelihood, elbo):
    with pytest.raises(ConfigError, match="closed-form KL"):
        VAEConfig(likelihood=likelihood, elbo=elbo, prior=prior)
