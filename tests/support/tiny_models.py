"""A user's own module (``model.kind = "module"``, docs/custom_models.md) at its smallest: one
Gaussian latent, tiny tanh MLPs, Bernoulli pixels of 8x8 digits (D = 64). Shared by the tests of
user modules (tests/kinds/test_custom_model.py, whose work-folder ``usermods`` re-exports it)
and the data-parallel job (tests/training/distributed_worker.py); its import path,
``tests.support.tiny_models:TinyVAE``, is what a run of it records."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn


class TinyVAE(PyroModule):
    """x -> z (``latent`` dims) -> x, encoder and decoder each one tanh layer of ``hidden``."""

    def __init__(self, input_shape=(1, 8, 8), latent=4, hidden=16):
        super().__init__()
        self.input_shape, self.latent, self.hidden = tuple(input_shape), latent, hidden
        d = 64
        self.enc = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, d))

    def _plate(self, x, n_data):
        return pyro.plate("data", n_data or x.shape[0], subsample=torch.arange(x.shape[0]))

    def model(self, x, n_data=None):
        with self._plate(x, n_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

    def guide(self, x, n_data=None):
        with self._plate(x, n_data):
            loc, s = self.enc(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(s) + 1e-4).to_event(1))
