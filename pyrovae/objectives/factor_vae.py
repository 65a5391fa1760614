"""FactorVAE (Kim & Mnih 2018): a total-correlation penalty estimated by a discriminator.

``[model.kl] decomposition = "factor"`` (registered in decompositions.py) adds to meanfield's
loss, for one draw z_i ~ q(z|x_i) per point of a minibatch of B (z: [B, L]),

    gamma * TC^,   TC^ = (N / B) sum_i logit D(z_i) = (N / B) sum_i log D(z_i) / (1 - D(z_i))

D(z) the discriminator's probability that z came from the aggregate posterior q(z) rather
than from the product of its marginals prod_j q(z_j). For the Bayes-optimal D,
logit D(z) = log q(z) - log prod_j q(z_j) (the density-ratio trick), so E_q(z)[logit D] is the
total correlation KL(q(z) || prod_j q(z_j)), and the (N / B) sum is its data-plate scaling, as
for every other per-point term of the loss. The penalty is not scaled by the KL weight beta_t
(the ELBO keeps its own beta_t * KL; the paper's loss is ELBO - gamma TC). D's parameters enter
the penalty detached: the VAE's gradient reaches the encoder through z, never D.

D is trained after each VAE step by :meth:`FactorTraining.step` (the trainer calls it), with
its own Adam (``factor_lr``, betas (0.5, 0.9) as in the paper), on the z the VAE step drew,
detached: the minibatch is split in two halves (this module's choice; Kim & Mnih draw a second
minibatch),

    positives  z[:h]                          label 1, draws of q(z)
    negatives  permute_dims(z[h:2h])          label 0, draws of prod_j q(z_j)

h = B // 2, where permute_dims permutes each of the L columns independently across the h rows;
the loss is the mean of the two halves' binary cross-entropies. The halves are independent
draws, so a positive row and the negatives never share a data point's other coordinates.

D (:class:`Discriminator`): an MLP L -> factor_hidden -> 1 logit with LeakyReLU(0.2) (the
paper: 6 layers of 1000 units and 2 softmax outputs; one logit is the same model, the
difference of the two). Its weights and its Adam's state are part of the run's checkpoint
(``FactorTraining.state_dict``), so a resumed run continues bit for bit; they are not part of
the VAE module (a run's exported weights and ``pyrovae.load`` do not need them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.rng import seeded
from pyrovae.runtime.settings import setting

BETAS = (0.5, 0.9)  # the discriminator's Adam (Kim & Mnih 2018, appendix)
_INIT_SEED_OFFSET = 4099  # D's initial weights: a stream apart from the run's (seed + offset)


@dataclass
class FactorSettings:
    """FactorVAE's weight of the total correlation and its discriminator."""

    factor_gamma: float = setting(35.0, "factor: weight gamma of the discriminator's total "
                                  "correlation estimate (Kim & Mnih's dSprites choice)", min=0.0)
    factor_hidden: tuple[int, ...] = setting((1000, 1000), "factor: hidden layer sizes of the "
                                             "discriminator MLP (the paper: 6 x 1000)")
    factor_lr: float = setting(1e-4, "factor: learning rate of the discriminator's Adam "
                               "(betas 0.5, 0.9)", min=0.0, exclusive_min=True)


class Discriminator(nn.Module):
    """z [B, L] -> logit D(z) [B]: an MLP with LeakyReLU(0.2) hidden layers."""

    def __init__(self, latent_dim: int, hidden=(1000, 1000)):
        super().__init__()
        sizes = [int(latent_dim), *(int(h) for h in hidden)]
        if any(s < 1 for s in sizes):
            raise ConfigError(f"model.kl.factor_hidden = {list(hidden)} must hold positive "
                              f"layer sizes")
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z [n, L] with each column permuted independently across the n rows: draws of
    prod_j q(z_j) from draws of q(z)."""
    keys = torch.rand(z.shape, generator=generator, dtype=torch.float32).to(z.device)
    return z.gather(0, keys.argsort(dim=0))


def discriminator_loss(disc: nn.Module, positives: torch.Tensor,
                       negatives: torch.Tensor) -> torch.Tensor:
    """Mean of the binary cross-entropies of D on q(z) draws (label 1) and on permuted draws
    (label 0)."""
    return _bce(disc(positives), disc(negatives))


def _bce(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits
    return 0.5 * (bce(pos, torch.ones_like(pos)) + bce(neg, torch.zeros_like(neg)))


class FactorTraining:
    """The discriminator of one run, its Adam, and the draws the last VAE step made."""

    def __init__(self, latent_dim: int, settings: FactorSettings, device=None, seed: int = 0):
        self.s = settings
        with seeded(seed + _INIT_SEED_OFFSET):  # (the run's random stream is left as it was)
            self.discriminator = Discriminator(latent_dim, settings.factor_hidden)
        self.discriminator.to(device if device is not None else "cpu")
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(),
                                          lr=settings.factor_lr, betas=BETAS)
        self._z: torch.Tensor | None = None
        self.last_loss: torch.Tensor | None = None
        # this epoch's sums: D's loss, its accuracy, its TC estimate mean logit D(z), steps;
        # on D's device, read once an epoch (no device-to-host copy in the step)
        self._sums = self._zeros()

    def _zeros(self) -> torch.Tensor:
        device = next(self.discriminator.parameters()).device
        return torch.zeros(4, dtype=torch.float64, device=device)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.discriminator.parameters())

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """logit D(z) [B] with D's parameters detached (gradient flows into z only)."""
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (z,))

    def penalty(self, z: torch.Tensor, n_data: int) -> torch.Tensor:
        """gamma * (N / B) * sum_i logit D(z_i), and keep z (detached) for :meth:`step`."""
        self._z = z.detach()
        return self.s.factor_gamma * self.logits(z).sum() * (n_data / z.shape[0])

    def step(self, average=None) -> None:
        """One Adam step of D on the halves of the last VAE step's z (module docstring);
        ``average(params)``: averages the gradients over processes (data-parallel)."""
        z, self._z = self._z, None
        if z is None:
            return
        h = z.shape[0] // 2
        if h < 1:
            raise ConfigError("model.kl.decomposition = \"factor\" trains its discriminator on "
                              "two halves of the minibatch; raise train.batch_size to >= 2")
        self.discriminator.train()
        self.optimizer.zero_grad(set_to_none=True)
        pos, neg = self.discriminator(z[:h]), self.discriminator(permute_dims(z[h:2 * h]))
        loss = _bce(pos, neg)
        loss.backward()
        if average is not None:
            average(self.parameters())
        self.optimizer.step()
        self.last_loss = loss.detach()
        with torch.no_grad():
            right = 0.5 * ((pos > 0).double().mean() + (neg <= 0).double().mean())
            self._sums += torch.stack([self.last_loss.double(), right, pos.double().mean(),
                                       torch.ones((), dtype=torch.float64, device=pos.device)])

    def epoch_metrics(self) -> dict:
        """The epoch's means, for history.csv, and a fresh start: ``disc_loss`` (D's binary
        cross-entropy, log 2 = 0.693 at chance), ``disc_accuracy`` (on its two halves, 0.5 at
        chance) and ``disc_tc`` (mean logit D(z) over q(z) draws: D's total-correlation
        estimate, nats, the quantity the VAE's penalty weights by gamma)."""
        loss, right, tc, n = self._sums.tolist()
        self._sums = self._zeros()
        if n == 0:
            return {"disc_loss": float("nan"), "disc_accuracy": float("nan"),
                    "disc_tc": float("nan")}
        return {"disc_loss": loss / n, "disc_accuracy": right / n, "disc_tc": tc / n}

    def state_dict(self) -> dict:
        return {"model": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch_sums": self._sums.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.discriminator.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "epoch_sums" in state:  # (checkpoints written before it was recorded start at 0)
            self._sums = state["epoch_sums"].to(self._zeros(), copy=True)


@torch.no_grad()
def tc_estimate(disc: nn.Module, z: torch.Tensor) -> float:
    """E_q(z)[logit D(z)] on draws z [n, L] of q(z): the density-ratio estimate of the total
    correlation KL(q(z) || prod_j q(z_j)) (nats)."""
    return float(disc(z).mean())


__all__ = ["FactorSettings", "Discriminator", "FactorTraining", "permute_dims",
           "discriminator_loss", "tc_estimate", "BETAS"]
