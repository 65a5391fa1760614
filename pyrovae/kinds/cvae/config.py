"""``[model]`` of a conditional VAE: ``kind = "cvae"`` (docs/conditional.md).

    condition = "quadrants"   x_in = the ``visible`` quadrants of an image, x_out = the others
    condition = "label"       x_in = the one-hot class of the example, x_out = the whole image

The networks are MLPs (``hidden``, ``activation``): the recognition network q(z | x_in, x_out),
the prior network p(z | x_in) and the generation network p(x_out | x_in, z). The defaults are
those of Pyro's ``examples/cvae`` (latent 200, two hidden layers of 500, ReLU).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass

from pyrovae.config.fields import CLASSES_NOTE, MAX_CLASSES, check_fields
from pyrovae.config.sections import (kind_field, ObjectiveConfig, check_objective, setting,
                               likelihood_field, objective_field, particles_field, LikelihoodConfig, fold_likelihood_keys)
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import ACTIVATIONS, OBJECTIVES

CONDITIONS = ("quadrants", "label")
#: Pyro estimators of a model with one continuous latent site, run without compiling
CVAE_OBJECTIVES = OBJECTIVES.where(jit=False, enumerates=False)


@dataclass
class CVAEConfig:
    """A conditional VAE (Sohn et al. 2015): prior network p(z|x_in), generation network
    p(x_out|x_in, z), recognition network q(z|x_in, x_out)."""

    kind: str = kind_field("cvae")
    condition: str = setting("quadrants", "what the model is conditioned on: quadrants (x_in = the "
                        "visible quadrants, x_out = the hidden ones) or label (x_in = the "
                        "one-hot class, x_out = the image)", choices=CONDITIONS)
    visible: int = setting(2, "quadrants: visible quadrants, as in Pyro's examples/cvae: 1 = bottom-"
                      "left, 2 = left half, 3 = all but bottom-right", min=1, max=3)
    num_classes: int = setting(10, "label: number of classes C (labels 0..C-1)", min=2,
                          max=MAX_CLASSES, note=CLASSES_NOTE)
    latent_dim: int = setting(200, "dimension L of the latent z", min=1)
    hidden: tuple[int, ...] = setting((500, 500), "hidden layers of each of the three MLPs", min=1)
    activation: str = setting("relu", "nonlinearity of hidden layers", choices=ACTIVATIONS)
    likelihood: LikelihoodConfig = likelihood_field("p(x_out | x_in, z)")
    sigma: InitVar[float | None] = None      # 0.1's flat keys, folded into
    variance: InitVar[str | None] = None  # [model.likelihood]
    elbo: str = setting("meanfield", "the ELBO's Pyro estimator (meanfield: closed-form KL between "
                   "q(z|x_in,x_out) and p(z|x_in); trace: Monte Carlo KL)",
                   choices=CVAE_OBJECTIVES)
    num_particles: int = particles_field()
    objective: ObjectiveConfig = objective_field()

    def __post_init__(self, sigma=None, variance=None):
        fold_likelihood_keys(self, sigma, variance)
        check_fields(self, "model")
        if self.kind != "cvae":
            raise ConfigError(f"CVAEConfig is kind = \"cvae\", not {self.kind!r}; use the "
                              f"config class of kind {self.kind!r}")
        check_objective(self)
