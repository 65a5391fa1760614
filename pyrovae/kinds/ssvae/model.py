"""The semi-supervised VAE (Kingma et al. 2014, "M2") as a pair of Pyro programs.

For a minibatch x [B, D] out of N points, with labels y [B] (labelled) or none (unlabelled)::

    model(x, y):  for each i in plate("data", N, subsample of size B):
                      y_i ~ Cat(1/C)                 observed if labelled
                      z_i ~ N(0, I)                                          z: [B, L]
                      x_i ~ p(x | decoder(z_i, y_i))  observed                x: [B, D]
    guide(x, y):  for each i in the same plate:
                      y_i ~ q(y|x_i) = Cat(softmax(classifier(x_i)))   only if unlabelled
                      z_i ~ q(z|x_i, y_i) = N(mu(x_i, y_i), diag(sigma(x_i, y_i)^2))

On labelled data an ELBO estimator estimates -L(x, y) = -E_q(z|x,y)[log p(x|y,z) + log p(y)
+ log p(z) - log q(z|x,y)]. On unlabelled data the guide's y site carries
``infer={"enumerate": "parallel" | "sequential"}`` when ``config.elbo = "enum"``, so
TraceEnum_ELBO sums it out exactly:

    U(x) = sum_y q(y|x) [L(x, y)] + H(q(y|x)),

with y on a dimension left of the plate ([C, 1], so z is [C, B, L]; with ``common_noise`` the
classes share z's noise, :class:`CommonNoiseNormal`). With ``elbo = "trace"``
y is sampled instead (Trace_ELBO, score-function gradient for the classifier). The
classification loss -alpha * log q(y|x) on labelled data (:meth:`SSVAE.aux_loss`) is added by
the trainer, as in Kingma et al.'s J^alpha.
"""

from __future__ import annotations

import contextlib
import itertools
import math

import pyro
import pyro.distributions as dist
from pyro import poutine
import torch
from pyro.poutine.runtime import get_plates

from pyrovae.kinds.ssvae.config import SSVAEConfig
from pyrovae.runtime import memory
from pyrovae.runtime.errors import ConfigError
from pyrovae.kinds.base import KindModule
from pyrovae.components.likelihoods import likelihood_size, make_likelihood
from pyrovae.components.nets.mlp import gaussian_head, mlp, mlp_decoder_floats
from pyrovae.components.priors import StandardNormalPrior
from pyrovae.runtime.rng import seeded
from pyrovae.kinds.ssvae.nets import ConditionalMLP, ConvClassifier

_instance_ids = itertools.count()


class CommonNoiseNormal(dist.Normal):
    """N(loc, scale) whose draws z = loc + scale * eps share one noise tensor eps across every
    batch dim that is not a plate: under parallel enumeration the C classes' z [C, ..., B, L]
    share their noise (common random numbers), while each particle of a particle plate and
    each data point keeps a draw of its own. Each z_c is still a draw of q(z|x,c), so every
    per-class term, and the enumerated sum, keeps its expectation; the differences
    L(x,c) - L(x,c') that train the classifier lose the noise of independent draws.

    ``plate_dims``: the dims (negative, of the batch shape *without* z's own last dim) of the
    plates active where the site is sampled (``pyro.poutine.runtime.get_plates()``)."""

    def __init__(self, loc, scale, plate_dims=(-1,), validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)
        self.plate_dims = tuple(plate_dims)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(CommonNoiseNormal, _instance
                                         or CommonNoiseNormal.__new__(CommonNoiseNormal))
        new = super().expand(batch_shape, new)
        new.plate_dims = self.plate_dims
        return new

    def rsample(self, sample_shape=torch.Size()):
        batch = self.batch_shape  # [..., B, L]: the plates' dims, then z's
        keep = {len(batch) - 1} | {len(batch) - 1 + d for d in self.plate_dims
                                   if -d < len(batch)}
        shape = (*sample_shape, *[n if i in keep else 1 for i, n in enumerate(batch)])
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.scale * eps

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)


class SSVAE(KindModule):
    """The M2 model for data of ``input_shape`` ((C, H, W) images or (D,) vectors, seen
    flattened as [B, D]) with ``config.num_classes`` classes."""

    capabilities = ("encoder", "decoder", "prior", "sample", "reconstruct", "labels",
                    "condition")
    condition_names = ("y",)
    max_plate_nesting = 1
    config_class = SSVAEConfig

    def __init__(self, config: SSVAEConfig, input_shape):
        super().__init__(config, input_shape, name=f"ssvae{next(_instance_ids)}")
        d = self.input_dim
        self.num_classes = c = config.num_classes
        self.beta = float(config.kl.beta)
        act, hidden, latent = config.activation, config.hidden, config.latent_dim
        self.likelihood = make_likelihood(config, d)
        if config.classifier_network == "conv":
            if len(self.input_shape) != 3:
                raise ConfigError(f"classifier_network = \"conv\" needs images shaped (channels, "
                                  f"height, width), not vectors of shape {self.input_shape}; "
                                  f"use classifier_network = \"mlp\"")
            self.classifier = ConvClassifier(self.input_shape, config.channels,
                                             config.classifier, c, act)
        else:
            self.classifier = mlp([d, *config.classifier, c], act)
        self.encoder = ConditionalMLP(d, c, hidden, 2 * latent, act)
        self.decoder = ConditionalMLP(latent, c, tuple(reversed(hidden)),
                                      self.likelihood.params_per_pixel * d, act)
        self.register_buffer("prior_logits", torch.full((c,), -math.log(c)))
        self.prior = StandardNormalPrior(latent)  # p(z) = N(0, I)
        self._register_load_state_dict_pre_hook(_rename_old_prior_keys)
        self._y_infer = {"enumerate": config.enumerate} if config.elbo == "enum" else {}

    def _plate(self, x: torch.Tensor, n_data: int | None):
        """The data plate over the B rows of x, scaled by N / B when the data set has N rows."""
        subsample = torch.arange(x.shape[0], device=x.device)
        return pyro.plate("data", size=n_data or x.shape[0], subsample=subsample, dim=-1)

    def _kl_scale(self):
        """beta on both z sites (``model.kl.beta``): the bound's KL(q(z|x,y) || p(z)) becomes
        beta * KL; 1 (the default) is M2's ELBO and adds no handler."""
        return contextlib.nullcontext() if self.beta == 1.0 else poutine.scale(scale=self.beta)

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None,
              n_data: int | None = None) -> torch.Tensor:
        """p(y) p(z) p(x|y,z), x [B, D] observed, y [B] observed when given. Returns the
        decoder output [..., B, K*D]."""
        with self._plate(x, n_data):
            y = pyro.sample("y", dist.Categorical(logits=self.prior_logits), obs=y)
            with self._kl_scale():
                z = pyro.sample("z", self.prior())
            out = self.decoder(z, y)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None,
              n_data: int | None = None) -> torch.Tensor:
        """q(y|x) (unless y [B] is given) and q(z|x,y); x [B, D]. Returns z [..., B, L]."""
        with self._plate(x, n_data):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)),
                                infer=dict(self._y_infer))
            loc, scale = gaussian_head(self.encoder(x, y))
            if self.config.common_noise:
                q_z = CommonNoiseNormal(loc, scale, [f.dim for f in get_plates()
                                                     if f.dim is not None], validate_args=False)
            else:
                q_z = dist.Normal(loc, scale, validate_args=False)
            with self._kl_scale():
                return pyro.sample("z", q_z.to_event(1))

    def aux_loss(self, x: torch.Tensor, y: torch.Tensor, n_data: int | None = None):
        """-(N / B) sum_i log q(y_i|x_i) for labelled x [B, D], y [B]: the classification loss
        (the trainer multiplies it by alpha); a 0-d tensor."""
        log_q = dist.Categorical(logits=self.classifier(x)).log_prob(y)
        return -log_q.sum() * ((n_data or x.shape[0]) / x.shape[0])

    # ---- deterministic helpers for using a trained model (no Pyro effects) -------------------

    @torch.no_grad()
    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x): x [B, D] -> probabilities [B, C]."""
        return torch.softmax(self.classifier(x.reshape(x.shape[0], -1)), dim=-1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y|x): x [B, D] -> [B] int64."""
        return self.classifier(x.reshape(x.shape[0], -1)).argmax(-1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Mean and standard deviation of q(z|x,y), y = the classifier's guess unless given:
        x [B, D] -> ([B, L], [B, L])."""
        x = x.reshape(x.shape[0], -1)
        return gaussian_head(self.encoder(x, self.classify(x) if y is None else y))

    @torch.no_grad()
    def condition(self, x: torch.Tensor) -> dict:
        """What :meth:`decode` needs beside z for the rows of x [B, D]: the most probable
        class {"y": [B]}."""
        return {"y": self.classify(x)}

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|y,z): z [..., L], y [...] (broadcastable) -> E[x|y,z] [..., D]."""
        return self.likelihood.mean(self.decoder(z, y))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | y = argmax q(y|x), z = mean of q(z|x,y)]: x [B, D] -> [B, D]."""
        x = x.reshape(x.shape[0], -1)
        y = self.classify(x)
        return self.decode(self.encode(x, y)[0], y)

    def particle_bytes(self, batch: int) -> int:
        """Memory of one importance draw per point for B points, y summed out over C classes:
        the estimate the memory checks use (:meth:`point_floats`, classes included)."""
        return memory.FLOAT * self.point_floats(self.config, self.input_shape) * batch

    @classmethod
    def point_floats(cls, config, input_shape):
        """C (L + 2 sum(hidden) + K D + 2 D): per class (enumeration sums over the C classes)
        z, the decoder's hidden layers before and after their activation, its K D outputs
        and the likelihood's temporaries."""
        d = math.prod(int(s) for s in input_shape)
        ppp = likelihood_size(config, d)[0]
        floats = config.latent_dim + mlp_decoder_floats(config.hidden, d, ppp) + 2 * d
        return floats * config.num_classes

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Decoder means of n draws y ~ p(y), z ~ N(0, T^2 I) (repeatable for a ``seed``): [n, D]."""
        if not temperature > 0:
            raise ConfigError(f"temperature = {temperature} must be > 0 (1 = the prior itself)")
        with seeded(seed) if seed is not None else contextlib.nullcontext():
            y = dist.Categorical(logits=self.prior_logits).sample((n,))
            z = temperature * torch.randn(n, self.config.latent_dim, device=y.device)
        return self.decode(z, y)


def _rename_old_prior_keys(state_dict, prefix, *args):
    """Checkpoints of pyrovae 0.1 kept p(z)'s parameters as ``z_loc``/``z_scale``."""
    for old, new in (("z_loc", "prior.loc"), ("z_scale", "prior.scale")):
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
