"""pyrovae: variational autoencoders as Pyro programs, every part swappable by configuration.

    from pyrovae import VAE, VAEConfig, train, load_dataset
    cfg = VAEConfig(latent_dim=50, hidden=(400,), likelihood="bernoulli", elbo="meanfield")
    run = train(cfg, load_dataset("mnist", binarize="dynamic"), epochs=10, out="runs/mnist")

Data flow: ``data`` -> ``model`` (from ``priors``, ``likelihoods``, ``nets``; the
semi-supervised M2 model in ``semisupervised``) -> ``objectives`` -> ``training`` ->
``evaluation`` -> ``reports``; ``experiments`` compares runs, ``applications`` uses a trained
one (generation, latent maps, anomaly scores, imputation); ``cli`` is a thin layer over this API.
"""

__version__ = "0.1.0"

from .config import (DataConfig, KLConfig, PriorConfig, RunConfig, TrainConfig,  # noqa: E402
                     VAEConfig, load_config)
from .data import Dataset, load_dataset  # noqa: E402
from .errors import PyroVAEError  # noqa: E402
from .evaluation import evaluate_elbo, evaluate_run  # noqa: E402
from .model import VAE  # noqa: E402
from .semisupervised import SSVAE, SSVAEConfig  # noqa: E402
from .training import Run, load, train  # noqa: E402

__all__ = ["VAE", "VAEConfig", "SSVAE", "SSVAEConfig", "PriorConfig", "KLConfig", "DataConfig",
           "TrainConfig", "RunConfig", "Dataset", "Run", "PyroVAEError", "train", "load",
           "load_dataset", "load_config", "evaluate_elbo", "evaluate_run"]
