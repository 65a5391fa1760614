"""Evaluation of a trained VAE: ELBO terms and importance-sampled log-likelihood per point."""

from .elbo import ElboTerms, elbo_terms, evaluate_elbo
from .likelihood import log_likelihood, log_weights

__all__ = ["ElboTerms", "elbo_terms", "evaluate_elbo", "log_likelihood", "log_weights"]
