"""The hierarchical VAE (Burda et al. 2015, "two stochastic layers") as two Pyro programs.

With L stochastic layers z_1 (next to x) ... z_L (top), for a minibatch x [B, D] of N points::

    model(x):  for each i in plate("data", N, subsample of size B):
                   z_L ~ N(0, I)                                         scaled by w_L beta
                   z_l ~ N(mu_l(z_l+1), diag s_l(z_l+1)^2), l = L-1..1    scaled by w_l beta
                   x   ~ p(x | net_0(z_1))   observed
    guide(x):  for each i in the same plate:
                   z_1 ~ N(m_1(x), diag r_1(x)^2)                         scaled by w_1 beta
                   z_l ~ N(m_l(z_l-1), diag r_l(z_l-1)^2), l = 2..L       scaled by w_l beta

Each conditional is a diagonal Gaussian from its own MLP (loc, and scale = softplus + 1e-4):
q(z_l | z_l-1) is ``size(z_l-1) -> hidden[l-1] -> 2 size(z_l)`` (z_0 = x), and p(z_l-1 | z_l)
mirrors it, ``size(z_l) -> reversed(hidden[l-1]) -> 2 size(z_l-1)`` (for l = 1: the K D
parameters of the likelihood). w_l is ``kl_weights[l-1]``, beta the model-wide KL weight
(``[model.kl]``, or a schedule's beta_t passed as ``model(x, beta)``): ``poutine.scale`` on the
site z_l in both programs multiplies layer l's KL term by w_l beta.

The KL terms under ``elbo = "meanfield"`` (Pyro's TraceMeanField_ELBO): the top layer's
E_q[log q(z_L|z_L-1) - log p(z_L)] is the closed-form KL(q(z_L|z_L-1) || N(0, I)) at the
drawn z_L-1, but a lower layer's prior p(z_l | z_l+1) depends on z_l+1, which the guide draws
*after* z_l and from it, so KL(q(z_l|.) || p(z_l|z_l+1)) at the drawn z_l+1 is not the ELBO's
term. Those priors are :class:`ConditionalNormal`, against which ``kl_divergence`` raises
``NotImplementedError``: Pyro's estimator (and the free-bits objective) then use the Monte
Carlo term log q(z_l|.) - log p(z_l|z_l+1) for them, so every objective estimates the ELBO.
"""

from __future__ import annotations

import contextlib
import itertools

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.distributions import register_kl

from pyrovae.runtime.errors import ConfigError
from pyrovae.kinds.base import KindModule
from pyrovae.components.likelihoods import make_likelihood
from pyrovae.components.nets.mlp import gaussian_head, mlp
from pyrovae.runtime.rng import seeded
from pyrovae.kinds.hvae.config import HVAEConfig, site_names

_instance_ids = itertools.count()
MIN_KL_WEIGHT = 1e-20  # poutine.scale refuses 0 (as the VAE: beta = 0 applied as 1e-20)


class ConditionalNormal(dist.Normal):
    """A diagonal Gaussian prior p(z_l | z_l+1) of a layer below the top: a Normal, except
    that no closed-form KL against it is the ELBO's term (the guide draws its parent z_l+1
    after z_l), so ``kl_divergence(q, p)`` raises NotImplementedError and the objectives take
    the Monte Carlo term instead (module docstring)."""


@register_kl(torch.distributions.Normal, ConditionalNormal)
def _kl_normal_conditional(q, p):
    raise NotImplementedError("the prior of a lower layer depends on a latent the guide draws "
                              "later: no closed-form KL term")


class HVAE(KindModule):
    """A VAE with ``len(config.stochastic)`` stochastic layers for data of ``input_shape``
    ((C, H, W) images or (D,) vectors, seen flattened as [B, D]).

    ``encoder[l]`` is q(z_l+1 | z_l) (z_0 = x); ``decoder[0]`` gives the likelihood's
    parameters from z_1 and ``decoder[l]`` (l >= 1) is p(z_l | z_l+1). ``latent_layers`` names
    the sites bottom to top, which asks ``pyrovae evaluate`` for per-layer diagnostics.
    """

    capabilities = ("sample", "reconstruct", "hierarchy")
    max_plate_nesting = 1
    config_class = HVAEConfig

    def __init__(self, config: HVAEConfig, input_shape):
        super().__init__(config, input_shape, name=f"hvae{next(_instance_ids)}")
        d = self.input_dim
        self.beta = float(config.kl.beta)
        self.latent_layers = site_names(config.layers)
        self.sizes = (d, *config.stochastic)              # z_0 = x, z_1, ..., z_L
        self.weights = tuple(float(w) for w in config.weights)
        act, hidden = config.activation, config.hidden
        self.likelihood = make_likelihood(config, d)
        self.encoder = nn.ModuleList(
            mlp([self.sizes[l], *hidden[l], 2 * self.sizes[l + 1]], act, config.init)
            for l in range(config.layers))
        out = [self.likelihood.params_per_pixel * d] + [2 * s for s in self.sizes[1:-1]]
        self.decoder = nn.ModuleList(
            mlp([self.sizes[l + 1], *reversed(hidden[l]), out[l]], act, config.init)
            for l in range(config.layers))
        to_pyro_module_(self)  # route submodule parameters through pyro.param (for JIT ELBOs)

    def _plate(self, x: torch.Tensor, n_data: int | None):
        """The data plate over the B rows of x, scaled by N / B when the data set has N rows."""
        b = x.shape[0]
        return pyro.plate("data", size=n_data or b, subsample=torch.arange(b, device=x.device),
                          dim=-1)

    def _scale(self, layer: int, beta):
        """poutine.scale of layer ``layer`` (0-based): kl_weights[layer] * beta."""
        w = self.weights[layer]
        if beta is None:
            return poutine.scale(scale=max(w * self.beta, MIN_KL_WEIGHT))
        return poutine.scale(scale=(w * beta).clamp(min=MIN_KL_WEIGHT))

    def model(self, x: torch.Tensor, beta: torch.Tensor | None = None,
              n_data: int | None = None) -> torch.Tensor:
        """p(z_L) prod_l p(z_l|z_l+1) p(x|z_1) with x [B, D] observed; returns the likelihood's
        parameters [..., B, K*D]. ``beta`` (a 0-d tensor) overrides ``self.beta`` for a step."""
        top = len(self.latent_layers) - 1
        with self._plate(x, n_data):
            with self._scale(top, beta):
                z = pyro.sample(self.latent_layers[top],
                                dist.Normal(x.new_zeros(self.sizes[-1]), 1.0).to_event(1))
            for layer in range(top - 1, -1, -1):
                loc, scale = gaussian_head(self.decoder[layer + 1](z))
                with self._scale(layer, beta):
                    z = pyro.sample(self.latent_layers[layer],
                                    ConditionalNormal(loc, scale, validate_args=False).to_event(1))
            out = self.decoder[0](z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    def guide(self, x: torch.Tensor, beta: torch.Tensor | None = None,
              n_data: int | None = None) -> list[torch.Tensor]:
        """q(z_1|x) prod_l q(z_l|z_l-1); x [B, D]. Returns [z_1, ..., z_L]."""
        zs, h = [], x
        with self._plate(x, n_data):
            for layer, name in enumerate(self.latent_layers):
                loc, scale = gaussian_head(self.encoder[layer](h))
                with self._scale(layer, beta):
                    h = pyro.sample(name, dist.Normal(loc, scale, validate_args=False).to_event(1))
                zs.append(h)
        return zs

    def particle_bytes(self, batch: int) -> int:
        """Memory of one importance draw per point for a batch of B points (float32, every
        network's layers, with room for temporaries)."""
        hidden = sum(sum(h) for h in self.config.hidden)
        width = (self.input_dim * self.likelihood.params_per_pixel + 2 * hidden
                 + 6 * sum(self.sizes[1:]))
        return 4 * batch * width * 3

    # ---- deterministic helpers for using a trained model (no Pyro effects) -------------------

    @torch.no_grad()
    def encode_layer(self, layer: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z_layer+1 | z_layer) at h (z_0 = x [B, D])."""
        return gaussian_head(self.encoder[layer](h))

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        """(L_1, ..., L_L): the sizes of z_1 (next to x) .. z_L (the top)."""
        return tuple(self.sizes[1:])

    @torch.no_grad()
    def prior_layer(self, layer: int, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of p(z_layer | z_layer+1 = z), 1 <= layer < L: z [B, L_layer+1] ->
        [B, L_layer] each."""
        return gaussian_head(self.decoder[layer](z))

    @torch.no_grad()
    def decode_layer0(self, z1: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters of p(x | z_1): z_1 [B, L_1] -> [B, K*D]."""
        return self.decoder[0](z1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z_1 = E_q[z_1|x]]: x [B, D] -> [B, D]."""
        loc, _ = self.encode_layer(0, x.reshape(x.shape[0], -1))
        return self.likelihood.mean(self.decoder[0](loc))

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Decoder means E[x|z_1] of n ancestral draws z_L ~ N(0, I), z_l ~ p(z_l|z_l+1):
        [n, D]. ``temperature`` T scales every layer's draw about its mean (T = 1: the model)."""
        if not temperature > 0:
            raise ConfigError(f"temperature = {temperature} must be > 0 (1 = the model itself)")
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        with seeded(seed) if seed is not None else contextlib.nullcontext():
            z = temperature * torch.randn(n, self.sizes[-1], device=device, dtype=dtype)
            for layer in range(len(self.latent_layers) - 2, -1, -1):
                loc, scale = gaussian_head(self.decoder[layer + 1](z))
                z = loc + temperature * scale * torch.randn_like(loc)
        return self.likelihood.mean(self.decoder[0](z))
