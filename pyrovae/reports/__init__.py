"""Pictures and files of a run: samples, reconstructions, learning curves, the evaluation's
files, the ArviZ export. Reports read what training and evaluation computed; neither imports
them back."""

from pyrovae.reports.evaluation_files import write_evaluation
from pyrovae.reports.plots import save_elbo_curves, save_image_grid, save_reconstructions, save_samples

__all__ = ["save_elbo_curves", "save_image_grid", "save_reconstructions", "save_samples",
           "write_evaluation"]
