"""Issue 29: the memory checks count a model's parameters by asking its kind (MODEL_KINDS), which
asks its components (a meta-device build, or a formula where a part reads values when built);
memory.py names no component. So the estimate is the built model's count for every kind and
every registered prior, posterior, likelihood and network, a plug-in is counted with no edit to
memory.py, and kind hvae is checked like the others."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pyrovae.config import SSVAEConfig, VAEConfig
from pyrovae.components.priors import Prior
from pyrovae.kinds.cvae import CVAEConfig
from pyrovae.kinds.hvae import HVAEConfig
from pyrovae.runs import make_model
from pyrovae.runtime import memory
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import LIKELIHOODS, NETWORKS, POSTERIORS, PRIORS

SMALL = dict(latent_dim=3, hidden=(16,), channels=(4, 8), elbo="trace")
IMAGE = (1, 8, 6)


def counts(model) -> tuple[int, int]:
    """(parameters, parameters + buffers) of a built model."""
    params = sum(p.numel() for p in model.parameters())
    return params, params + sum(b.numel() for b in model.buffers())


def assert_exact(config, shape):
    params, held = counts(make_model(config, shape))
    assert memory.model_parameters(config, shape, buffers=False) == params
    assert memory.model_parameters(config, shape) == held


def vae_grid():
    """One VAE config per registered choice of each component (the others at defaults)."""
    for name in PRIORS:
        yield f"prior-{name}", VAEConfig(prior=name, **SMALL)
    yield "prior-flow-L1", VAEConfig(prior="flow", **{**SMALL, "latent_dim": 1})
    for name in POSTERIORS:
        yield f"posterior-{name}", VAEConfig(posterior=name, **SMALL)
    for name in LIKELIHOODS:
        yield f"likelihood-{name}", VAEConfig(likelihood=name, **SMALL)
    for name in NETWORKS:
        yield f"network-{name}", VAEConfig(network=name, **SMALL)
    yield "conv-iaf", VAEConfig(network="conv", posterior="iaf", **SMALL)
    yield "conv-vamp", VAEConfig(network="conv", prior="vamp", **SMALL)


GRID = list(vae_grid())


@pytest.mark.parametrize("config", [c for _, c in GRID], ids=[i for i, _ in GRID])
def test_vae_estimate_is_the_built_models_count(config):
    assert_exact(config, IMAGE)


@pytest.mark.parametrize("config, shape", [
    (SSVAEConfig(latent_dim=3, hidden=(16,), classifier=(8,), num_classes=3), IMAGE),
    (SSVAEConfig(latent_dim=3, hidden=(16, 8), classifier=(8,), num_classes=3,
                 classifier_network="conv", channels=(4,)), IMAGE),
    (HVAEConfig(stochastic=(6, 3), hidden=((16,), (8, 8))), IMAGE),
    (HVAEConfig(stochastic=(4,), hidden=((),)), (20,)),
    (CVAEConfig(latent_dim=3, hidden=(16,)), IMAGE),
    (CVAEConfig(latent_dim=3, hidden=(16,), condition="label", num_classes=4), IMAGE),
], ids=["ssvae", "ssvae-conv", "hvae", "hvae-linear", "cvae-quadrants", "cvae-label"])
def test_every_kinds_estimate_is_the_built_models_count(config, shape):
    assert_exact(config, shape)


def test_estimating_allocates_nothing_and_leaves_the_random_state():
    config = VAEConfig(latent_dim=10**9, hidden=(128,))  # 3.9e11 numbers: only on meta
    state = torch.get_rng_state()
    assert memory.model_parameters(config, (1, 8, 8), buffers=False) > 10**11
    assert torch.equal(state, torch.get_rng_state())


class _ShiftPrior(Prior):
    """N(shift, I) with a learned shift and a learned 2 x 2 table: a plug-in."""

    analytic_kl = True

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.shift = nn.Parameter(torch.zeros(latent_dim))
        self.table = nn.Parameter(torch.zeros(2, 2))

    def forward(self):
        import pyro.distributions as dist
        return dist.Normal(self.shift, 1.0).to_event(1)


def test_a_plug_in_prior_is_counted_without_editing_memory():
    PRIORS.register("test-shift", _ShiftPrior, analytic_kl=True)
    try:
        config = VAEConfig(prior="test-shift", **SMALL)
        assert_exact(config, IMAGE)
        without = memory.model_parameters(VAEConfig(**SMALL), IMAGE, buffers=False)
        assert memory.model_parameters(config, IMAGE, buffers=False) == without + 3 + 4
    finally:
        PRIORS.unregister("test-shift")


def test_an_hvae_too_large_for_memory_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(memory, "memory_budget", lambda device=None: (2**20, None))
    config = HVAEConfig(stochastic=(500, 100), hidden=((400,), (300,)))
    with pytest.raises(ConfigError) as err:
        make_model(config, (1, 28, 28))
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("the model (") and "model.stochastic = [500, 100], hidden = " \
        "[[400], [300]], inputs of shape (1, 28, 28)) needs about" in line
    assert line.endswith("make model.stochastic or hidden smaller")


def test_a_vae_refusal_names_its_networks_sizes(monkeypatch):
    monkeypatch.setattr(memory, "memory_budget", lambda device=None: (2**10, None))
    with pytest.raises(ConfigError, match=r"^the model \(.* parameters: model.latent_dim = 3, "
                                          r"channels = \[4, 8\], inputs of shape \(1, 8, 6\)\) "
                                          r".*; make model.latent_dim or channels smaller$"):
        make_model(VAEConfig(network="conv", **SMALL), IMAGE)
