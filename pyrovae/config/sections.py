"""Configuration dataclasses shared by the Python API, config files and the CLI.

A run is described by three sections, each a dataclass::

    [model]   VAEConfig    what is learned: networks, prior, likelihood, objective, beta
    [data]    DataConfig   which data set, its binarization and subset
    [train]   TrainConfig  how it is learned: epochs, batch size, optimizer, device, seed

Each field declares its type and, where it has them, its allowed values (``choices``) and
bounds (``min``, ``exclusive_min``, ``max``) in the field metadata; ``fields.check_fields`` validates every field
against them when an instance is built, so ``VAEConfig(latent_dim=0)`` fails at once with a
message naming the key, the value and what is allowed. Config files are TOML with the three
sections above; ``--set key=value`` on the command line edits the same fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import (BOUNDS, GRADIENTS, LIKELIHOODS, MODEL_KINDS, NETWORKS,
                        OBJECTIVES as ALL_OBJECTIVES, POSTERIORS, PRIORS)
from pyrovae.config.fields import (CLASSES_NOTE, MAX_CLASSES, SEED_MAX, _unknown_message, check_fields,
                     section_from_dict)

# The component names come from the registries (pyrovae.runtime.registry), read when a config is
# checked: a component registered by a plug-in is a valid choice at once.
OBJECTIVES = ALL_OBJECTIVES.where(enumerates=False)      # the VAE's (continuous latents)
ANALYTIC_KL_OBJECTIVES = ALL_OBJECTIVES.where(analytic_kl=True)
ANALYTIC_KL_PRIORS = PRIORS.where(analytic_kl=True)  # closed-form KL(Normal q || prior)
ANALYTIC_KL_POSTERIORS = POSTERIORS.where(analytic_kl=True)  # closed-form KL(q || Normal p)
VARIANCES = ("pixel", "decoder")
FLOWS = ("spline", "affine")
SCHEDULES = ("constant", "linear", "cyclical")
LR_SCHEDULES = ("constant", "cosine")
ACTIVATIONS = ("relu", "softplus", "tanh", "elu", "leaky_relu", "gelu")
BINARIZE = ("none", "static", "dynamic")
SS_OBJECTIVES = ("enum", "trace")  # ssvae: y summed out (TraceEnum_ELBO) or sampled (Trace_ELBO)
ENUMERATION = ("parallel", "sequential")
DEVICES = ("cpu", "cuda")


def _f(default, help, **meta):
    """A dataclass field with a default, a help text and validation metadata."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class PriorConfig:
    """The prior p(z): ``[model.prior]``, or ``prior = "name"`` for the defaults."""

    name: str = _f("normal", "prior p(z)", choices=PRIORS)
    components: int = _f(10, "mixture components (mog) or pseudo-inputs (vamp)", min=1)
    flow_layers: int = _f(4, "transforms of the flow prior", min=1)
    flow_type: str = _f("spline", "transform of the flow prior", choices=FLOWS)

    def __post_init__(self):
        check_fields(self, "model.prior")


@dataclass
class PosteriorConfig:
    """The guide's family q(z|x): ``[model.posterior]``, or ``posterior = "name"`` for the
    defaults (docs/posteriors.md)."""

    name: str = _f("diagonal", "guide family q(z|x)", choices=POSTERIORS)
    rank: int = _f(2, "lowrank: rank r of W in W W^T + diag(d) (at most latent_dim)", min=1)
    flows: int = _f(2, "iaf: autoregressive steps T", min=1)
    context: int = _f(32, "iaf: size C of the context vector the encoder gives the steps",
                      min=1)
    flow_hidden: tuple[int, ...] = _f((), "iaf: hidden layers of each step's MADE network, each "
                                      ">= latent_dim ([] = two of max(32, 4 * latent_dim))",
                                      min=1)

    def __post_init__(self):
        check_fields(self, "model.posterior")


@dataclass
class KLConfig:
    """The KL term: ``[model.kl]``. The loss uses beta_t * KL, beta_t from the schedule."""

    beta: float = _f(1.0, "weight of the KL term (beta-VAE); the schedule's top value", min=0.0)
    schedule: str = _f("constant", "beta_t over steps", choices=SCHEDULES)
    warmup: int = _f(0, "linear: steps from 0 to beta", min=0)
    period: int = _f(1000, "cyclical: steps per cycle", min=1)
    ramp: float = _f(0.5, "cyclical: fraction of a cycle spent rising from 0 to beta",
                     min=0.0, exclusive_min=True)
    free_bits: float = _f(0.0, "floor lambda (nats) on each dimension's KL in the loss", min=0.0)

    def __post_init__(self):
        check_fields(self, "model.kl")
        if self.ramp > 1:
            raise ConfigError(f"model.kl.ramp = {self.ramp!r} is out of range: it must be <= 1")


@dataclass
class ObjectiveConfig:
    """The bound and its gradient estimator, two independent choices: ``[model.objective]``
    (docs/estimators.md). K = ``model.num_particles`` draws per point (per group for miwae and
    piwae). The default pair (elbo, reparam) is the ELBO as ``model.elbo``'s Pyro estimator
    computes it; every other pair runs pyrovae's per-point bounds (pyrovae/objectives)."""

    bound: str = _f("elbo", "bound on log p(x), per data point", choices=BOUNDS)
    gradient: str = _f("reparam", "gradient estimator of the bound", choices=GRADIENTS)
    groups: int = _f(1, "miwae, piwae: M groups of num_particles draws each", min=1)
    renyi_alpha: float = _f(0.5, "renyi: the order alpha != 1 (0 = iwae; -> 1 the elbo)")
    ciwae_beta: float = _f(0.5, "ciwae: the ELBO's share b of b*ELBO + (1-b)*IWAE", min=0.0,
                           max=1.0)
    biased: bool = _f(False, "accept a gradient estimator that is biased for this bound (stl on "
                      "a multi-sample bound), to study it; refused otherwise")

    def __post_init__(self):
        check_fields(self, "model.objective")
        if self.renyi_alpha == 1:
            raise ConfigError("model.objective.renyi_alpha = 1 is the ELBO's limit, where the Renyi "
                              "bound is undefined; use bound = \"elbo\" or renyi_alpha != 1")
        if self.renyi_alpha < 0:
            raise ConfigError(f"model.objective.renyi_alpha = {self.renyi_alpha:g} < 0 is not a "
                              f"lower bound on log p(x) (it exceeds it as K grows); use "
                              f"renyi_alpha >= 0 (0 is IWAE)")

    @property
    def default(self) -> bool:
        """Whether this is the (elbo, reparam) pair that ``model.elbo`` computes."""
        return self.bound == "elbo" and self.gradient == "reparam"


def likelihood_field(of: str = "p(x|z)"):
    """The ``likelihood`` key of every kind with a decoder likelihood."""
    return _f("bernoulli", f"likelihood {of}", choices=LIKELIHOODS)


def sigma_field():
    """The ``sigma`` key: the fixed or starting scale of the real-valued likelihoods."""
    return _f(0.1, "scale of gaussian (std) and laplace; gaussian-learned starts there",
              min=0.0, exclusive_min=True)


def variance_field():
    """The ``variance`` key of gaussian-learned."""
    return _f("pixel", "gaussian-learned: one learned variance per pixel, or output by the "
              "decoder", choices=VARIANCES)


def particles_field():
    """The ``num_particles`` key: K draws of the latents per data point and step."""
    return _f(1, "Monte Carlo samples of the latents per data point and step", min=1)


def objective_field():
    """The ``[model.objective]`` table: bound and gradient estimator (``ObjectiveConfig``)."""
    return field(default_factory=ObjectiveConfig,
                 metadata={"help": "bound and gradient estimator"})


def check_pair(bound: str, gradient: str, num_particles: int = 1, where: str = "model.objective",
               biased: bool = False):
    """Refuse a (bound, gradient) pair the estimator cannot serve, in one line.

    An estimator that ``needs`` a bound capability refuses a bound without it, except where the
    estimator is ``exact_at_one_particle`` and K = 1 (every bound's coefficients are constant
    there), or it ``may_be_biased`` and ``biased`` asks for it by name."""
    if bound not in BOUNDS:
        raise ConfigError(f"{where}.bound = {bound!r} is not one of: {', '.join(BOUNDS)}")
    if gradient not in GRADIENTS:
        raise ConfigError(f"{where}.gradient = {gradient!r} is not one of: {', '.join(GRADIENTS)}")
    only = BOUNDS.capability(bound, "only")
    if only and gradient not in only:
        raise ConfigError(f"{where}.bound = \"{bound}\" takes gradient = "
                          f"{' or '.join(only)}, not \"{gradient}\"")
    needs = GRADIENTS.capability(gradient, "needs")
    if needs and not BOUNDS.capability(bound, needs) and not only:
        single = GRADIENTS.capability(gradient, "exact_at_one_particle") and num_particles == 1
        if GRADIENTS.capability(gradient, "may_be_biased") and not single and not biased:
            able = ", ".join(BOUNDS.where(**{needs: True}))
            raise ConfigError(f"{where}.gradient = \"{gradient}\" is biased for bound = "
                              f"\"{bound}\" with num_particles > 1 (unbiased: bound = {able}, or "
                              f"K = 1); use gradient = \"dreg\", or set {where}.biased = true "
                              f"to study the biased estimator")
        if not GRADIENTS.capability(gradient, "may_be_biased"):
            able = ", ".join(BOUNDS.where(**{needs: True}))
            raise ConfigError(f"{where}.gradient = \"{gradient}\" is not defined for bound = "
                              f"\"{bound}\"; it works with bound = {able}")
    least = GRADIENTS.capability(gradient, "min_particles", 1)
    if num_particles < least:
        raise ConfigError(f"{where}.gradient = \"{gradient}\" needs num_particles >= {least} "
                          f"(its baseline uses the other draws), got {num_particles}")


def _check_objective(config) -> None:
    """The [model.objective] rules shared by every kind: a valid pair, an estimator the kind's
    latents admit (MODEL_KINDS capability ``latents``), and no clash with ``model.elbo`` (which
    chooses the KL form of the ELBO bound) or free bits."""
    objective = config.objective
    if objective.default:
        return
    check_pair(objective.bound, objective.gradient, config.num_particles, biased=objective.biased)
    latents = MODEL_KINDS.capability(config.kind, "latents")  # None: a module, checked at step 1
    if latents == "reparameterised" and GRADIENTS.capability(objective.gradient, "sampled_sites"):
        raise ConfigError(f"model.objective.gradient = \"{objective.gradient}\" is a score-function "
                          f"estimator for sampled latents, and every latent of kind = "
                          f"\"{config.kind}\" is reparameterised (it would be the plain "
                          f"gradient); use gradient = \"reparam\" or \"dreg\"")
    if config.elbo == "iwae":
        raise ConfigError("model.elbo = \"iwae\" and [model.objective] both choose the "
                          "objective; drop elbo and set objective.bound = \"iwae\"")
    if objective.bound == "elbo" and ALL_OBJECTIVES.capability(config.elbo, "analytic_kl"):
        raise ConfigError(f"model.objective.gradient = \"{objective.gradient}\" estimates the "
                          f"ELBO with a Monte Carlo KL, but model.elbo = \"{config.elbo}\" "
                          f"takes the KL in closed form; set model.elbo = \"trace\"")
    kl = getattr(config, "kl", None)
    if kl is not None and kl.free_bits > 0:
        raise ConfigError(f"model.kl.free_bits needs the analytic per-dimension KL of elbo = "
                          f"\"meanfield\", not bound = \"{objective.bound}\"; set free_bits = 0")


def _check_posterior(config) -> None:
    """What the guide family ``[model.posterior]`` cannot serve, refused in one line."""
    post, name = config.posterior, config.posterior.name
    trains_elbo = config.objective.default  # (else model.elbo is not what is trained)
    if (trains_elbo and config.elbo in ANALYTIC_KL_OBJECTIVES
            and name not in ANALYTIC_KL_POSTERIORS):
        raise ConfigError(
            f"model.elbo = \"{config.elbo}\" needs a closed-form KL(q || p), which the "
            f"\"{name}\" posterior lacks; use elbo = \"trace\" (Monte Carlo KL) or a bound from "
            f"[model.objective], or posterior = {' / '.join(ANALYTIC_KL_POSTERIORS)}")
    diagonal = POSTERIORS.capability(name, "diagonal")
    if config.kl.free_bits > 0 and not diagonal:
        raise ConfigError(f"model.kl.free_bits needs the per-dimension KL of a diagonal "
                          f"posterior, not posterior = \"{name}\"; set free_bits = 0 or "
                          f"posterior = {' / '.join(POSTERIORS.where(diagonal=True))}")
    if PRIORS.capability(config.prior.name, "encoder") and not diagonal:
        raise ConfigError(f"prior = \"{config.prior.name}\" is a mixture of the encoder's "
                          f"diagonal Gaussians, which posterior = \"{name}\" does not give; use "
                          f"posterior = {' / '.join(POSTERIORS.where(diagonal=True))} or another "
                          f"prior")
    check = getattr(POSTERIORS.get(name), "check", None)  # the family's own settings
    if check is not None:
        check(post, config.latent_dim)


@dataclass
class VAEConfig:
    """The model p(x|z) p(z), the guide q(z|x) and the objective that fits them."""

    latent_dim: int = _f(50, "dimension L of the latent z", min=1)
    network: str = _f("mlp", "encoder/decoder architecture", choices=NETWORKS)
    hidden: tuple[int, ...] = _f((400,), "MLP hidden layer sizes, encoder order (decoder mirrors)",
                                 min=1)
    channels: tuple[int, ...] = _f((32, 64), "conv channels per stride-2 layer", min=1)
    activation: str = _f("softplus", "nonlinearity of hidden layers", choices=ACTIVATIONS)
    likelihood: str = likelihood_field("p(x|z) of the decoder")
    sigma: float = sigma_field()
    variance: str = variance_field()
    prior: PriorConfig = field(default_factory=PriorConfig, metadata={"help": "prior p(z)"})
    posterior: PosteriorConfig = field(default_factory=PosteriorConfig,
                                       metadata={"help": "guide family q(z|x)"})
    elbo: str = _f("meanfield", "the ELBO's Pyro estimator (meanfield: closed-form KL; trace: "
                   "Monte Carlo KL); [model.objective] chooses other bounds", choices=OBJECTIVES)
    num_particles: int = particles_field()
    objective: ObjectiveConfig = objective_field()
    kl: KLConfig = field(default_factory=KLConfig, metadata={"help": "the KL term"})
    kind: str = _f("vae", "model: vae, or ssvae (semi-supervised M2, SSVAEConfig)",
                   choices=MODEL_KINDS)

    def __post_init__(self):
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
        _check_posterior(self)
        _check_objective(self)
        if self.kl.free_bits > 0 and not ALL_OBJECTIVES.capability(self.elbo, "free_bits"):
            raise ConfigError(
                f"model.kl.free_bits needs the analytic per-dimension KL of elbo = "
                f"{' or '.join(repr(n) for n in ALL_OBJECTIVES.where(free_bits=True))}, not "
                f"\"{self.elbo}\"; set free_bits = 0 or change elbo")
        if self.network == "conv" and not self.channels:
            raise ConfigError("model.channels = [] is empty but network = \"conv\" needs at "
                              "least one layer, e.g. channels = [32, 64]")


@dataclass
class SSVAEConfig(VAEConfig):
    """The semi-supervised VAE (Kingma et al. 2014, M2): p(y) p(z) p(x|y,z), guide q(y|x)
    q(z|x,y); ``labels`` labelled training points, the rest unlabelled (docs/ssvae.md)."""

    kind: str = _f("ssvae", "model: vae, or ssvae (semi-supervised M2, SSVAEConfig)",
                   choices=MODEL_KINDS)
    hidden: tuple[int, ...] = _f((500,), "MLP hidden layers of q(z|x,y); p(x|y,z) mirrors them",
                                 min=1)
    elbo: str = _f("enum", "enum: TraceEnum_ELBO sums y out on unlabelled data; trace: "
                   "Trace_ELBO samples y ~ q(y|x)", choices=SS_OBJECTIVES)
    enumerate: str = _f("parallel", "enum: parallel (one batched pass over the classes) or "
                        "sequential (one pass per class)", choices=ENUMERATION)
    common_noise: bool = _f(True, "parallel enum: one noise draw per point for z ~ q(z|x,y), "
                            "shared by the classes (common random numbers)")
    labels: int = _f(100, "labelled training points, balanced across classes (by data.seed)",
                     min=1)
    validation: int = _f(10000, "training points held out (labels kept) to select the epoch",
                         min=0)
    alpha: float = _f(500.0, "weight of the classification loss -log q(y|x) per labelled point "
                      "(0 = off)", min=0.0)
    classifier: tuple[int, ...] = _f((500,), "hidden layers of the classifier q(y|x) (after "
                                     "its convolutions, if any)", min=1)
    classifier_network: str = _f("mlp", "classifier q(y|x): mlp, or conv (stride-2 3x3 "
                                 "convolutions with model.channels, then the hidden layers)",
                                 choices=NETWORKS)
    num_classes: int = _f(10, "number of classes C; p(y) = 1/C", min=2, max=MAX_CLASSES,
                          note=CLASSES_NOTE)
    label_batch_size: int = _f(100, "labelled points per step (beside a batch_size batch of "
                               "unlabelled ones)", min=1)

    def __post_init__(self):
        super().__post_init__()
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


def _plain(value, where: str):
    """Refuse a value a TOML file cannot hold (it is written to the run's config.toml)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where} has a key {k!r} that is not a string")
            _plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _plain(v, where)
    elif not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"{where} = {value!r} cannot be written to a config file; give "
                          f"numbers, strings, booleans, lists or tables")


@dataclass
class ModuleConfig:
    """A model the user wrote (docs/custom_models.md): a module following the model interface,
    rebuilt as ``target(**args)`` from an import path ``package.module:Class``."""

    kind: str = _f("module", "model: vae, ssvae, or module (a model you wrote)",
                   choices=MODEL_KINDS)
    target: str = _f("", "import path of the model's torch.nn.Module class: "
                     "'package.module:Name' (a run folder's is imported only with "
                     "--trust-module)")
    args: dict = field(default_factory=dict,
                       metadata={"help": "keyword arguments of target (a TOML table)"})
    elbo: str = _f("trace", "objective (Pyro ELBO estimator; the compiled jit-* forms need "
                   "parameters Pyro records, so they are the built-in kinds')",
                   choices=ALL_OBJECTIVES.where(jit=False))
    num_particles: int = particles_field()
    objective: ObjectiveConfig = objective_field()

    def __post_init__(self):
        check_fields(self, "model")
        _check_objective(self)
        if not isinstance(self.args, dict):
            raise ConfigError(f"model.args must be a table of keyword arguments, like "
                              f"args = {{hidden = 200}}, got {self.args!r}")
        _plain(self.args, "model.args")
        if self.target and (":" not in self.target or self.target.startswith(":")
                            or self.target.endswith(":")):
            raise ConfigError(f"model.target = {self.target!r} must be an import path "
                              f"'package.module:Name'")


def model_classes() -> dict[str, type]:
    """kind -> the [model] dataclass of every registered model kind."""
    return {kind: MODEL_KINDS.capability(kind, "config") for kind in MODEL_KINDS}


def model_class(body: dict[str, Any]) -> type:
    """The [model] dataclass for a raw table: chosen by its ``kind`` (default "vae")."""
    kind = body.get("kind", "vae")
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model.kind = {kind!r} is not one of: {', '.join(MODEL_KINDS)}")
    classes = model_classes()
    cls = classes[kind]
    own = {f.name for f in dataclasses.fields(cls)}
    for other_kind, other in classes.items():
        stray = [k for k in body if k not in own and k in other.__dataclass_fields__]
        if stray:
            raise ConfigError(f"model.{stray[0]} belongs to kind = \"{other_kind}\" models, but "
                              f"this model has kind = \"{kind}\"; set model.kind = "
                              f"\"{other_kind}\" or drop the key")
    return cls


@dataclass
class DataConfig:
    """Where the data come from and how they are preprocessed."""

    name: str = _f("mnist", "a registered data set (pyrovae.runtime.registry.DATASETS: mnist, images, "
                   "cifar10, ...), a .npy/.npz file or a folder of images")
    path: str = _f("", "where the data set's files are: the image folder (images), the "
                   "torchvision root (fashion-mnist, cifar10, ...; optional for mnist)")
    binarize: str = _f("dynamic", "none | static (one fixed draw) | dynamic (new draw each epoch)",
                       choices=BINARIZE)
    train_size: int = _f(0, "use only the first N training images (0 = all)", min=0)
    test_size: int = _f(0, "use only the first N test images (0 = all)", min=0)
    seed: int = _f(0, "seed of static binarization, the test binarization and splits", min=0,
                   max=SEED_MAX)
    classes: tuple[int, ...] = _f((), "keep only these labels in train and test ([] = all)",
                                  min=0)
    image_size: tuple[int, ...] = _f((), "image sources: resize every image to [H, W] (or [S] "
                                     "for S x S); [] = keep the stored size", min=1)
    image_channels: int = _f(0, "image sources: 1 = greyscale, 3 = RGB, 0 = as stored (RGB "
                             "when any image is in colour)", min=0)

    def __post_init__(self):
        check_fields(self, "data")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"data.classes = {list(self.classes)} lists a label twice; give "
                              f"each class once, e.g. classes = [0, 1, 2]")
        if len(self.image_size) > 2:
            raise ConfigError(f"data.image_size = {list(self.image_size)} has "
                              f"{len(self.image_size)} numbers; give [height, width], [size] "
                              f"for a square, or [] to keep the stored size")
        if self.image_channels not in (0, 1, 3):
            raise ConfigError(f"data.image_channels = {self.image_channels} is not one of: 0 "
                              f"(as stored), 1 (greyscale), 3 (RGB)")


@dataclass
class TrainConfig:
    """The optimization: Adam on minibatches, with a test ELBO after each epoch."""

    epochs: int = _f(10, "passes over the training set", min=1)
    batch_size: int = _f(128, "minibatch size", min=1)
    lr: float = _f(1e-3, "Adam learning rate (the schedule's starting value)", min=0.0,
                   exclusive_min=True)
    lr_schedule: str = _f("constant", "learning rate over the run's steps: constant, or cosine "
                          "(from lr down to lr_min)", choices=LR_SCHEDULES)
    lr_min: float = _f(0.0, "cosine: the learning rate at the last step", min=0.0)
    seed: int = _f(0, "seed of parameters, data order, dynamic binarization and z draws", min=0,
                   max=SEED_MAX)
    device: str = _f("cpu", "cpu | cuda", choices=DEVICES)
    eval_batch_size: int = _f(1000, "batch size when evaluating", min=1)
    log_every: int = _f(50, "steps between progress-bar loss updates (each one syncs)", min=1)
    progress: bool = _f(True, "show a tqdm progress bar")
    fast: bool = _f(True, "fast path: compiled (JIT) objective, fused Adam, Pyro's checks and "
                          "host syncs off after step 1")
    checkpoint_every: int = _f(0, "also checkpoint every N steps (0 = at epoch ends only)", min=0)
    clip_norm: float = _f(0.0, "clip the gradient norm to this value (0 = no clipping)", min=0.0)
    tensorboard: bool = _f(False, "also write TensorBoard events to RUN/tensorboard/ (needs "
                           "pip install 'pyrovae[tensorboard]')")
    ema: float = _f(0.0, "Polyak averaging: decay of the exponential moving average of the "
                         "weights per step, e.g. 0.999 (0 = off); the run keeps the average",
                    min=0.0, max=1.0)

    def __post_init__(self):
        check_fields(self, "train")
        if self.ema == 1.0:
            raise ConfigError("train.ema = 1 would keep the starting weights forever; give a "
                              "decay below 1, e.g. 0.999, or 0 for no averaging")
        if self.lr_min > self.lr:
            raise ConfigError(f"train.lr_min = {self.lr_min!r} is above train.lr = {self.lr!r}; "
                              f"the cosine schedule decays from lr to lr_min, so lower lr_min")


@dataclass
class RunConfig:
    """A whole run: the three sections of a config file."""

    model: VAEConfig = field(default_factory=VAEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"a config must be a table of sections {list(SECTIONS)}")
        unknown = [k for k in raw if k not in SECTIONS]
        if unknown:
            raise ConfigError(_unknown_message(unknown[0], SECTIONS, "section"))
        parts = {}
        for name, section_cls in SECTIONS.items():
            body = raw.get(name, {})
            if not isinstance(body, dict):
                raise ConfigError(f"[{name}] must be a table of keys, got {body!r}")
            body = renamed_keys(name, body)
            if name == "model":
                section_cls = model_class(body)
            parts[name] = section_from_dict(section_cls, body, name)
        return cls(**parts)


SECTIONS: dict[str, type] = {"model": VAEConfig, "data": DataConfig, "train": TrainConfig}

#: keys renamed since a release, old -> new per section: config files and the configs saved in
#: run folders of earlier versions still load (a key given under both names keeps the new one)
RENAMED: dict[str, dict[str, str]] = {"data": {"channels": "image_channels"}}


def renamed_keys(section: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the section's old key names (``RENAMED``) replaced by the current ones."""
    renames = RENAMED.get(section, {})
    if not any(old in body for old in renames):
        return body
    body = dict(body)
    for old, new in renames.items():
        if old in body:
            value = body.pop(old)
            body.setdefault(new, value)
    return body
