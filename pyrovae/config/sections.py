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
from typing import Any, ClassVar

from pyrovae.runtime.errors import ConfigError
from pyrovae.runtime.registry import (PLUGIN_HINT, BOUNDS, GRADIENTS, KL_DECOMPOSITIONS,
                                      KL_SCHEDULES, LIKELIHOODS,
                                      LR_SCHEDULES, MODEL_KINDS, OBJECTIVES as ALL_OBJECTIVES,
                                      POSTERIORS, PRIORS)
from pyrovae.config.fields import SEED_MAX, _unknown_message, check_fields, section_from_dict
from pyrovae.runtime.settings import Choice, Choices, setting
from pyrovae.objectives.pairs import check_pair  # noqa: F401  (pyrovae.config.check_pair too)

# The component names come from the registries (pyrovae.runtime.registry), read when a config is
# checked: a component registered by a plug-in is a valid choice at once.
OBJECTIVES = ALL_OBJECTIVES.where(enumerates=False)      # the VAE's (continuous latents)
ANALYTIC_KL_OBJECTIVES = ALL_OBJECTIVES.where(analytic_kl=True)
ANALYTIC_KL_PRIORS = PRIORS.where(analytic_kl=True)  # closed-form KL(Normal q || prior)
ANALYTIC_KL_POSTERIORS = POSTERIORS.where(analytic_kl=True)  # closed-form KL(q || Normal p)
BINARIZE = ("none", "static", "dynamic")
DEVICES = ("cpu", "cuda")
TRACKING = ("none", "mlflow", "wandb")  # train.tracking (pyrovae/integrations)




@dataclass
class PriorConfig(Choice):
    """The prior p(z): ``[model.prior]`` (its name and that prior's settings), or
    ``prior = "name"`` for its defaults."""

    registry: ClassVar = PRIORS
    section: ClassVar = "model.prior"
    legacy: ClassVar = frozenset({"components", "flow_layers", "flow_type"})  # 0.1's table
    name: str = setting("normal", "prior p(z)", choices=PRIORS)


@dataclass
class PosteriorConfig(Choice):
    """The guide's family q(z|x): ``[model.posterior]`` (its name and that family's
    settings), or ``posterior = "name"`` for its defaults (docs/posteriors.md)."""

    registry: ClassVar = POSTERIORS
    section: ClassVar = "model.posterior"
    legacy: ClassVar = frozenset({"rank", "flows", "context", "flow_hidden"})
    name: str = setting("diagonal", "guide family q(z|x)", choices=POSTERIORS)


@dataclass
class LikelihoodConfig(Choice):
    """The decoder's likelihood p(x|z): ``[model.likelihood]`` (its name and settings), or
    ``likelihood = "name"`` for its defaults (docs/likelihoods.md)."""

    registry: ClassVar = LIKELIHOODS
    section: ClassVar = "model.likelihood"
    name: str = setting("bernoulli", "likelihood p(x|z) of the decoder", choices=LIKELIHOODS)


def fold_likelihood_keys(config, sigma, variance) -> None:
    """Release 0.1's flat ``model.sigma`` / ``model.variance`` (InitVars of the kinds' configs)
    into ``config.likelihood`` where the chosen likelihood takes them (dropped where not, as
    0.1 ignored them there)."""
    given = {k: v for k, v in (("sigma", sigma), ("variance", variance)) if v is not None}
    if not given:
        return
    likelihood = config.likelihood
    if isinstance(likelihood, str):
        likelihood = LikelihoodConfig(name=likelihood)
    takes = {f.name for f in dataclasses.fields(likelihood)}
    kept = {k: v for k, v in given.items() if k in takes}
    config.likelihood = dataclasses.replace(likelihood, **kept) if kept else likelihood


@dataclass
class KLConfig(Choices):
    """The KL term: ``[model.kl]``. The loss uses beta_t * KL, beta_t from the schedule.

    Besides the keys below the table holds the settings the chosen schedule declares (its
    registration's ``settings=`` dataclass, pyrovae/objectives/schedules.py), so a plug-in's
    schedule is configured in ``[model.kl]`` like the built-in ones; so are the settings of the
    chosen ``decomposition`` (pyrovae/objectives/decompositions.py: tc's ``tc_alpha``, ...,
    dip-i's and dip-ii's ``dip_lambda_od``, ``dip_lambda_d``; factor's ``factor_gamma``,
    ``factor_hidden``, ``factor_lr``; docs/kl.md)."""

    choosers: ClassVar = {"schedule": KL_SCHEDULES, "decomposition": KL_DECOMPOSITIONS}
    section: ClassVar = "model.kl"
    beta: float = setting(1.0, "weight of the KL term (beta-VAE); the schedule's top value", min=0.0)
    schedule: str = setting("constant", "beta_t over steps", choices=KL_SCHEDULES)
    warmup: int = setting(0, "linear: steps from 0 to beta", min=0)
    period: int = setting(1000, "cyclical: steps per cycle", min=1)
    ramp: float = setting(0.5, "cyclical: fraction of a cycle spent rising from 0 to beta",
                     min=0.0, exclusive_min=True)
    free_bits: float = setting(0.0, "floor lambda (nats) on each dimension's KL in the loss", min=0.0)
    decomposition: str = setting("none", "the KL term split and reweighted: none, tc (beta-TCVAE), "
                                 "dip-i or dip-ii (DIP-VAE), factor (FactorVAE)",
                                 choices=KL_DECOMPOSITIONS)

    def check(self):  # (run after the fields' own checks, by Choices)
        if self.ramp > 1:
            raise ConfigError(f"model.kl.ramp = {self.ramp!r} is out of range: it must be <= 1")


@dataclass
class ObjectiveConfig(Choices):
    """The bound and its gradient estimator, two independent choices: ``[model.objective]``
    (docs/estimators.md). K = ``model.num_particles`` draws per point (per group for miwae and
    piwae). The default pair (elbo, reparam) is the ELBO as ``model.elbo``'s Pyro estimator
    computes it; every other pair runs pyrovae's per-point bounds (pyrovae/objectives).

    Besides ``bound``, ``gradient`` and ``biased`` the table holds the settings the chosen
    bound and estimator declare (pyrovae/objectives/bounds.py: renyi ``renyi_alpha``, ciwae
    ``ciwae_beta``, miwae and piwae ``groups``); release 0.1's tables held all three, dropped
    where the chosen bound lacks them."""

    choosers: ClassVar = {"bound": BOUNDS, "gradient": GRADIENTS}
    section: ClassVar = "model.objective"
    legacy: ClassVar = frozenset({"groups", "renyi_alpha", "ciwae_beta"})  # 0.1's table
    bound: str = setting("elbo", "bound on log p(x), per data point", choices=BOUNDS)
    gradient: str = setting("reparam", "gradient estimator of the bound", choices=GRADIENTS)
    biased: bool = setting(False, "accept a gradient estimator that is biased for this bound (stl on "
                      "a multi-sample bound), to study it; refused otherwise")

    @property
    def default(self) -> bool:
        """Whether this is the (elbo, reparam) pair that ``model.elbo`` computes."""
        return self.bound == "elbo" and self.gradient == "reparam"


def likelihood_field(of: str = "p(x|z)"):
    """The ``[model.likelihood]`` table of every kind with a decoder likelihood."""
    return field(default_factory=LikelihoodConfig, metadata={"help": f"likelihood {of}"})


def kind_field(name: str):
    """The ``kind`` key of a kind's [model] dataclass: its own name, any registered kind
    accepted (a config picks its dataclass by it, :func:`model_class`)."""
    return setting(name, "the model kind: a name registered in MODEL_KINDS (the built-in vae, "
              "ssvae, hvae, cvae and module, or a plug-in's)", choices=MODEL_KINDS)


def particles_field():
    """The ``num_particles`` key: K draws of the latents per data point and step."""
    return setting(1, "Monte Carlo samples of the latents per data point and step", min=1)


def objective_field():
    """The ``[model.objective]`` table: bound and gradient estimator (``ObjectiveConfig``)."""
    return field(default_factory=ObjectiveConfig,
                 metadata={"help": "bound and gradient estimator"})


def check_objective(config) -> None:
    """The [model.objective] rules shared by every kind: a valid pair, an estimator the kind's
    latents admit (MODEL_KINDS capability ``latents``), and no clash with ``model.elbo`` (which
    chooses the KL form of the ELBO bound) or free bits."""
    check_decomposition(config)
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


def check_decomposition(config) -> None:
    """Where ``model.kl.decomposition`` works: kind "vae" (MODEL_KINDS capability
    ``decompositions``) with the diagonal Gaussian posterior, trained by an objective with the
    ``decomposition`` capability (meanfield) on one draw per point, without free bits; anything
    else refused in one line."""
    kl = getattr(config, "kl", None)
    name = getattr(kl, "decomposition", "none")
    if kl is None or name == "none":
        return
    where = f"model.kl.decomposition = \"{name}\""
    if not MODEL_KINDS.capability(config.kind, "decompositions"):
        raise ConfigError(f"{where} needs one diagonal-Gaussian latent (kind = \"vae\"), not kind "
                          f"= \"{config.kind}\"; set decomposition = \"none\"")
    if not config.objective.default:
        raise ConfigError(f"{where} reweighs the ELBO's KL term, not bound = "
                          f"\"{config.objective.bound}\" with gradient = "
                          f"\"{config.objective.gradient}\"; drop [model.objective] or set "
                          f"decomposition = \"none\"")
    able = " or ".join(f'"{n}"' for n in ALL_OBJECTIVES.where(decomposition=True))
    if not ALL_OBJECTIVES.capability(config.elbo, "decomposition"):
        raise ConfigError(f"{where} needs the single-draw mean-field ELBO, elbo = {able}, not "
                          f"\"{config.elbo}\"; set elbo = \"meanfield\" or decomposition = "
                          f"\"none\"")
    if (not KL_DECOMPOSITIONS.capability(name, "compiles", True)
            and ALL_OBJECTIVES.capability(config.elbo, "jit")):
        raise ConfigError(f"{where} runs its discriminator outside the compiled programs, not "
                          f"elbo = \"{config.elbo}\"; set elbo = \"meanfield\" (train.fast "
                          f"still runs it, uncompiled)")
    posterior = getattr(getattr(config, "posterior", None), "name", "diagonal")
    if not POSTERIORS.capability(posterior, "diagonal"):
        raise ConfigError(f"{where} needs the diagonal Gaussian q(z|x), not posterior = "
                          f"\"{posterior}\"; set posterior = \"diagonal\" or decomposition = "
                          f"\"none\"")
    if config.num_particles > 1:
        raise ConfigError(f"{where} takes one draw of z per point, not num_particles = "
                          f"{config.num_particles}; set num_particles = 1")
    if kl.free_bits > 0:
        raise ConfigError(f"{where} and model.kl.free_bits = {kl.free_bits!r} both change the KL "
                          f"term; set free_bits = 0 or decomposition = \"none\"")


def check_posterior(config) -> None:
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


def model_classes() -> dict[str, type]:
    """kind -> the [model] dataclass of every registered model kind."""
    return {kind: MODEL_KINDS.capability(kind, "config") for kind in MODEL_KINDS}


def model_class(body: dict[str, Any]) -> type:
    """The [model] dataclass for a raw table: chosen by its ``kind`` (default "vae")."""
    kind = body.get("kind", "vae")
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model.kind = {kind!r} is not one of: {', '.join(MODEL_KINDS)}"
                          f"{PLUGIN_HINT}")
    classes = model_classes()
    cls = classes[kind]
    own = set(cls.__dataclass_fields__)  # fields and InitVars (0.1's flat keys)
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

    name: str = setting("mnist", "a registered data set (pyrovae.runtime.registry.DATASETS: mnist, images, "
                   "cifar10, ...), a .npy/.npz file or a folder of images")
    path: str = setting("", "where the data set's files are: the image folder (images), the "
                   "torchvision root (fashion-mnist, cifar10, ...; optional for mnist)")
    binarize: str = setting("dynamic", "none | static (one fixed draw) | dynamic (new draw each epoch)",
                       choices=BINARIZE)
    train_size: int = setting(0, "use only the first N training images (0 = all)", min=0)
    test_size: int = setting(0, "use only the first N test images (0 = all)", min=0)
    seed: int = setting(0, "seed of static binarization, the test binarization and splits", min=0,
                   max=SEED_MAX)
    classes: tuple[int, ...] = setting((), "keep only these labels in train and test ([] = all)",
                                  min=0)
    image_size: tuple[int, ...] = setting((), "image sources: resize every image to [H, W] (or [S] "
                                     "for S x S); [] = keep the stored size", min=1)
    image_channels: int = setting(0, "image sources: 1 = greyscale, 3 = RGB, 0 = as stored (RGB "
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

    epochs: int = setting(10, "passes over the training set", min=1)
    batch_size: int = setting(128, "minibatch size", min=1)
    lr: float = setting(1e-3, "Adam learning rate (the schedule's starting value)", min=0.0,
                   exclusive_min=True)
    lr_schedule: str = setting("constant", "learning rate over the run's steps: constant, or cosine "
                          "(from lr down to lr_min)", choices=LR_SCHEDULES)
    lr_min: float = setting(0.0, "cosine: the learning rate at the last step", min=0.0)
    seed: int = setting(0, "seed of parameters, data order, dynamic binarization and z draws", min=0,
                   max=SEED_MAX)
    device: str = setting("cpu", "cpu | cuda", choices=DEVICES)
    eval_batch_size: int = setting(1000, "batch size when evaluating", min=1)
    log_every: int = setting(50, "steps between progress-bar loss updates (each one syncs)", min=1)
    progress: bool = setting(True, "show a tqdm progress bar")
    fast: bool = setting(True, "fast path: compiled (JIT) objective, fused Adam, Pyro's checks and "
                          "host syncs off after step 1")
    checkpoint_every: int = setting(0, "also checkpoint every N steps (0 = at epoch ends only)", min=0)
    clip_norm: float = setting(0.0, "clip the gradient norm to this value (0 = no clipping)", min=0.0)
    tensorboard: bool = setting(False, "also write TensorBoard events to RUN/tensorboard/ (needs "
                           "pip install 'pyrovae[tensorboard]')")
    ema: float = setting(0.0, "Polyak averaging: decay of the exponential moving average of the "
                         "weights per step, e.g. 0.999 (0 = off); the run keeps the average",
                    min=0.0, max=1.0)
    tracking: str = setting("none", "experiment tracking of the config, the per-epoch numbers, "
                            "metrics.json and the pictures: none, mlflow or wandb (offline); "
                            "docs/tracking.md", choices=TRACKING)
    tracking_uri: str = setting("", "mlflow: a folder (mlflow.db + mlartifacts/ in it), a .db "
                                "file or an MLflow URI (sqlite:///...); \"\" = "
                                "$MLFLOW_TRACKING_URI, else ./mlflow.db")
    experiment: str = setting("pyrovae", "the mlflow experiment or wandb project of the run")

    def __post_init__(self):
        check_fields(self, "train")
        if self.ema == 1.0:
            raise ConfigError("train.ema = 1 would keep the starting weights forever; give a "
                              "decay below 1, e.g. 0.999, or 0 for no averaging")
        if self.lr_min > self.lr:
            raise ConfigError(f"train.lr_min = {self.lr_min!r} is above train.lr = {self.lr!r}; "
                              f"the cosine schedule decays from lr to lr_min, so lower lr_min")
        if not self.experiment.strip():
            raise ConfigError("train.experiment is empty; give the experiment (project) name "
                              "the run is logged to, e.g. experiment = \"pyrovae\"")
        if self.tracking_uri and self.tracking == "wandb":
            raise ConfigError(f"train.tracking_uri is where MLflow stores runs, but train.tracking"
                              f" = \"{self.tracking}\"; set tracking = \"mlflow\" or drop "
                              f"tracking_uri (wandb writes offline into RUN/wandb/)")


@dataclass
class RunConfig:
    """A whole run: the three sections of a config file."""

    model: Any = field(default_factory=lambda: default_model())
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


def default_model():
    """The [model] section of a config that names no kind: kind "vae"'s defaults."""
    return MODEL_KINDS.capability("vae", "config")()


#: the sections of a run; [model]'s class is chosen by its kind (:func:`model_class`)
SECTIONS: dict[str, type | None] = {"model": None, "data": DataConfig, "train": TrainConfig}

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
