"""The conditional VAE (Sohn, Lee & Yan 2015) as a pair of Pyro programs.

Each row x [D] of a minibatch (as the model sees it) is split by fixed index sets into the
conditioning input x_in [D_in] and the output x_out [D_out] (``split``): the visible and the
hidden quadrants of an image (``condition = "quadrants"``), or the one-hot class and the image
(``condition = "label"``, whose rows are the image followed by onehot(y), see data.py)::

    model(x):  for each i in plate("data", N, subsample of size B):
                   z_i ~ p(z | x_in_i) = N(mu_p(x_in_i), diag(sigma_p(x_in_i)^2))   prior network
                   x_out_i ~ p(x_out | x_in_i, z_i)       observed          generation network
    guide(x):  for each i in the same plate:
                   z_i ~ q(z | x_in_i, x_out_i) = N(mu_q, diag(sigma_q^2))       recognition network

Only x_out is observed, so every generic number read off the traces is conditional: the ELBO
is a bound on log p(x_out | x_in), and the importance-sampled log-likelihood of ``pyrovae
evaluate`` (weights p(x_out, z | x_in) / q(z | x_in, x_out)) estimates log p(x_out | x_in).
x_in is never scored, and the networks that see x_out are the recognition network only.

With x_in blanked (all zeros) the prior network gives one constant N(mu, sigma^2) and the
generation network a function of z alone: the model is a VAE of x_out with a learned normal
prior (tests/kinds/test_conditional.py builds that VAE from the same weights and gets the same
numbers).

Shapes: x [B, D] -> x_in [B, D_in], x_out [B, D_out]; z [B, L] ([K, B, L] under a particle
plate: the networks broadcast over the extra dimension).
"""

from __future__ import annotations

import contextlib
import itertools

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.runtime import memory
from pyrovae.runtime.errors import ConfigError
from pyrovae.kinds.base import KindModule
from pyrovae.components.likelihoods import make_likelihood
from pyrovae.components.nets.mlp import activation, gaussian_head, mlp
from pyrovae.runtime.rng import seeded
from pyrovae.kinds.cvae.config import CVAEConfig
from pyrovae.kinds.cvae.data import with_labels
from pyrovae.kinds.cvae.masks import visible_mask

_instance_ids = itertools.count()


class GenerationNet(nn.Module):
    """(z [..., B, L], x_in [B, D_in]) -> MLP([z, x_in]) [..., B, out].

    The first layer on the concatenation is W_z z + W_in x_in + b, computed as the sum of two
    linear maps so that x_in [B, D_in] broadcasts against z [K, B, L] without being copied K
    times."""

    def __init__(self, latent_dim: int, in_dim: int, hidden, out_dim: int, act: str):
        super().__init__()
        sizes = [*hidden, out_dim]
        self.first = nn.Linear(latent_dim, sizes[0])
        self.cond = nn.Linear(in_dim, sizes[0], bias=False)
        self.rest = (nn.Sequential(activation(act), mlp(sizes, act)) if len(sizes) > 1
                     else nn.Identity())

    def forward(self, z, x_in):
        return self.rest(self.first(z) + self.cond(x_in))


def check_size(config: CVAEConfig, d_in: int, d_out: int, params_per_pixel: int) -> None:
    """Refuse, before they are built, networks whose parameters alone would not fit in memory:
    one line naming the sizes, num_classes first for ``condition = "label"`` (its one-hot
    input of C values feeds the first layer of all three networks)."""
    hidden, latent = tuple(config.hidden), config.latent_dim

    def linear(sizes):
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    first = hidden[0] if hidden else params_per_pixel * d_out
    n = (linear([d_in + d_out, *hidden, 2 * latent]) + linear([d_in, *hidden, 2 * latent])
         + (latent + 1 + d_in) * first + linear([*hidden, params_per_pixel * d_out]) + d_out)
    label = config.condition == "label"
    sizes = (f"model.num_classes = {d_in}, " if label else "model.") + \
        f"latent_dim = {latent}, hidden = {list(hidden)}"
    names = ("model.num_classes, latent_dim" if label else "model.latent_dim") + " or hidden"
    memory.check_bytes(memory.FLOAT * n, f"the conditional VAE ({n:.3g} parameters: {sizes}, "
                       f"{d_out} outputs)", f"make {names} smaller")


class CVAE(KindModule):
    """A conditional VAE built from a :class:`CVAEConfig` for examples of ``input_shape``
    ((C, H, W) images; the model sees them flattened, followed by the one-hot class for
    ``condition = "label"``)."""

    capabilities = ("encoder", "sample", "condition")
    condition_names = ("x_in",)
    max_plate_nesting = 1
    config_class = CVAEConfig

    def __init__(self, config: CVAEConfig, input_shape):
        super().__init__(config, input_shape, name=f"cvae{next(_instance_ids)}")
        d = self.image_dim = self.input_dim  # the image (pictures); input_dim set below
        if config.condition == "quadrants":
            mask = visible_mask(self.input_shape, config.visible)
            in_index, out_index = mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)
            d_in, d_out = len(in_index), len(out_index)
        else:
            d_in, d_out = config.num_classes, d
        self.in_dim, self.out_dim = d_in, d_out
        hidden, latent, act = tuple(config.hidden), config.latent_dim, config.activation
        self.likelihood = make_likelihood(config, d_out)
        check_size(config, d_in, d_out, self.likelihood.params_per_pixel)  # before building
        if config.condition == "label":
            in_index, out_index = torch.arange(d, d + d_in), torch.arange(d)
        self.input_dim = d if config.condition == "quadrants" else d + d_in
        self.register_buffer("in_index", in_index, persistent=False)
        self.register_buffer("out_index", out_index, persistent=False)
        self.encoder = mlp([d_in + d_out, *hidden, 2 * latent], act)      # q(z | x_in, x_out)
        self.prior_net = mlp([d_in, *hidden, 2 * latent], act)            # p(z | x_in)
        self.decoder = GenerationNet(latent, d_in, hidden,                # p(x_out | x_in, z)
                                     self.likelihood.params_per_pixel * d_out, act)

    # ---- the data the model reads ----------------------------------------------------------

    def data_view(self, data):
        """The data set as this model sees it (``pyrovae.runtime.interface.data_view``): the images
        themselves, or for ``condition = "label"`` each image followed by its one-hot class."""
        if self.config.condition == "label":
            return with_labels(data, self.config.num_classes)
        return data

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_in [..., D_in], x_out [..., D_out]) of rows x [..., D]."""
        if x.shape[-1] != self.input_dim:
            raise ConfigError(f"{type(self).__name__} takes rows of {self.input_dim} values "
                              f"(condition = \"{self.config.condition}\"), got {x.shape[-1]}")
        return x[..., self.in_index], x[..., self.out_index]

    def _plate(self, x: torch.Tensor, n_data: int | None):
        """The data plate over the B rows of x, scaled by N / B when the data set has N rows."""
        b = x.shape[0]
        return pyro.plate("data", size=n_data or b, subsample=torch.arange(b, device=x.device),
                          dim=-1)

    # ---- the two programs ------------------------------------------------------------------

    def prior(self, x_in: torch.Tensor) -> dist.TorchDistribution:
        """p(z | x_in): x_in [..., D_in] -> a diagonal normal, batch [...], event [L]."""
        loc, scale = gaussian_head(self.prior_net(x_in))
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def model(self, x: torch.Tensor, n_data: int | None = None) -> torch.Tensor:
        """p(z | x_in) p(x_out | x_in, z) with x_out observed; x [B, D]. Returns the generation
        network's output [..., B, K * D_out]."""
        x_in, x_out = self.split(x)
        with self._plate(x, n_data):
            z = pyro.sample("z", self.prior(x_in))
            out = self.decoder(z, x_in)
            pyro.sample("x_out", self.likelihood(out), obs=x_out)
        return out

    def guide(self, x: torch.Tensor, n_data: int | None = None) -> torch.Tensor:
        """q(z | x_in, x_out); x [B, D]. Returns z [..., B, L]."""
        x_in, x_out = self.split(x)
        with self._plate(x, n_data):
            loc, scale = gaussian_head(self.encoder(torch.cat([x_in, x_out], dim=-1)))
            return pyro.sample("z", dist.Normal(loc, scale, validate_args=False).to_event(1))

    def particle_bytes(self, batch: int) -> int:
        """Memory of one importance draw per point for B points (float32): each network's
        hidden layers before and after the activation, the outputs, the rows and the
        likelihood's temporaries, times 3 for room."""
        c = self.config
        floats = (3 * 2 * sum(c.hidden) + 6 * c.latent_dim
                  + (self.likelihood.params_per_pixel + 2) * self.out_dim + 2 * self.input_dim)
        return 4 * batch * floats * 3

    # ---- deterministic helpers for using a trained model (no Pyro effects) -------------------

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | x_in, x_out): x [B, D] -> ([B, L], [B, L])."""
        x_in, x_out = self.split(x.reshape(x.shape[0], -1))
        return gaussian_head(self.encoder(torch.cat([x_in, x_out], dim=-1)))

    @torch.no_grad()
    def condition(self, x: torch.Tensor) -> dict:
        """What the generation network needs beside z for the rows of x [B, D]: {"x_in"}."""
        return {"x_in": self.split(x.reshape(x.shape[0], -1))[0]}

    @torch.no_grad()
    def decode(self, z: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """E[x_out | x_in, z]: z [..., B, L], x_in [B, D_in] -> [..., B, D_out]."""
        return self.likelihood.mean(self.decoder(z, x_in))

    @torch.no_grad()
    def image(self, x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        """The image [..., C*H*W] with x_in's and x_out's pixels in their places (for
        ``condition = "label"`` the image is x_out itself)."""
        if self.config.condition == "label":
            return x_out
        shape = torch.broadcast_shapes(x_in.shape[:-1], x_out.shape[:-1])
        out = x_out.new_zeros(*shape, self.image_dim)
        out[..., self.in_index] = x_in.expand(*shape, -1)
        out[..., self.out_index] = x_out.expand(*shape, -1)
        return out

    def condition_value(self, text: str, rows=None):
        """The condition a command names by ``text`` (``pyrovae sample --condition``): a class
        0..C-1 for ``condition = "label"``; for quadrants the index of an example of ``rows()``
        (a callable giving the data [N, D] as the model sees them), whose visible quadrants
        condition."""
        try:
            value = int(text)
        except (TypeError, ValueError):
            value = None
        if self.config.condition == "label":
            c = self.config.num_classes
            if value is None or not 0 <= value < c:
                raise ConfigError(f"--condition {text!r}: a label-conditioned CVAE takes a class "
                                  f"0..{c - 1}")
            return value
        x = rows() if rows is not None else None
        if value is None or x is None or not 0 <= value < len(x):
            last = "N-1" if x is None else str(len(x) - 1)
            raise ConfigError(f"--condition {text!r}: a quadrant-conditioned CVAE takes the "
                              f"index 0..{last} of an example whose visible quadrants it "
                              f"completes")
        return x[value]

    def _condition_rows(self, condition, n: int, device) -> torch.Tensor:
        """x_in [n, D_in] for ``sample``'s condition (see there)."""
        if self.config.condition == "label":
            c = self.config.num_classes
            y = (torch.arange(n, device=device) % c if condition is None
                 else torch.full((n,), int(condition), device=device, dtype=torch.long))
            if condition is not None and not 0 <= int(condition) < c:
                raise ConfigError(f"condition = {condition!r} is not a class 0..{c - 1}")
            return nn.functional.one_hot(y, c).float()
        if condition is None:
            raise ConfigError("a quadrant-conditioned CVAE samples completions of given visible "
                              "quadrants: pass condition = an example x [D] (pyrovae sample "
                              "RUN --condition INDEX, the index of a test image)")
        x = torch.as_tensor(condition, dtype=torch.float32, device=device).reshape(-1)
        if x.shape[0] == self.image_dim and self.input_dim == self.image_dim:
            return self.split(x)[0].expand(n, -1)
        raise ConfigError(f"condition has {x.shape[0]} values; give one example of "
                          f"{self.image_dim}")

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0,
               condition=None) -> torch.Tensor:
        """n images [n, C*H*W] drawn given a condition: z ~ p(z | x_in) at temperature T
        (z = mu + T (z' - mu)), shown as E[x_out | x_in, z] in place of x_out.

        ``condition``: for ``label`` a class (default: classes 0, 1, ..., C-1, 0, ... in
        turn); for ``quadrants`` an example x [D] whose visible quadrants are kept."""
        if not temperature > 0:
            raise ConfigError(f"temperature = {temperature} must be > 0 (1 = the prior itself)")
        device = self.in_index.device
        with seeded(seed) if seed is not None else contextlib.nullcontext():
            x_in = self._condition_rows(condition, n, device)
            p = self.prior(x_in).base_dist
            z = p.loc + temperature * p.scale * torch.randn_like(p.loc)
            return self.image(x_in, self.decode(z, x_in))
