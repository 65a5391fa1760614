"""Priors p(z) over the latent z in R^L.

A prior is a module whose ``forward()`` returns a Pyro distribution with event shape [L] and
batch shape [] (the model's data plate broadcasts it to [B]); being a module lets it own
learnable parameters that the optimizer sees. ``log_prob(z)`` ([..., L] -> [...]) and
``sample(n)`` ([n, L]) are thin wrappers over ``forward()``. ``analytic_kl`` says whether
KL(Normal q || prior) has a closed form (torch's ``kl_divergence``), which the ``meanfield``
objectives need.

    normal            N(0, I)
    learnable-normal  N(mu, diag(sigma^2)), mu and sigma = softplus(.) learned
    mog               sum_k pi_k N(mu_k, diag(sigma_k^2)), K learned components
    vamp              (1/K) sum_k q(z | u_k), K learned pseudo-inputs u_k in [0, 1]^D
                      through the VAE's own encoder (Tomczak & Welling, 2018)
    flow              N(0, I) pushed through learned autoregressive transforms (MAF),
                      in flow_prior.py

The VAE turns every submodule into a PyroModule, whose parameters become ``pyro.param``
statements when read inside a module call. Pyro's JIT objectives need that (they pass the
recorded parameters into the compiled graph; any other parameter fails with "Cannot insert a
Tensor that requires grad as a constant"), and so does Pyro's own ``SVI`` (it optimizes the
recorded parameters). Flow layers may read their parameters outside any module call, in
``log_prob``, so ``FlowPrior.forward`` reads them itself (:meth:`FlowPrior._register_params`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.components.mixture import DiagonalGaussianMixture, diagonal_normal
from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import PRIORS
from pyrovae.runtime.sizes import meta_count
from pyrovae.runtime.settings import setting

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_INV_1) = 1


def _mixture(logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
    """sum_k softmax(logits)_k N(loc_k, diag(scale_k^2)); logits [K], loc and scale [K, L].
    A ``MixtureSameFamily`` whose log-density is a matrix product (mixture.py): no
    [..., K, L] tensor of every component at every z."""
    return DiagonalGaussianMixture(logits, loc, scale)


def register_prior(name: str):
    """Class decorator: register a :class:`Prior` subclass as ``prior = name``, with its
    ``analytic_kl`` and ``uses_encoder`` flags as the registry's capabilities (``analytic_kl``,
    ``encoder``)."""
    def add(cls):
        return PRIORS.register(name, cls, analytic_kl=bool(cls.analytic_kl),
                               encoder=bool(cls.uses_encoder))
    return add


class Prior(nn.Module):
    """Base class: ``forward()`` -> distribution with event shape [L] and batch shape [].

    ``build(config, latent_dim, encoder, input_shape)`` makes one from a PriorConfig; a
    subclass whose constructor takes more than ``latent_dim`` overrides it.
    """

    analytic_kl: bool = False  # whether kl_divergence(Independent(Normal), prior) exists
    uses_encoder: bool = False  # built from the encoder's (loc, scale): a diagonal posterior
    latent_dim: int

    @classmethod
    def build(cls, config, latent_dim: int, encoder: nn.Module, input_shape) -> Prior:
        return cls(latent_dim)

    @classmethod
    def parameter_count(cls, config, latent_dim: int, input_shape, buffers: bool = False) -> int:
        """Its learnable parameters (and buffers), counted on one built on the meta device
        (nothing allocated) with a parameterless stand-in for the encoder: the encoder's
        parameters are the networks'. Exact for any prior built without reading values."""
        return meta_count(lambda: cls.build(config, latent_dim, nn.Identity(), input_shape),
                          buffers)

    def forward(self) -> dist.TorchDistribution:
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): [..., L] -> [...]."""
        return self().log_prob(z)

    def sample(self, n: int) -> torch.Tensor:
        """n draws z ~ p(z) (no gradient): [n, L]."""
        return self().sample((n,))


@register_prior("normal")
class StandardNormalPrior(Prior):
    """p(z) = N(0, I_L)."""

    analytic_kl = True

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale, validate_args=False).to_event(1)


@register_prior("learnable-normal")
class LearnableNormalPrior(Prior):
    """p(z) = N(mu, diag(sigma^2)), mu (init 0) and sigma = softplus(raw_scale) (init 1)
    learned."""

    analytic_kl = True

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.raw_scale = nn.Parameter(torch.full((latent_dim,), _SOFTPLUS_INV_1))

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale)

    def forward(self) -> dist.TorchDistribution:
        return diagonal_normal(self.loc, self.scale)


@dataclass
class MixtureSettings:
    """``[model.prior]`` of mog: K components."""

    components: int = setting(10, "mixture components K", min=1)


@dataclass
class PseudoInputSettings:
    """``[model.prior]`` of vamp: K pseudo-inputs."""

    components: int = setting(10, "pseudo-inputs K", min=1)


@register_prior("mog")
class MixtureOfGaussiansPrior(Prior):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), k = 1..K.

    Learned: the weights pi = softmax(logits) (init uniform), the means mu_k (init N(0, 1)
    draws from torch's generator, so repeatable under the run's seed) and the scales
    sigma_k = softplus(raw_scale_k) (init 1).
    """

    settings = MixtureSettings

    def __init__(self, latent_dim: int, components: int):
        super().__init__()
        self.latent_dim, self.components = latent_dim, components
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scales = nn.Parameter(torch.full((components, latent_dim), _SOFTPLUS_INV_1))

    @classmethod
    def build(cls, config, latent_dim, encoder, input_shape):
        return cls(latent_dim, config.components)

    @property
    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1)

    @property
    def scales(self) -> torch.Tensor:
        return F.softplus(self.raw_scales)

    def forward(self) -> dist.TorchDistribution:
        return _mixture(self.logits, self.locs, self.scales)


@register_prior("vamp")
class VampPrior(Prior):
    """VampPrior (Tomczak & Welling, 2018): p(z) = (1/K) sum_k q(z | u_k).

    q is the VAE's own encoder and u_k in [0, 1]^D are K learned pseudo-inputs, kept in the
    data range as u = sigmoid(pseudo_raw). Default init: u = sigmoid(N(0, 1)) noise (drawn from
    torch's generator); :meth:`init_from_data` sets them from random training rows instead.
    Every evaluation of p(z) runs the encoder on all K pseudo-inputs.

    The encoder is held by reference, not registered as a submodule: its parameters belong to
    the VAE's ``encoder`` (so they are not duplicated in the state dict), and this module's own
    parameters are only the pseudo-inputs.
    """

    CLAMP = (0.02, 0.98)  # data rows are clamped to this before the logit
    uses_encoder = True
    settings = PseudoInputSettings

    def __init__(self, latent_dim: int, components: int, encoder: nn.Module, input_shape):
        super().__init__()
        self.latent_dim, self.components = latent_dim, components
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_dim = math.prod(self.input_shape)
        object.__setattr__(self, "encoder_ref", encoder)  # not a submodule: see the docstring
        self.pseudo_raw = nn.Parameter(torch.randn(components, self.input_dim))
        self.register_buffer("mix_logits", torch.zeros(components), persistent=False)

    @classmethod
    def build(cls, config, latent_dim, encoder, input_shape):
        return cls(latent_dim, config.components, encoder, input_shape)

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        """u = sigmoid(pseudo_raw): [K, D] in (0, 1)."""
        return torch.sigmoid(self.pseudo_raw)

    def forward(self) -> dist.TorchDistribution:
        loc, scale = self.encoder_ref(self.pseudo_inputs)  # [K, L] each
        return _mixture(self.mix_logits, loc, scale)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """Set the pseudo-inputs to K random rows of x [N, D] (or [N, *input_shape]), drawn
        without replacement (with replacement if N < K) with ``generator``, clamped to
        [0.02, 0.98] so their logits are finite. Returns the chosen row indices [K]."""
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.input_dim:
            raise DataError(f"vamp prior: data rows have {x.shape[1]} values, the pseudo-inputs "
                            f"{self.input_dim}")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(f"the vamp prior's pseudo-inputs live in [0, 1] but the data have "
                            f"values in [{lo:g}, {hi:g}]: rescale the data to [0, 1] or use "
                            f"another prior")
        n, k = x.shape[0], self.components
        device = generator.device if generator is not None else torch.device("cpu")
        if n >= k:
            idx = torch.randperm(n, generator=generator, device=device)[:k]
        else:
            idx = torch.randint(n, (k,), generator=generator, device=device)
        u = x[idx.to(x.device)].clamp(*self.CLAMP)
        raw = self.pseudo_raw  # the Parameter itself (and the param store's tensor): edit in place
        raw.copy_(torch.logit(u).to(raw))
        return idx


def make_prior(config, latent_dim: int, encoder: nn.Module, input_shape) -> nn.Module:
    """The prior registered as ``config.name`` (a PriorConfig) over z in R^latent_dim.

    ``encoder`` and ``input_shape`` are for priors built from the encoder (VampPrior).
    """
    return PRIORS.get(config.name).build(config, latent_dim, encoder, input_shape)


def prior_parameters(config, latent_dim: int, input_shape, buffers: bool = False) -> int:
    """Parameters (and buffers) of the prior :func:`make_prior` builds, asked of its class
    (:meth:`Prior.parameter_count`; the encoder's are not the prior's)."""
    return PRIORS.get(config.name).parameter_count(config, latent_dim, input_shape, buffers)
