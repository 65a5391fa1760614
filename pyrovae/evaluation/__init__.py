"""Evaluation of a trained VAE: ELBO terms, importance-sampled log-likelihood per point,
PSIS k-hat of the importance weights, posterior diagnostics, AIS log-likelihood, BDMC and the
approximation/amortization gaps (docs/ais.md), and ``evaluate_run`` that
gathers them for ``pyrovae evaluate`` (its files are written by
``pyrovae.reports.write_evaluation``). Every number is read off the traces of the model and
guide (traces.py), so it holds for any model that follows the interface."""

from pyrovae.evaluation.ais import AISOptions, ais_log_likelihood
from pyrovae.evaluation.diagnostics import (active_units, kl_per_dim, layer_diagnostics, mutual_information,
                          posterior_params)
from pyrovae.evaluation.elbo import ElboTerms, elbo_terms, evaluate_elbo
from pyrovae.evaluation.evaluate import evaluate_run
from pyrovae.evaluation.gaps import GapOptions, inference_gaps
from pyrovae.evaluation.likelihood import log_likelihood, log_weights, reduce_log_weights
from pyrovae.evaluation.psis import pareto_khat, summarize_khat

__all__ = ["ElboTerms", "elbo_terms", "evaluate_elbo", "log_likelihood", "log_weights",
           "reduce_log_weights", "pareto_khat", "summarize_khat", "evaluate_run",
           "posterior_params", "kl_per_dim", "active_units",
           "mutual_information", "layer_diagnostics", "AISOptions", "ais_log_likelihood",
           "GapOptions", "inference_gaps"]
