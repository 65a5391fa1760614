"""pyrovae: variational autoencoders as Pyro programs, every part swappable by configuration.

    from pyrovae import VAE, VAEConfig, train, load_dataset
    cfg = VAEConfig(latent_dim=50, hidden=(400,), likelihood="bernoulli", elbo="meanfield")
    run = train(cfg, load_dataset("mnist", binarize="dynamic"), epochs=10, out="runs/mnist")

    run = train(MyPyroModule(...), data, epochs=10, out="runs/mine")   # a model you wrote

Data flow: ``data`` -> the model and guide (``model``: the VAE, from ``priors``,
``likelihoods``, ``nets``; ``semisupervised``: the M2 model; ``user_model``: yours; all
following ``interface`` and registered in ``registry``) -> ``objectives`` -> ``training`` ->
``evaluation`` -> ``reports``; ``runs`` holds run folders below training and the
applications; ``experiments`` compares runs, ``applications`` uses a trained one (generation,
latent maps, anomaly scores, imputation); ``cli`` is a thin layer over this API.
"""

from ._version import __version__
from .config import (DataConfig, KLConfig, ModuleConfig, PriorConfig, RunConfig, TrainConfig,
                     VAEConfig, load_config)
from .data import Dataset, load_dataset
from .errors import PyroVAEError
from .evaluation import evaluate_elbo, evaluate_run
from .interface import capabilities
from .model import VAE
from .registry import DATASETS, LIKELIHOODS, MODEL_KINDS, NETWORKS, OBJECTIVES, PRIORS
from .runs import Run, load
from .semisupervised import SSVAE, SSVAEConfig
from .hierarchical import HVAE, HVAEConfig
from .conditional import CVAE, CVAEConfig
from .training import train
from .user_model import module_config

__all__ = ["VAE", "VAEConfig", "SSVAE", "SSVAEConfig", "ModuleConfig", "PriorConfig",
           "KLConfig", "DataConfig", "TrainConfig", "RunConfig", "Dataset", "Run",
           "PyroVAEError", "train", "load", "load_dataset", "load_config", "evaluate_elbo",
           "evaluate_run", "module_config", "capabilities", "PRIORS", "LIKELIHOODS",
           "OBJECTIVES", "NETWORKS", "MODEL_KINDS", "__version__"]
__all__ += ["CVAE", "CVAEConfig"]
__all__ += ["HVAE", "HVAEConfig"]
__all__ += ["DATASETS"]
