"""``[model]`` of ``kind = "hvae"``: a VAE with several stochastic layers (docs/hierarchical.md).

The networks are given layer by layer, bottom (nearest x) to top::

    stochastic = [100, 50]                 z1 has 100 dimensions, z2 has 50
    hidden = [[200, 200], [100, 100]]      deterministic layers of each stochastic layer's nets:
                                           q(z1|x), p(x|z1) use hidden[0] (p mirrored);
                                           q(z2|z1), p(z1|z2) use hidden[1]
    activation = "tanh"

is Burda et al. (2015)'s 784-[200,200]-100-[100,100]-50 with tanh units. ``kl_weights`` and
``kl_free_bits`` hold one number per stochastic layer (empty: 1 and 0 for every layer); the
model-wide ``[model.kl]`` beta (and its schedule) multiplies every layer's weight.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

from pyrovae.config.fields import check_fields
from pyrovae.config.sections import (kind_field, OBJECTIVES, KLConfig, ObjectiveConfig,
                               check_objective, setting, likelihood_field, objective_field,
                               particles_field, LikelihoodConfig, fold_likelihood_keys)
from pyrovae.runtime.errors import ConfigError
from pyrovae.components.nets.mlp import INITS
from pyrovae.runtime.registry import ACTIVATIONS, GRADIENTS, OBJECTIVES as ALL_OBJECTIVES


def site_names(layers: int) -> tuple[str, ...]:
    """The latent sites of a hierarchy of ``layers`` stochastic layers, bottom to top."""
    return tuple(f"z{i + 1}" for i in range(layers))


def _sizes(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class HVAEConfig:
    """A hierarchical VAE p(z_L) p(z_{L-1}|z_L) ... p(x|z_1) with the guide q(z_1|x)
    q(z_2|z_1) ... q(z_L|z_{L-1}); every conditional a diagonal Gaussian from its own MLP."""

    kind: str = kind_field("hvae")
    stochastic: tuple[int, ...] = setting((100, 50), "sizes of the stochastic layers z1, z2, ..., "
                                     "bottom (next to x) to top", min=1)
    hidden: tuple[tuple[int, ...], ...] = setting(((200, 200), (100, 100)),
                                             "one list of deterministic layer sizes per "
                                             "stochastic layer: hidden[l] is in q(z_l+1|z_l) "
                                             "and, mirrored, in p(z_l|z_l+1) (z_0 = x)", min=1)
    activation: str = setting("tanh", "nonlinearity of the hidden layers", choices=ACTIVATIONS)
    likelihood: LikelihoodConfig = likelihood_field("p(x|z1)")
    sigma: InitVar[float | None] = None      # 0.1's flat keys, folded into
    variance: InitVar[str | None] = None  # [model.likelihood]
    elbo: str = setting("meanfield", "the ELBO's Pyro estimator (meanfield: closed-form KL where it "
                   "is exact, the top layer's; trace: Monte Carlo KL); [model.objective] "
                   "chooses other bounds", choices=OBJECTIVES)
    num_particles: int = particles_field()
    objective: ObjectiveConfig = objective_field()
    kl: KLConfig = field(default_factory=KLConfig, metadata={"help": "the KL term: beta and "
                                                             "its schedule, times kl_weights"})
    kl_weights: tuple[float, ...] = setting((), "weight of each layer's KL term, bottom to top "
                                       "([] = 1 for every layer); kl.beta multiplies them",
                                       min=0.0)
    kl_free_bits: tuple[float, ...] = setting((), "free-bits floor (nats per dimension) of each "
                                         "layer's KL, bottom to top ([] = none); elbo = "
                                         "meanfield only", min=0.0)
    init: str = setting("torch", "weights of every network: torch (PyTorch's default) or glorot "
                   "(Glorot & Bengio 2010, zero biases: Burda et al.'s)", choices=INITS)

    def __post_init__(self, sigma=None, variance=None):
        fold_likelihood_keys(self, sigma, variance)
        flat = [h for h in _sizes(self.hidden) if not isinstance(h, (list, tuple))]
        if flat:
            raise ConfigError(f"model.hidden = {list(_sizes(self.hidden))} must hold one list "
                              f"of layer sizes per stochastic layer, like hidden = [[200, 200], "
                              f"[100, 100]] for stochastic = [100, 50]")
        check_fields(self, "model")
        small = [s for sizes in self.hidden for s in sizes if s < 1]
        if small:
            raise ConfigError(f"model.hidden = {[list(h) for h in self.hidden]} has a layer of "
                              f"size {small[0]}; every size must be >= 1 ([] for no hidden "
                              f"layer)")
        layers = len(self.stochastic)
        if layers == 0:
            raise ConfigError("model.stochastic = [] has no stochastic layer; give their sizes, "
                              "bottom to top, e.g. stochastic = [100, 50]")
        if len(self.hidden) != layers:
            raise ConfigError(
                f"model.hidden has {len(self.hidden)} lists for {layers} stochastic layers "
                f"(stochastic = {list(self.stochastic)}), so the layers do not chain "
                f"x -> hidden[0] -> z1 -> hidden[1] -> z2 ...; give one list per stochastic "
                f"layer ([] for a linear one)")
        for key in ("kl_weights", "kl_free_bits"):
            value = getattr(self, key)
            if value and len(value) != layers:
                raise ConfigError(f"model.{key} = {list(value)} has {len(value)} entries for "
                                  f"{layers} stochastic layers (stochastic = "
                                  f"{list(self.stochastic)}); give one per layer, bottom to "
                                  f"top, or [] for the default")
        if self.kl.free_bits > 0:
            raise ConfigError(f"model.kl.free_bits = {self.kl.free_bits!r}: kind = \"hvae\" "
                              f"takes a floor per layer; set kl_free_bits = "
                              f"{[self.kl.free_bits] * layers} and kl.free_bits = 0")
        check_objective(self)
        needs_one = GRADIENTS.capability(self.objective.gradient, "one_kl_weight", False)
        if needs_one and len(set(self.weights)) > 1:
            raise ConfigError(f"model.objective.gradient = \"{self.objective.gradient}\" needs "
                              f"one KL weight on every layer, but kl_weights = "
                              f"{list(self.kl_weights)}; use gradient = \"reparam\" or equal "
                              f"kl_weights (kl.beta scales them all)")
        if any(f > 0 for f in self.kl_free_bits):
            able = " or ".join(repr(n) for n in ALL_OBJECTIVES.where(free_bits=True))
            if not self.objective.default:
                raise ConfigError(f"model.kl_free_bits needs the per-dimension KL of elbo = "
                                  f"{able}, not bound = \"{self.objective.bound}\"; set "
                                  f"kl_free_bits = []")
            if not ALL_OBJECTIVES.capability(self.elbo, "free_bits"):
                raise ConfigError(f"model.kl_free_bits needs the per-dimension KL of elbo = "
                                  f"{able}, not \"{self.elbo}\"; set kl_free_bits = [] or "
                                  f"change elbo")

    @property
    def layers(self) -> int:
        return len(self.stochastic)

    @property
    def weights(self) -> tuple[float, ...]:
        """Each layer's KL weight, bottom to top (before kl.beta)."""
        return tuple(self.kl_weights) or (1.0,) * self.layers

    @property
    def free_bits_per_site(self) -> dict[str, float]:
        """site -> free-bits floor, for the objective (``pyrovae.objectives.objective_for``)."""
        floors = tuple(self.kl_free_bits) or (0.0,) * self.layers
        return dict(zip(site_names(self.layers), floors))
