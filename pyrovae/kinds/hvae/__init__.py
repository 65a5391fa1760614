"""Hierarchical VAEs with several stochastic layers (Burda et al. 2015): ``model.kind = "hvae"``.

    config.py   HVAEConfig: stochastic sizes, hidden layers per stochastic layer, per-layer KL
                weights and free bits; bad layer lists refused in one line
    model.py    HVAE: p(z_L) ... p(z_1|z_2) p(x|z_1) and the guide q(z_1|x) q(z_2|z_1) ...

Trains with the generic trainer (compiled objectives included), evaluates with the generic
trace-based evaluation plus per-layer diagnostics (``latent_layers``), see docs/hierarchical.md.
"""

from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.kinds.hvae.config import HVAEConfig, site_names
from pyrovae.kinds.hvae.model import HVAE, ConditionalNormal

MODEL_KINDS.register("hvae", HVAE, config=HVAEConfig, beta=True, compile=True,
                     latents="reparameterised")

__all__ = ["HVAE", "HVAEConfig", "ConditionalNormal", "site_names"]
