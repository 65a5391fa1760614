"""Using a trained VAE: one function per job, each taking a run (folder or :class:`Run`),
writing a PNG and a JSON/CSV of its numbers into the run folder (or ``out``), and returning
those numbers as a dict.

    generation   sample (prior draws), reconstruct (test images through q and p)
    latent       interpolate (linear / spherical), traverse (one row per dimension),
                 latent_map (2-D map of posterior means; decoded manifold when L = 2)
    anomaly      anomaly (per-example -ELBO or -log p(x) scores, histogram, AUROC)
    imputation   impute (masked likelihood, pseudo-Gibbs, importance resampling)
"""

from pyrovae.applications.anomaly import anomaly, anomaly_scores, auroc
from pyrovae.applications.generation import reconstruct, sample
from pyrovae.applications.imputation import impute, impute_missing, make_mask, observe_only
from pyrovae.applications.latent import (interpolate, interpolation_path, latent_map, latent_ranking, project_2d,
                     traverse)

__all__ = ["sample", "reconstruct", "interpolate", "interpolation_path", "traverse",
           "latent_map", "latent_ranking", "project_2d", "anomaly", "anomaly_scores", "auroc",
           "impute", "impute_missing", "make_mask", "observe_only"]
