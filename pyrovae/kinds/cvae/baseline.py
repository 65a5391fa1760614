"""The deterministic baseline of Pyro's ``examples/cvae`` (baseline.py): an MLP from the
visible quadrants x_in to the pixel probabilities of the hidden ones, trained with binary
cross-entropy on the hidden pixels.

    BaselineNet:   x_in [..., D_in] -> hidden layers -> logits l [..., D_out]
    its NLL:       -log p(x_out | x_in) = sum_{hidden d} softplus(l_d) - x_d l_d
                   (the binary cross-entropy summed over the hidden pixels of one image)

For binary pixels the summed cross-entropy is exactly the negative log-likelihood of x_out
under independent Bernoullis, so it stands beside the CVAE's importance-sampled
-log p(x_out | x_in) in the same units (nats per image). Pyro's network reads the whole image
with the hidden pixels set to -1; this one reads the visible pixels only (the same information).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.data import Dataset
from pyrovae.runtime.errors import ConfigError
from pyrovae.components.nets.mlp import mlp
from pyrovae.runtime.rng import seed_everything
from pyrovae.kinds.cvae.masks import visible_mask


class BaselineNet(nn.Module):
    """x_in -> logits of x_out, for images of ``image_shape`` with ``visible`` quadrants."""

    def __init__(self, image_shape, visible: int, hidden=(500, 500), activation: str = "relu"):
        super().__init__()
        self.image_shape, self.visible = tuple(int(s) for s in image_shape), int(visible)
        self.hidden, self.activation = tuple(hidden), activation
        mask = visible_mask(self.image_shape, self.visible)
        self.register_buffer("in_index", mask.nonzero().squeeze(1), persistent=False)
        self.register_buffer("out_index", (~mask).nonzero().squeeze(1), persistent=False)
        self.net = mlp([len(self.in_index), *self.hidden, len(self.out_index)], activation)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_in, x_out) of images x [..., D]."""
        return x[..., self.in_index], x[..., self.out_index]

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        """Logits of the hidden pixels: x_in [..., D_in] -> [..., D_out]."""
        return self.net(x_in)

    @torch.no_grad()
    def predict(self, x_in: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of the hidden quadrants: [..., D_in] -> [..., D_out]."""
        return torch.sigmoid(self(x_in))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x_out | x_in) per image of x [B, D]: the binary cross-entropy summed over
        the hidden pixels, [B] nats."""
        x_in, x_out = self.split(x)
        return F.binary_cross_entropy_with_logits(self(x_in), x_out, reduction="none").sum(-1)


@torch.no_grad()
def baseline_nll(net: BaselineNet, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """:meth:`BaselineNet.nll` of every row of x [N, D], in batches: [N] float64."""
    was = net.training
    net.eval()
    try:
        return torch.cat([net.nll(xb).double() for xb in x.split(batch_size)])
    finally:
        net.train(was)


@dataclass
class BaselineRun:
    """A trained baseline: the network, one history row per epoch and the training time."""

    net: BaselineNet
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def train_baseline(data: Dataset, visible: int, epochs: int = 10, batch_size: int = 128,
                   lr: float = 1e-3, hidden=(500, 500), activation: str = "relu", seed: int = 0,
                   log=None) -> BaselineRun:
    """Fit a :class:`BaselineNet` by Adam on the summed cross-entropy of the hidden pixels.

    Each epoch reads ``data.train_data(epoch, seed)`` (the draw of dynamic binarization a
    pyrovae run of the same seed reads in that epoch) in a shuffled order, in batches of
    ``batch_size`` (the last partial batch dropped); after each epoch the test NLL (mean
    summed cross-entropy on ``data.test_data()``) is recorded and passed to ``log``."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"train_baseline needs epochs >= 1, batch_size >= 1 and lr > 0, got "
                          f"{epochs}, {batch_size}, {lr}")
    if batch_size > data.num_train:
        raise ConfigError(f"batch_size = {batch_size} is larger than the training set "
                          f"({data.num_train} examples); lower it")
    seed_everything(seed)
    net = BaselineNet(data.shape, visible, hidden, activation).to(data.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    run, x_test = BaselineRun(net), data.test_data()
    steps = data.num_train // batch_size
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        x = data.train_data(epoch, seed)
        order = torch.randperm(data.num_train, generator=torch.Generator().manual_seed(
            seed * 7919 + epoch)).to(x.device)
        net.train()
        total = 0.0
        for i in range(steps):
            xb = x[order[i * batch_size:(i + 1) * batch_size]]
            loss = net.nll(xb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        test = baseline_nll(net, x_test)
        row = {"epoch": epoch, "train_nll": total / steps, "test_nll": float(test.mean()),
               "test_nll_se": float(test.std() / math.sqrt(len(test))) if len(test) > 1
               else float("nan"), "seconds": time.perf_counter() - start}
        run.history.append(row)
        if log is not None:
            log(row)
    run.seconds = time.perf_counter() - start
    net.eval()
    return run
