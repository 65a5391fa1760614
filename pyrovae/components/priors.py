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
    flow              N(0, I) pushed through learned autoregressive transforms (MAF)

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
from functools import partial

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms.spline import ConditionedSpline
from pyro.nn import AutoRegressiveNN
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import PRIORS
from pyrovae.runtime.sizes import made_count, meta_count
from pyrovae.runtime.settings import setting

FLOWS = ("spline", "affine")  # the flow prior's transforms

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_INV_1) = 1


def _diag_normal(loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
    """Independent(Normal(loc, scale), 1): a diagonal Gaussian over the last dimension."""
    return dist.Independent(dist.Normal(loc, scale, validate_args=False), 1, validate_args=False)


def _mixture(logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
    """sum_k softmax(logits)_k N(loc_k, diag(scale_k^2)); logits [K], loc and scale [K, L]."""
    return dist.MixtureSameFamily(dist.Categorical(logits=logits, validate_args=False),
                                  _diag_normal(loc, scale), validate_args=False)


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
        return _diag_normal(self.loc, self.scale)


@dataclass
class MixtureSettings:
    """``[model.prior]`` of mog: K components."""

    components: int = setting(10, "mixture components K", min=1)


@dataclass
class PseudoInputSettings:
    """``[model.prior]`` of vamp: K pseudo-inputs."""

    components: int = setting(10, "pseudo-inputs K", min=1)


@dataclass
class FlowSettings:
    """``[model.prior]`` of flow: its transforms."""

    flow_layers: int = setting(4, "transforms of the flow prior", min=1)
    flow_type: str = setting("spline", "transform of the flow prior", choices=FLOWS)


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


class _ElementwiseAffine(TransformModule):
    """y = loc + exp(log_scale) * x elementwise: the learnable 1-D affine flow layer (an
    autoregressive network has nothing to condition on when L = 1)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = +1

    def __init__(self, dim: int):
        super().__init__(cache_size=1)
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def _call(self, x):
        return self.loc + self.log_scale.exp() * x

    def _inverse(self, y):
        return (y - self.loc) * torch.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x, y):
        return self.log_scale.sum(-1).expand(x.shape[:-1])


class _TraceableSpline:
    """Mixin for Pyro's rational-quadratic splines (identity outside [-bound, bound]) that
    keeps them usable under ``torch.jit.trace``.

    Pyro applies the identity with boolean-mask assignment (``outputs[outside] = ...``), whose
    size depends on the data: a traced objective bakes in the number of values outside the
    box at tracing time and fails ("shape '[]' is invalid for input of size 0") as soon as
    another batch has a different number. Here Pyro's spline sees the inputs clamped into the
    box (so its mask is always empty) and the identity is applied with ``torch.where``.
    """

    def spline_op(self, x, **kwargs):
        inside = (x > -self.bound) & (x < self.bound)
        y, log_det = super().spline_op(x.clamp(-self.bound, self.bound), **kwargs)
        return torch.where(inside, y, x), torch.where(inside, log_det, torch.zeros_like(log_det))


class _ConditionedSpline(_TraceableSpline, ConditionedSpline):
    pass


class _Spline(_TraceableSpline, T.Spline):
    """Pyro's elementwise learnable Spline, traceable (the L = 1 flow layer)."""


class _ConditionalSpline:
    """Pyro's ConditionalSpline held as a plain object (not a submodule): its metaclass
    (ABCMeta) cannot be mixed with PyroModule's, so the VAE's ``to_pyro_module_`` would fail on
    it. It owns no parameters (its network is the transform's ``arn``, registered there), and
    ``condition`` returns the traceable spline."""

    def __init__(self, spline):
        self.spline = spline

    def condition(self, context):
        s = self.spline
        return _ConditionedSpline(partial(s._params, context), bound=s.bound, order=s.order)


class _SplineAutoregressive(T.SplineAutoregressive):
    """Pyro's SplineAutoregressive, convertible to a PyroModule and traceable (see
    :class:`_ConditionalSpline` and :class:`_TraceableSpline`)."""

    def __init__(self, input_dim: int, autoregressive_nn: nn.Module, **kwargs):
        super().__init__(input_dim, autoregressive_nn, **kwargs)
        object.__setattr__(self, "spline", _ConditionalSpline(self._modules.pop("spline")))


@register_prior("flow")
class FlowPrior(Prior):
    """p(z): base N(0, I) pushed through a learned normalizing flow (a MAF).

    ``layers`` learned transforms T_1..T_n of type ``flow_type`` map z to the base variable,
    eps = T_n(...T_1(z)), each in one network pass, so

        log p(z) = log N(eps; 0, I) + sum_i log |det dT_i/dx|     (one pass per layer)

    and sampling inverts them (z = T_1^{-1}(...T_n^{-1}(eps)), L sequential passes per layer).

    - ``spline``: Pyro's SplineAutoregressive (monotone rational-quadratic splines, 8 bins on
      [-3, 3], identity outside), conditioned by a MADE network;
    - ``affine``: Pyro's AffineAutoregressive (x_i * exp(s_i(x_<i)) + m_i(x_<i)).

    The MADE networks have two hidden layers of max(32, 4L) units, and consecutive layers
    reverse the autoregressive order. With L = 1 there is nothing to condition on, so the
    layers are elementwise: a learned monotone spline (Pyro's Spline) or a learned affine map.
    """

    COUNT_BINS, BOUND = 8, 3.0
    settings = FlowSettings

    def __init__(self, latent_dim: int, layers: int, flow_type: str = "spline"):
        super().__init__()
        if flow_type not in ("spline", "affine"):
            raise ValueError(f"unknown flow_type {flow_type!r} (valid: spline, affine)")
        self.latent_dim, self.flow_type = latent_dim, flow_type
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        self.transforms = nn.ModuleList(self._layer(i) for i in range(layers))

    @classmethod
    def build(cls, config, latent_dim, encoder, input_shape):
        return cls(latent_dim, config.flow_layers, config.flow_type)

    @classmethod
    def parameter_count(cls, config, latent_dim, input_shape, buffers=False):
        """By formula (Pyro's MADE reads values when built, so not on the meta device): per
        layer a MADE [L, h, h, P L], h = max(32, 4L), P = 3K - 1 + K = 31 (spline; K = 8 bins)
        or 2 (affine); for L = 1 an elementwise spline (31) or affine map (2); buffers: the
        masks and permutations, and the base's loc and scale (2L)."""
        k = cls.COUNT_BINS
        per = 4 * k - 1 if config.flow_type == "spline" else 2
        if latent_dim == 1:
            layer = per
        else:
            h = max(32, 4 * latent_dim)
            layer = made_count([latent_dim, h, h, per * latent_dim], latent_dim, buffers)
        return config.flow_layers * layer + (2 * latent_dim if buffers else 0)

    def _layer(self, i: int) -> TransformModule:
        dim = self.latent_dim
        if dim == 1:
            if self.flow_type == "spline":
                return _Spline(1, count_bins=self.COUNT_BINS, bound=self.BOUND)
            return _ElementwiseAffine(1)
        hidden = [max(32, 4 * dim)] * 2
        order = torch.arange(dim) if i % 2 == 0 else torch.arange(dim - 1, -1, -1)
        if self.flow_type == "spline":
            k = self.COUNT_BINS
            arn = AutoRegressiveNN(dim, hidden, param_dims=[k, k, k - 1, k], permutation=order,
                                   nonlinearity=nn.ReLU())
            return _SplineAutoregressive(dim, arn, count_bins=k, bound=self.BOUND)
        arn = AutoRegressiveNN(dim, hidden, permutation=order, nonlinearity=nn.ReLU())
        return T.AffineAutoregressive(arn)

    def _register_params(self) -> None:
        """Read every transform parameter through its module's attribute, inside this call.

        Once the VAE has made the transforms PyroModules, such a read is a ``pyro.param``
        statement (for plain modules it does nothing). The MADE networks are called as modules,
        so their parameters are recorded anyway, but the elementwise layers used when L = 1 read
        theirs in ``_call``, later, in ``log_prob``, outside any module call: without this the
        JIT objectives fail on them (tested) and Pyro's SVI would not optimize them."""
        for module in self.transforms.modules():
            for name in list(module._parameters):
                getattr(module, name)

    def forward(self) -> dist.TorchDistribution:
        self._register_params()
        base = dist.Normal(self.loc, self.scale, validate_args=False).to_event(1)
        # the transforms map z -> eps; the distribution needs eps -> z, applied T_n^-1 first
        return dist.TransformedDistribution(base, [t.inv for t in reversed(self.transforms)],
                                            validate_args=False)


def make_prior(config, latent_dim: int, encoder: nn.Module, input_shape) -> nn.Module:
    """The prior registered as ``config.name`` (a PriorConfig) over z in R^latent_dim.

    ``encoder`` and ``input_shape`` are for priors built from the encoder (VampPrior).
    """
    return PRIORS.get(config.name).build(config, latent_dim, encoder, input_shape)


def prior_parameters(config, latent_dim: int, input_shape, buffers: bool = False) -> int:
    """Parameters (and buffers) of the prior :func:`make_prior` builds, asked of its class
    (:meth:`Prior.parameter_count`; the encoder's are not the prior's)."""
    return PRIORS.get(config.name).parameter_count(config, latent_dim, input_shape, buffers)
