"""Fully connected encoder and decoder."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.runtime.registry import ACTIVATIONS

for _name, _module in (("relu", nn.ReLU), ("softplus", nn.Softplus), ("tanh", nn.Tanh),
                       ("elu", nn.ELU), ("leaky_relu", nn.LeakyReLU), ("gelu", nn.GELU)):
    ACTIVATIONS.register(_name, _module)  # model.activation's choices

MIN_SCALE = 1e-4  # floor on the encoder's standard deviation, keeps log q(z|x) finite

#: weight initialisations of ``mlp``: PyTorch's default for nn.Linear, W ~ U(+-1/sqrt(fan_in))
#: (variance 1/(3 fan_in)), or Glorot & Bengio (2010)'s W ~ U(+-sqrt(6/(fan_in + fan_out)))
#: with zero biases, the "heuristic" Burda et al. (2015) train their tanh networks from
INITS = ("torch", "glorot")


def activation(name: str) -> nn.Module:
    """A fresh activation module called ``name``."""
    return ACTIVATIONS.get(name)()


def mlp(sizes: list[int], act: str, init: str = "torch") -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ``act`` between them (not after the
    last), initialised by ``init`` (one of ``INITS``)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if init == "glorot":
            nn.init.xavier_uniform_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        elif init != "torch":
            raise ValueError(f"init = {init!r} is not one of {INITS}")
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


def gaussian_head(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split [..., 2L] into loc [..., L] and scale = softplus(.) + MIN_SCALE [..., L]."""
    loc, raw = h.chunk(2, dim=-1)
    return loc, F.softplus(raw) + MIN_SCALE


class MLPEncoder(nn.Module):
    """x [B, D] -> hidden layers -> (loc, scale) of q(z|x), each [B, L]; or, with ``outputs``
    = P given (a posterior family's own parameterisation), the raw last layer [B, P]."""

    def __init__(self, input_shape, hidden, latent_dim: int, act: str = "softplus",
                 outputs: int | None = None):
        super().__init__()
        self.input_dim = math.prod(input_shape)
        self.raw = outputs is not None
        self.net = mlp([self.input_dim, *hidden, outputs if self.raw else 2 * latent_dim], act)

    def forward(self, x):
        h = self.net(x)
        return h if self.raw else gaussian_head(h)


class MLPDecoder(nn.Module):
    """z [..., L] -> hidden layers (encoder's, reversed) -> out [..., K * D]."""

    def __init__(self, input_shape, hidden, latent_dim: int, act: str = "softplus",
                 params_per_pixel: int = 1):
        super().__init__()
        out_dim = params_per_pixel * math.prod(input_shape)
        self.net = mlp([latent_dim, *reversed(tuple(hidden)), out_dim], act)

    def forward(self, z):
        return self.net(z)


def mlp_decoder_floats(hidden, input_dim: int, params_per_pixel: int = 1) -> int:
    """Numbers one point (one particle) produces through :class:`MLPDecoder`: each hidden
    layer before and after its activation, 2 sum(hidden), and the output K D."""
    return 2 * sum(hidden) + params_per_pixel * input_dim
