"""Guide families q(z|x) of the VAE, chosen by ``[model.posterior]`` (docs/posteriors.md).

    diagonal  N(mu, diag(sigma^2))                   encoder 2L outputs        closed-form KL
    full      N(mu, L L^T), L the Cholesky factor    L + L(L+1)/2              closed-form KL
    lowrank   N(mu, W W^T + diag(d)), W [L, r]       L + L r + L               closed-form KL
    iaf       diagonal Gaussian + T autoregressive   2L + C (C: context)       Monte Carlo KL
              steps reading a context c(x) (Kingma et al. 2016)

One file per family, each registering itself in :data:`pyrovae.runtime.registry.POSTERIORS` (base.py
says what a family is); ``kl.py`` registers the closed-form KLs of full and lowrank with torch.
:func:`make_posterior` builds the one a config names.
"""

from pyrovae.runtime.registry import POSTERIORS
from pyrovae.components.posteriors import kl  # noqa: F401  (registers KL(full or lowrank || diagonal Gaussian))
from pyrovae.components.posteriors.base import Posterior, register_posterior
# registered in this order, the order of the config's choices
from pyrovae.components.posteriors.diagonal import DiagonalPosterior
from pyrovae.components.posteriors.full import FullCovariancePosterior
from pyrovae.components.posteriors.lowrank import LowRankPosterior
from pyrovae.components.posteriors.iaf import IAFPosterior  # noqa: I001


def posterior_class(config) -> type:
    """The family registered as ``config.name`` (a PosteriorConfig)."""
    return POSTERIORS.get(config.name)


def make_posterior(config, latent_dim: int) -> Posterior:
    """The family ``config.name`` (a PosteriorConfig) over z in R^latent_dim."""
    return posterior_class(config).build(config, latent_dim)


__all__ = ["Posterior", "register_posterior", "DiagonalPosterior", "FullCovariancePosterior",
           "LowRankPosterior", "IAFPosterior", "make_posterior", "posterior_class", "POSTERIORS"]
