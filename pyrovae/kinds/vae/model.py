"""The VAE as a pair of Pyro programs: ``model`` p(x, z) and ``guide`` q(z|x).

For a minibatch x of B data points (flattened to [B, D]) out of a data set of N::

    model(x):  for each i in plate("data", N, subsample of size B):
                   z_i ~ p(z)                     scaled by beta      z: [B, L]
                   x_i ~ p(x | decoder(z_i))      observed            x: [B, D]
    guide(x):  for each i in the same plate:
                   z_i ~ q(z|x_i)                 scaled by beta      z: [B, L]

q(z|x) is the family ``[model.posterior]`` names (pyrovae/posteriors): by default the diagonal
Gaussian N(mu(x), diag(sigma(x)^2)); also full covariance, low rank plus diagonal, and an
inverse autoregressive flow. The encoder gives the family its parameters.

The plate scales every log-density by N / B, so an ELBO estimator run on the minibatch is an
unbiased estimate of the full-data objective

    sum_i  E_q[log p(x_i|z)] - beta * KL(q(z|x_i) || p(z)),

i.e. N times the per-point ELBO that pyrovae reports. beta multiplies the latent site ``z`` in
both programs (``poutine.scale``), so Trace_ELBO's Monte Carlo term beta*(log p(z) - log q(z))
and TraceMeanField_ELBO's analytic -beta*KL are both exactly beta times the KL term.
"""

from __future__ import annotations

import itertools
import math

import pyro
import torch
from pyro import poutine
from pyro.nn.module import to_pyro_module_

from pyrovae.kinds.vae.config import VAEConfig
from pyrovae.kinds.base import KindModule
from pyrovae.components.likelihoods import likelihood_size, make_likelihood
from pyrovae.components.nets import (activation_floats, make_decoder, make_encoder,
                                     network_parameters)
from pyrovae.components.posteriors import posterior_class
from pyrovae.components.priors import make_prior, prior_parameters
from pyrovae.runtime.registry import MODEL_KINDS, NETWORKS
from pyrovae.runtime.interface import tempered_sample
from pyrovae.runtime.rng import seeded

_instance_ids = itertools.count()
MIN_KL_WEIGHT = 1e-20


class VAE(KindModule):
    """A variational autoencoder built from a :class:`VAEConfig` for data of ``input_shape``.

    ``input_shape`` is (C, H, W) for images or (D,) for vectors; the model always sees x
    flattened to [B, D] with D = prod(input_shape). Parameters live in this module (and, as
    Pyro requires for its JIT objectives, in Pyro's param store under a name unique to this
    instance, so several VAEs can coexist in one process).
    """

    capabilities = ("encoder", "decoder", "prior", "sample", "reconstruct")
    max_plate_nesting = 1
    config_class = VAEConfig

    def __init__(self, config: VAEConfig, input_shape):
        super().__init__(config, input_shape, name=f"vae{next(_instance_ids)}")
        self.beta = float(config.kl.beta)
        self.likelihood = make_likelihood(config, self.input_dim)
        family = posterior_class(config.posterior)
        outputs = None if family.gaussian_head else family.outputs(config.posterior,
                                                                   config.latent_dim)
        self.encoder = make_encoder(config, self.input_shape, outputs)
        self.decoder = make_decoder(config, self.input_shape, self.likelihood.params_per_pixel)
        self.prior = make_prior(config.prior, config.latent_dim, self.encoder, self.input_shape)
        # built last: the diagonal family holds nothing, so the default's draws are unchanged
        self.posterior = family.build(config.posterior, config.latent_dim)
        to_pyro_module_(self)  # route submodule parameters through pyro.param (for JIT ELBOs)

    def _plate(self, x: torch.Tensor, n_data: int | None):
        """The data plate over the B rows of x, scaled by N / B when the data set has N rows."""
        b = x.shape[0]
        subsample = torch.arange(b, device=x.device)
        return pyro.plate("data", size=n_data or b, subsample=subsample, dim=-1)

    def _kl_weight(self, beta):
        """beta for poutine.scale, which refuses 0: beta = 0 (a warm-up's first step, or a
        plain autoencoder) is applied as 1e-20, a KL term far below float32 resolution."""
        if beta is None:
            return max(self.beta, MIN_KL_WEIGHT)
        return beta.clamp(min=MIN_KL_WEIGHT)

    def model(self, x: torch.Tensor, beta: torch.Tensor | None = None,
              n_data: int | None = None) -> torch.Tensor:
        """p(z) p(x|z) with x observed; x: [B, D]. Returns the decoder output [B, K*D].

        ``beta`` (a 0-d tensor, so compiled objectives take it as an input) overrides
        ``self.beta`` for a step, as a KL schedule does.
        """
        with self._plate(x, n_data):
            with poutine.scale(scale=self._kl_weight(beta)):
                z = pyro.sample("z", self.prior())
            out = self.decoder(z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    def guide(self, x: torch.Tensor, beta: torch.Tensor | None = None,
              n_data: int | None = None) -> torch.Tensor:
        """q(z|x) of the posterior family from the encoder's output; x: [B, D]. Returns z:
        [B, L]. (Diagonal: N(mu(x), diag(sigma(x)^2)).)"""
        with self._plate(x, n_data):
            q = self.posterior(self.encoder(x))
            with poutine.scale(scale=self._kl_weight(beta)):
                return pyro.sample("z", q)

    def particle_bytes(self, batch: int) -> int:
        """Memory of one importance draw per point for a batch of B points (float32, the
        decoder's output and hidden layers, with room for temporaries)."""
        width = (self.input_dim * self.likelihood.params_per_pixel + sum(self.config.hidden)
                 + 4 * self.config.latent_dim + self.posterior.particle_floats())
        return 4 * batch * width * 3

    # ---- sizes, before building (the memory checks ask them through MODEL_KINDS) ------------

    @classmethod
    def parameter_count(cls, config, input_shape, buffers=False):
        """The sum of what each part says of itself: the networks, the likelihood, the prior
        and the posterior family (meta-device builds, or a formula where a part reads values
        when built: the flows' MADEs); equal to the built model's."""
        shape = tuple(int(s) for s in input_shape)
        latent = config.latent_dim
        ppp, own = likelihood_size(config, math.prod(shape), buffers)
        family = posterior_class(config.posterior)
        outputs = None if family.gaussian_head else family.outputs(config.posterior, latent)
        return (own + network_parameters(config, shape, outputs, ppp, buffers)
                + prior_parameters(config.prior, latent, shape, buffers)
                + family.parameter_count(config.posterior, latent, buffers))

    @classmethod
    def point_floats(cls, config, input_shape):
        """L (z) + the decoder's activations (its architecture's ``activation_floats``: hidden
        layers before and after their activation, K D outputs) + 2 D (the likelihood's
        temporaries); None for an architecture that does not say."""
        shape = tuple(int(s) for s in input_shape)
        d = math.prod(shape)
        decoder = activation_floats(config, shape, likelihood_size(config, d)[0])
        return None if decoder is None else config.latent_dim + decoder + 2 * d

    @classmethod
    def size_fields(cls, config):
        return ("latent_dim", *getattr(NETWORKS.get(config.network), "size_fields", ()))

    # ---- deterministic helpers for using a trained model (no Pyro effects) -------------------

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and marginal standard deviation of q(z|x): x [B, D] -> ([B, L],
        [B, L]). Exact for the Gaussian families; the ``iaf`` family's are Monte Carlo
        estimates from 256 draws with a fixed seed (posteriors/iaf.py)."""
        return self.posterior.moments(self.encoder(x.reshape(x.shape[0], -1)))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z): z [..., L] -> E[x|z] [..., D]."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = posterior mean of q(z|x)]: x [B, D] -> [B, D]."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Decoder means E[x|z] of n draws z ~ p(z) (repeatable when ``seed`` is given): [n, D].

        ``temperature`` T scales each draw's spread about its Gaussian's mean (see
        :func:`tempered_sample`); T = 1 is the prior itself.
        """
        if seed is None:
            return self.decode(tempered_sample(self.prior(), n, temperature))
        with seeded(seed):
            return self.decode(tempered_sample(self.prior(), n, temperature))


MODEL_KINDS.register("vae", VAE, config=VAEConfig, beta=True, compile=True, latents="reparameterised",
                     decompositions=True)  # model.kl.decomposition (objectives/decompositions.py)
