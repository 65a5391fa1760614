"""``[model]`` of ``kind = "ssvae"``: the M2 model's settings on top of the VAE's, with the
VAE choices M2 does not take refused in one line."""

from __future__ import annotations

from dataclasses import dataclass

from pyrovae.config.sections import kind_field, setting
from pyrovae.kinds.vae.config import VAEConfig
from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.fields import CLASSES_NOTE, MAX_CLASSES
from pyrovae.runtime.registry import GRADIENTS, NETWORKS

SS_OBJECTIVES = ("enum", "trace")  # y summed out (TraceEnum_ELBO) or sampled (Trace_ELBO)
ENUMERATION = ("parallel", "sequential")


@dataclass
class SSVAEConfig(VAEConfig):
    """The semi-supervised VAE (Kingma et al. 2014, M2): p(y) p(z) p(x|y,z), guide q(y|x)
    q(z|x,y); ``labels`` labelled training points, the rest unlabelled (docs/ssvae.md)."""

    kind: str = kind_field("ssvae")
    hidden: tuple[int, ...] = setting((500,), "MLP hidden layers of q(z|x,y); p(x|y,z) mirrors them",
                                 min=1)
    elbo: str = setting("enum", "enum: TraceEnum_ELBO sums y out on unlabelled data; trace: "
                   "Trace_ELBO samples y ~ q(y|x)", choices=SS_OBJECTIVES)
    enumerate: str = setting("parallel", "enum: parallel (one batched pass over the classes) or "
                        "sequential (one pass per class)", choices=ENUMERATION)
    common_noise: bool = setting(True, "parallel enum: one noise draw per point for z ~ q(z|x,y), "
                            "shared by the classes (common random numbers)")
    labels: int = setting(100, "labelled training points, balanced across classes (by data.seed)",
                     min=1)
    validation: int = setting(10000, "training points held out (labels kept) to select the epoch",
                         min=0)
    alpha: float = setting(500.0, "weight of the classification loss -log q(y|x) per labelled point "
                      "(0 = off)", min=0.0)
    classifier: tuple[int, ...] = setting((500,), "hidden layers of the classifier q(y|x) (after "
                                     "its convolutions, if any)", min=1)
    classifier_network: str = setting("mlp", "classifier q(y|x): mlp, or conv (stride-2 3x3 "
                                 "convolutions with model.channels, then the hidden layers)",
                                 choices=NETWORKS)
    num_classes: int = setting(10, "number of classes C; p(y) = 1/C", min=2, max=MAX_CLASSES,
                          note=CLASSES_NOTE)
    label_batch_size: int = setting(100, "labelled points per step (beside a batch_size batch of "
                               "unlabelled ones)", min=1)

    def __post_init__(self, sigma=None, variance=None):
        super().__post_init__(sigma, variance)
        fixed = {"network": "mlp", "prior.name": "normal", "posterior.name": "diagonal",
                 "kl.schedule": "constant", "kl.free_bits": 0.0}
        if self.objective.default:
            fixed["num_particles"] = 1
        elif self.elbo != "trace":
            raise ConfigError(f"[model.objective] draws y ~ q(y|x), but model.elbo = "
                              f"\"{self.elbo}\" sums y out; set model.elbo = \"trace\"")
        elif GRADIENTS.capability(self.objective.gradient, "reparameterised", True):
            able = ", ".join(g for g in GRADIENTS
                             if not GRADIENTS.capability(g, "reparameterised", True))
            raise ConfigError(f"model.objective.gradient = \"{self.objective.gradient}\" needs "
                              f"reparameterised sites, but kind = \"ssvae\" samples the class "
                              f"y ~ q(y|x); use gradient = {able}")
        for key, value in fixed.items():
            obj, name = (self, key) if "." not in key else (getattr(self, key.split(".")[0]),
                                                            key.split(".")[1])
            if getattr(obj, name) != value:
                raise ConfigError(f"model.{key} = {getattr(obj, name)!r} is not supported by "
                                  f"kind = \"ssvae\"; it needs {key} = {value!r}")
        if not self.kl.beta > 0:
            raise ConfigError(f"model.kl.beta = {self.kl.beta!r}: kind = \"ssvae\" needs a "
                              f"weight > 0 on the KL of z (1 = the M2 bound)")
        if self.labels < self.num_classes:
            raise ConfigError(f"model.labels = {self.labels} is fewer than num_classes = "
                              f"{self.num_classes}; give every class a labelled point")
