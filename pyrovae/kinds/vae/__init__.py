"""The VAE: ``model.kind = "vae"`` (``VAEConfig``), p(z) p(x|z) with an amortized q(z|x)."""

from pyrovae.kinds.vae.config import VAEConfig
from pyrovae.kinds.vae.model import VAE

__all__ = ["VAE", "VAEConfig"]
