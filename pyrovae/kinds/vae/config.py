"""``[model]`` of ``kind = "vae"``: the networks, the prior, the guide family, the likelihood
and the objective of a one-latent VAE (the components' own settings in their tables)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

from pyrovae.config.sections import (kind_field, ANALYTIC_KL_OBJECTIVES, ANALYTIC_KL_PRIORS,
                                     OBJECTIVES, KLConfig, LikelihoodConfig, ObjectiveConfig,
                                     PosteriorConfig, PriorConfig, check_objective,
                                     check_posterior, fold_likelihood_keys, likelihood_field,
                                     model_classes, objective_field, particles_field, setting)
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.fields import check_fields
from pyrovae.runtime.registry import ACTIVATIONS, MODEL_KINDS, NETWORKS, OBJECTIVES as ALL_OBJECTIVES


@dataclass
class VAEConfig:
    """The model p(x|z) p(z), the guide q(z|x) and the objective that fits them."""

    latent_dim: int = setting(50, "dimension L of the latent z", min=1)
    network: str = setting("mlp", "encoder/decoder architecture", choices=NETWORKS)
    hidden: tuple[int, ...] = setting((400,), "MLP hidden layer sizes, encoder order (decoder mirrors)",
                                 min=1)
    channels: tuple[int, ...] = setting((32, 64), "conv channels per stride-2 layer", min=1)
    activation: str = setting("softplus", "nonlinearity of hidden layers", choices=ACTIVATIONS)
    likelihood: LikelihoodConfig = likelihood_field("p(x|z) of the decoder")
    sigma: InitVar[float | None] = None
    variance: InitVar[str | None] = None
    prior: PriorConfig = field(default_factory=PriorConfig, metadata={"help": "prior p(z)"})
    posterior: PosteriorConfig = field(default_factory=PosteriorConfig,
                                       metadata={"help": "guide family q(z|x)"})
    elbo: str = setting("meanfield", "the ELBO's Pyro estimator (meanfield: closed-form KL; trace: "
                   "Monte Carlo KL); [model.objective] chooses other bounds", choices=OBJECTIVES)
    num_particles: int = particles_field()
    objective: ObjectiveConfig = objective_field()
    kl: KLConfig = field(default_factory=KLConfig, metadata={"help": "the KL term"})
    kind: str = kind_field("vae")

    def __post_init__(self, sigma=None, variance=None):
        fold_likelihood_keys(self, sigma, variance)
        check_fields(self, "model")
        wanted = MODEL_KINDS.capability(self.kind, "config")
        if type(self) is not wanted and type(self) in model_classes().values():
            raise ConfigError(f"model.kind = \"{self.kind}\" is built by {wanted.__name__}, "
                              f"not {type(self).__name__}; use {wanted.__name__}(...)")
        analytic = ANALYTIC_KL_OBJECTIVES
        if self.elbo in analytic and self.prior.name not in ANALYTIC_KL_PRIORS:
            raise ConfigError(
                f"model.elbo = \"{self.elbo}\" needs a closed-form KL(q || p), which the "
                f"\"{self.prior.name}\" prior lacks; use elbo = \"trace\", \"jit-trace\" or "
                f"\"tracegraph\" (Monte Carlo KL), or prior = "
                f"{' / '.join(ANALYTIC_KL_PRIORS)}")
        check_posterior(self)
        check_objective(self)
        if self.kl.free_bits > 0 and not ALL_OBJECTIVES.capability(self.elbo, "free_bits"):
            raise ConfigError(
                f"model.kl.free_bits needs the analytic per-dimension KL of elbo = "
                f"{' or '.join(repr(n) for n in ALL_OBJECTIVES.where(free_bits=True))}, not "
                f"\"{self.elbo}\"; set free_bits = 0 or change elbo")
        if self.network == "conv" and not self.channels:
            raise ConfigError("model.channels = [] is empty but network = \"conv\" needs at "
                              "least one layer, e.g. channels = [32, 64]")
