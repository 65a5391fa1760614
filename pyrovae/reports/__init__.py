"""Pictures of a run: samples, reconstructions and learning curves."""

from .plots import save_elbo_curves, save_image_grid, save_reconstructions, save_samples

__all__ = ["save_elbo_curves", "save_image_grid", "save_reconstructions", "save_samples"]
