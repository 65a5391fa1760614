"""Evaluation of a trained VAE: ELBO terms per data point, over whole data sets."""

from .elbo import ElboTerms, elbo_terms, evaluate_elbo

__all__ = ["ElboTerms", "elbo_terms", "evaluate_elbo"]
