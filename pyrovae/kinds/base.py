"""The common start of every built-in model kind's module (vae, ssvae, hvae, cvae).

A kind is a ``PyroModule`` built as ``Kind(config, input_shape)`` from its config dataclass
for examples of ``input_shape`` ((C, H, W) images or (D,) vectors, seen flattened as [B, D],
D = prod(input_shape)); the model interface itself (``pyrovae/runtime/interface.py``) asks nothing of
this class: a user's module need not derive from it.
"""

from __future__ import annotations

import math

from pyro.nn import PyroModule

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.sizes import meta_count


class KindModule(PyroModule):
    """Sets ``config``, ``input_shape`` and ``input_dim`` = D, after refusing in one line a
    config that is not a ``config_class`` (the kind's dataclass; None accepts any)."""

    config_class: type | None = None

    def __init__(self, config, input_shape, name: str):
        super().__init__(name=name)
        wanted = self.config_class
        if wanted is not None and not isinstance(config, wanted):
            article = "an" if wanted.__name__[0] in "AEFHILMNORSX" else "a"  # an HVAEConfig
            raise ConfigError(f"{type(self).__name__} needs {article} {wanted.__name__}, got "
                              f"{type(config).__name__}; build it from the kind's config class")
        self.config = config
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_dim = math.prod(self.input_shape)

    # ---- sizes, before building (``pyrovae.runtime.memory`` asks them through MODEL_KINDS) ----

    @classmethod
    def parameter_count(cls, config, input_shape, buffers: bool = False) -> int:
        """sum(p.numel() for p in parameters()) (and buffers) of ``cls(config, input_shape)``,
        built on the meta device: exact, nothing allocated, torch's random state untouched."""
        return meta_count(lambda: cls(config, input_shape), buffers)

    @classmethod
    def point_floats(cls, config, input_shape) -> int | None:
        """Numbers one data point (one particle) produces through the networks and the
        likelihood (activations); None: the memory checks ask a built model's
        ``particle_bytes`` instead."""
        return None

    @classmethod
    def size_fields(cls, config) -> tuple[str, ...]:
        """The fields of ``config`` that size the model (named in memory refusals)."""
        return tuple(k for k in ("latent_dim", "stochastic", "hidden") if hasattr(config, k))
