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
