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

from pyrovae import _moved
from pyrovae._version import __version__
from pyrovae.config import (DataConfig, KLConfig, LikelihoodConfig, PosteriorConfig,
                            PriorConfig, RunConfig, TrainConfig, load_config)
from pyrovae.data import Dataset, load_dataset
from pyrovae.runtime.errors import PyroVAEError
from pyrovae.evaluation import evaluate_elbo, evaluate_run
from pyrovae.runtime.interface import capabilities
from pyrovae.kinds.vae import VAE, VAEConfig
from pyrovae.kinds.module.config import ModuleConfig
from pyrovae.runtime.registry import DATASETS, LIKELIHOODS, MODEL_KINDS, NETWORKS, OBJECTIVES, PRIORS
from pyrovae.runs import Run, load
from pyrovae.kinds.ssvae import SSVAE, SSVAEConfig
from pyrovae.kinds.hvae import HVAE, HVAEConfig
from pyrovae.kinds.cvae import CVAE, CVAEConfig
from pyrovae.api import train
from pyrovae.kinds.module.model import module_config

__all__ = ["VAE", "VAEConfig", "SSVAE", "SSVAEConfig", "ModuleConfig", "PriorConfig",
           "KLConfig", "LikelihoodConfig", "PosteriorConfig", "DataConfig", "TrainConfig", "RunConfig", "Dataset", "Run",
           "PyroVAEError", "train", "load", "load_dataset", "load_config", "evaluate_elbo",
           "evaluate_run", "module_config", "capabilities", "PRIORS", "LIKELIHOODS",
           "OBJECTIVES", "NETWORKS", "MODEL_KINDS", "__version__"]
__all__ += ["CVAE", "CVAEConfig"]
__all__ += ["HVAE", "HVAEConfig"]
__all__ += ["DATASETS"]

_moved.install()
