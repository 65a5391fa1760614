"""The flow prior: p(z) = N(0, I) pushed through learned autoregressive transforms (a MAF),
``prior = "flow"`` with its settings ``flow_layers`` and ``flow_type`` (``[model.prior]``).

    log p(z) = log N(eps; 0, I) + sum_i log |det dT_i/dx|,  eps = T_n(...T_1(z))

The transforms read their parameters outside any module call (in ``log_prob``), so
``FlowPrior.forward`` reads them itself, as priors.py's docstring explains.
"""

from __future__ import annotations

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

from pyrovae.components.priors import Prior, register_prior
from pyrovae.runtime.settings import setting
from pyrovae.runtime.sizes import made_count

FLOWS = ("spline", "affine")  # the flow prior's transforms


@dataclass
class FlowSettings:
    """``[model.prior]`` of flow: its transforms."""

    flow_layers: int = setting(4, "transforms of the flow prior", min=1)
    flow_type: str = setting("spline", "transform of the flow prior", choices=FLOWS)


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
