"""Inverse autoregressive flow q(z|x) (Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling
2016): a diagonal Gaussian pushed through T amortized autoregressive steps that read a context
vector c(x) from the encoder.

    encoder x -> h [B, 2L + C] = [mu | raw sigma | c]      (C = model.posterior.context)
    z_0 = mu + sigma * eps,  eps ~ N(0, I),  sigma = softplus(raw) + 1e-4
    step t = 1..T:  (m_t, s_t) = MADE_t(z_{t-1}, c)        m_t,i and s_t,i see z_{t-1,<i} only
                    g_t = sigmoid(s_t + 2)                 (gate, starts near 0.88)
                    z_t = g_t * z_{t-1} + (1 - g_t) * m_t  (Kingma et al.'s Eq. 14)
    z = z_T
    log q(z|x) = sum_i [log N(eps_i; 0, 1) - log sigma_i] - sum_t sum_i log g_t,i

Each step's Jacobian dz_t/dz_{t-1} is triangular (in the step's variable order) with diagonal
g_t, so the log-determinant is sum_i log g_t,i; consecutive steps reverse the order. Sampling
and the density of a sampled z take one network pass per step. The density of any other z
(Pyro's TransformedDistribution.log_prob at a value it did not just draw: a replayed,
detached or copied value, as the STL/DReG estimators score) inverts each step, L passes per
step: exact, slower. The steps are Pyro's AffineAutoregressive(stable=True) on
ConditionalAutoRegressiveNN (MADE) networks with ``flow_hidden`` hidden layers (default two of
max(32, 4L) units); they are submodules of this module, so the VAE trains, checkpoints and
resumes them. The context of the steps is the encoder's, so the flow is amortized.

No closed-form KL: use elbo = "trace" (Monte Carlo KL) or a bound from [model.objective].
``moments`` (used by ``VAE.encode``: reconstructions, latent maps, diagnostics) is a Monte Carlo
estimate from ``MOMENT_DRAWS`` draws per point with a fixed seed (repeatable, the caller's random
stream untouched): E_q[z|x] and the marginal std, to about std/16 and std/23.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from pyrovae.runtime.errors import ConfigError
from pyrovae.components.nets.mlp import gaussian_head
from pyrovae.runtime.rng import seeded
from pyrovae.runtime.sizes import made_count
from pyrovae.components.posteriors.base import Posterior, register_posterior
from pyrovae.runtime.settings import setting


@dataclass
class IAFSettings:
    """``[model.posterior]`` of iaf: T steps, the context size C, each step's MADE layers."""

    flows: int = setting(2, "iaf: autoregressive steps T", min=1)
    context: int = setting(32, "iaf: size C of the context vector the encoder gives the steps",
                           min=1)
    flow_hidden: tuple[int, ...] = setting((), "iaf: hidden layers of each step's MADE network, "
                                           "each >= latent_dim ([] = two of max(32, 4 * "
                                           "latent_dim))", min=1)

MOMENT_DRAWS = 256      # draws per point behind ``moments``
MOMENT_CHUNK = 64       # draws at once (memory: chunk x B x hidden floats)
SIGMOID_BIAS = 2.0      # the gates start near sigmoid(2) = 0.88: close to the identity


def default_hidden(latent_dim: int) -> tuple[int, int]:
    """The MADE networks' hidden layers when ``flow_hidden = []``: two of max(32, 4L)."""
    return (max(32, 4 * latent_dim),) * 2


class _Conditioned:
    """A MADE network with its context bound: what AffineAutoregressive calls as its ``arn``
    (``arn(z) -> (m, s)``, and the variable order ``permutation`` for the inverse)."""

    def __init__(self, made: nn.Module, context: torch.Tensor):
        self.made, self.context = made, context

    @property
    def permutation(self) -> torch.Tensor:
        return self.made.permutation

    def __call__(self, z: torch.Tensor):
        return self.made(z, context=self.context)


@register_posterior("iaf")
class IAFPosterior(Posterior):
    """An amortized IAF guide (module docstring)."""

    settings = IAFSettings

    def __init__(self, latent_dim: int, flows: int, context: int, hidden=()):
        super().__init__(latent_dim)
        self.context, self.hidden = context, tuple(hidden) or default_hidden(latent_dim)
        made = []
        for t in range(flows):
            order = torch.arange(latent_dim)
            with warnings.catch_warnings():  # L = 1: Pyro suggests an affine map; the
                warnings.simplefilter("ignore")  # context still conditions the step
                made.append(ConditionalAutoRegressiveNN(
                    latent_dim, context, list(self.hidden),
                    permutation=order if t % 2 == 0 else order.flip(0), nonlinearity=nn.ELU()))
        self.made = nn.ModuleList(made)

    @classmethod
    def build(cls, config, latent_dim):
        return cls(latent_dim, config.flows, config.context, config.flow_hidden)

    @classmethod
    def check(cls, config, latent_dim):
        if any(h < latent_dim for h in config.flow_hidden):
            raise ConfigError(f"model.posterior.flow_hidden = {list(config.flow_hidden)} has a "
                              f"layer narrower than latent_dim = {latent_dim}; an autoregressive "
                              f"network needs >= {latent_dim} units per layer ([] = the default)")

    @classmethod
    def outputs(cls, config, latent_dim):
        return 2 * latent_dim + config.context

    @classmethod
    def parameter_count(cls, config, latent_dim, buffers=False):
        """By formula (Pyro's MADE reads values when built, so not on the meta device): T
        MADEs [L + C, *flow_hidden, 2L], with their masks and permutations as buffers."""
        sizes = [latent_dim + config.context, *(tuple(config.flow_hidden)
                                               or default_hidden(latent_dim)), 2 * latent_dim]
        return config.flows * made_count(sizes, latent_dim, buffers)

    def particle_floats(self) -> int:
        dim = self.latent_dim
        return len(self.made) * (dim + self.context + 2 * sum(self.hidden) + 6 * dim)

    def split(self, h: torch.Tensor):
        """(mu [B, L], sigma [B, L], c [B, C]) from the encoder output h [B, 2L + C]."""
        dim = self.latent_dim
        loc, scale = gaussian_head(h[..., :2 * dim])
        return loc, scale, h[..., 2 * dim:]

    def transforms(self, context: torch.Tensor) -> list:
        """The T steps conditioned on c [B, C]: new transform objects (with their own
        one-value caches) at every call."""
        return [T.AffineAutoregressive(_Conditioned(made, context), stable=True,
                                       sigmoid_bias=SIGMOID_BIAS) for made in self.made]

    def forward(self, h):
        loc, scale, context = self.split(h)
        base = dist.Normal(loc, scale, validate_args=False).to_event(1)
        return dist.TransformedDistribution(base, self.transforms(context), validate_args=False)

    def moments(self, h):
        q = self(h)
        with torch.no_grad(), seeded(0):
            draws = torch.cat([q.sample((min(MOMENT_CHUNK, MOMENT_DRAWS - done),))
                               for done in range(0, MOMENT_DRAWS, MOMENT_CHUNK)])
        return draws.mean(0), draws.std(0)
