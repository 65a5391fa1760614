"""``pyrovae evaluate``: every number a researcher reports about a trained VAE, in one pass.

On the chosen split (N points, x [N, D]):

    {split}_elbo, _se       mean one-sample ELBO per point (analytic KL where it exists)
    rate, distortion        E KL(q(z|x) || p(z)) and -E log p(x|z): elbo = -distortion - beta rate
    {split}_nll, _se        -log p(x) by importance sampling with K draws per point (likelihood.py)
    {split}_bpd, _nll_bpd   -elbo and the NLL in bits per dimension, nats / (D ln 2), for a
                            likelihood on discrete data (bits.py); absent otherwise
    psis_khat               Pareto k-hat of each point's K weights, summarised (psis.py)
    kl_per_dim, active_units, mutual_info   posterior diagnostics (diagnostics.py), for a
                            model with a Gaussian encoder (the "encoder" capability)
    index_code_mi, total_correlation, dimwise_kl, _se   the rate's three parts (Chen et al.
                            2018), minibatch-stratified estimates (decomposition.py), for a
                            model with one diagonal-Gaussian latent; absent otherwise
    mig, factorvae, dci_*, sap, betavae, ...   the disentanglement scores, when asked for
                            (``disentanglement``: a data set with known factors)
    *_z1, *_z2, ...         the same per latent layer, for a model that lists its layers' sites
                            in ``latent_layers`` (active_units, latent_dim, activity and
                            kl_per_dim are then the layers' totals and joined lists)
    {split}_accuracy        argmax q(y|x) against the labels, for a model with "labels"
    {split}_ais_nll, bdmc_*, approximation_gap, amortization_gap, ...   when asked for
                            (``ais``, ``bdmc_points``, ``gaps``): AIS, BDMC and the inference
                            gaps (trust.py)
    data_sha256             the fingerprint of the data evaluated (pyrovae.data.fingerprint)
    same_data_as_training   whether it is the one the run recorded in training (None for a
                            run trained before fingerprints were recorded)

Timings and the process's peak resident memory are recorded with the numbers. Results go to
RUN/eval.json, RUN/eval_points.csv (per-point log p(x) and k-hat), RUN/khat.png and
RUN/kl_per_dim.png.
"""

from __future__ import annotations

import math
import resource
import sys
import time

import numpy as np
import torch

from pyrovae.runtime import memory
from pyrovae.config.fields import COUNT, SEED, Rule, check_number
from pyrovae.data import Dataset
from pyrovae.data.fingerprint import check_fingerprint, data_fingerprint
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.interface import data_view, has, input_dim
from pyrovae.evaluation import diagnostics
from pyrovae.evaluation.decomposition import kl_decomposition
from pyrovae.evaluation.bits import bpd_keys
from pyrovae.evaluation.classification import accuracy
from pyrovae.evaluation.elbo import evaluate_elbo
from pyrovae.evaluation.likelihood import log_mean_exp, reduce_log_weights
from pyrovae.evaluation.psis import pareto_khat, summarize_khat
from pyrovae.evaluation.trust import check_trust, trust_evaluation

SPLITS = ("test", "train")
#: the arguments' rules (``pyrovae evaluate``'s options use the same)
NLL_SAMPLES = Rule(int, 25, note="too few draws for the importance-sampled log-likelihood and "
                   "its k-hat; 5000 is standard")
MAX_POINTS = Rule(int, 1, note="max_points, the first N points; leave it out for all points")
DISENTANGLEMENT_POINTS = Rule(int, 6, note="examples for the disentanglement scores; 10,000 is "
                              "usual")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else KiB


def recorded_data_sha256(run) -> str | None:
    """The fingerprint (``data_sha256``) of the data ``run`` was trained on: as its checkpoint
    records it (``Run.data_sha256``), else its metrics'; None for a run trained before
    fingerprints were recorded, or a run without a folder."""
    metrics = getattr(run, "metrics", None) or {}
    return getattr(run, "data_sha256", None) or metrics.get("data_sha256") or None


def data_record(run, data, sha: str | None = None) -> dict:
    """Which data ``data`` (a :class:`pyrovae.Dataset`) are, for a result: ``data_sha256``
    (their fingerprint, ``sha`` when already known) and ``same_data_as_training`` (True or
    False against the fingerprint the run recorded; None when it recorded none). Data that
    are not a Dataset (any object with ``test_data()``) have no fingerprint: both None."""
    if sha is None and not isinstance(data, Dataset):
        return {"data_sha256": None, "same_data_as_training": None}
    sha = sha or data_fingerprint(data)
    recorded = recorded_data_sha256(run)
    return {"data_sha256": sha, "same_data_as_training": None if recorded is None
            else sha == recorded}


def run_data_source(run) -> str:
    """Where a run's data come from, as its config says: ``data.name = '...'`` (and path)."""
    cfg = run.config.data
    return f"data.name = '{cfg.name}'" + (f", data.path = '{cfg.path}'" if cfg.path else "")


def check_run_data(run, data, fix: str, sha: str | None = None) -> dict:
    """Refuse, in one line (a DataError naming both fingerprints and ``fix``), the data that
    ``run``'s [data] section gives now (``data``, as ``load_dataset(run.config.data)`` read
    them; ``sha``, their fingerprint when already known) when they are not those it was
    trained on; returns their :func:`data_record`. A run trained before fingerprints were
    recorded is not checked (its record says None)."""
    sha = sha or data_fingerprint(data)
    check_fingerprint(recorded_data_sha256(run), data, sha,
                      str(run.path) if getattr(run, "path", None) else "(in memory)",
                      run_data_source(run), fix, getattr(run.vae, "input_shape", None))
    return data_record(run, data, sha)


def split_data(data, split: str, max_points: int | None = None, seed: int = 0) -> torch.Tensor:
    """The points of a split as the model sees them: the test set, or the training set
    binarized by the fixed draw ``data.train_data(0, seed)``; the first ``max_points`` when
    given."""
    if split not in SPLITS:
        raise ConfigError(f"split '{split}' is not one of: {', '.join(SPLITS)}")
    if max_points is not None:
        max_points = check_number(max_points, "max_points", MAX_POINTS)
    x = data.test_data() if split == "test" else data.train_data(0, seed)
    return x[:max_points] if max_points else x


def evaluate_run(run, data, nll_samples: int = 5000, split: str = "test",
                 max_points: int | None = None, seed: int = 0, progress: bool = True,
                 batch_size: int = 100, memory_mb: int = 512, ais=None, gaps=None,
                 bdmc_points: int | None = None, sha: str | None = None,
                 disentanglement: int | None = None, dci_model: str = "gbt") -> dict:
    """Evaluate ``run.vae`` on ``data`` (a :class:`pyrovae.Dataset`); returns the numbers of
    the module docstring as a JSON-ready dict, plus ``per_point`` (log p(x), k-hat arrays)
    and ``kl_per_dim``/``activity`` lists. Needs ``nll_samples`` >= 25 for the k-hat fit and
    at least 2 points (the standard errors); refuses, before drawing, sizes whose draws or
    log weights would not fit in memory. ``ais`` (an
    :class:`~pyrovae.evaluation.ais.AISOptions`), ``gaps`` (a
    :class:`~pyrovae.evaluation.gaps.GapOptions`) and ``bdmc_points`` add AIS, the inference
    gaps and BDMC (trust.py). ``sha``: the fingerprint of ``data`` as it was read, when the
    caller has it (``check_run_data``'s), so it is not computed again. ``disentanglement``:
    add the five disentanglement scores of the posterior means on that many examples
    (:func:`disentanglement_result`; the data set must have factors), DCI's classifiers
    ``dci_model`` ("gbt" as disentanglement_lib, or the faster "forest")."""
    nll_samples = check_number(nll_samples, "nll_samples", NLL_SAMPLES)
    seed, batch_size = check_number(seed, "seed", SEED), check_number(batch_size, "batch_size",
                                                                      COUNT)
    memory_mb = check_number(memory_mb, "memory_mb", COUNT)
    vae = run.vae
    if disentanglement is not None:
        check_disentanglement(vae, data, disentanglement, dci_model)
    record = data_record(run, data, sha)  # which data these are (before the model's view)
    data = data_view(vae, data)  # the rows as the model reads them
    x = split_data(data, split, max_points).to(next(vae.parameters()).device)
    n = x.shape[0]
    wanted = input_dim(vae)
    if wanted is not None and x.ndim == 2 and x.shape[1] != wanted:
        raise DataError(f"the {split} data have {x.shape[1]} values per example but the run's "
                        f"model takes {wanted}; evaluate it on data of the kind it was trained "
                        f"on")
    if n < 2:
        raise DataError(f"evaluating needs at least 2 points (for the standard errors), the "
                        f"{split} set gives {n}; raise --points (max_points) or use more data")
    check_evaluation_memory(vae, nll_samples, min(batch_size, n), memory_mb,
                            min(max(batch_size, 1000), n))
    check_trust(vae, x, ais, gaps, bdmc_points)
    timings = {}

    start = time.perf_counter()
    elbo = evaluate_elbo(vae, x, batch_size=max(batch_size, 1000), seed=seed)
    timings["elbo_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    parts = reduce_log_weights(vae, x, lambda lw: (log_mean_exp(lw), pareto_khat(lw.T)),
                               nll_samples, batch_size, memory_mb, seed, progress)
    log_px = torch.cat([p[0] for p in parts]).cpu().numpy()
    khat = np.concatenate([p[1] for p in parts])
    timings["nll_seconds"] = time.perf_counter() - start
    trust, trust_points, trust_timings = trust_evaluation(
        vae, x, split, log_px, ais, gaps, bdmc_points, batch_size, memory_mb, seed, progress)
    timings.update(trust_timings)

    start = time.perf_counter()
    posterior = posterior_diagnostics(vae, x, seed) if has(vae, "encoder") else {}
    if getattr(vae, "latent_layers", None):  # several latent layers: each one's, and totals
        posterior.update(diagnostics.layer_diagnostics(vae, x, seed))
    labels = getattr(data, "test_y" if split == "test" else "train_y", None)
    if has(vae, "labels") and labels is not None:
        posterior[f"{split}_accuracy"] = accuracy(vae, x, labels[:n])
    timings["diagnostics_seconds"] = time.perf_counter() - start
    if disentanglement is not None:
        start = time.perf_counter()
        posterior.update(disentanglement_result(vae, data, disentanglement, seed, dci_model))
        timings["disentanglement_seconds"] = time.perf_counter() - start

    nll_se = float(np.std(log_px, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    result = {
        "split": split, "num_points": n, "nll_samples": nll_samples, "seed": seed,
        f"{split}_elbo": elbo["elbo"], f"{split}_elbo_se": elbo["elbo_se"],
        **({f"{split}_objective": elbo["objective"]}  # beta != 1: what training maximised
           if elbo["objective"] != elbo["elbo"] else {}),
        f"{split}_nll": float(-log_px.mean()), f"{split}_nll_se": nll_se,
        **bpd_keys(vae, **{f"{split}_bpd": -elbo["elbo"], f"{split}_nll_bpd": -log_px.mean()}),
        "rate": elbo["kl"], "distortion": -elbo["log_px_z"], "beta": float(getattr(vae, "beta", 1.0)),
        "kl_estimator": elbo["kl_estimator"],
        "active_units": None, "latent_dim": None, "mutual_info": None, "mutual_info_max": None,
        "kl_per_dim": None, "activity": None,
        **posterior, **trust,
        "khat_share_above_0_7": summarize_khat(khat)["share_above_0_7"],
        "psis_khat": summarize_khat(khat),
        **{k: round(v, 3) for k, v in timings.items()},
        "eval_seconds": round(sum(timings.values()), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **record,
        "per_point": {"log_px": log_px, "khat": khat, **trust_points},
    }
    return result


def check_evaluation_memory(vae, nll_samples: int, batch: int, memory_mb: int,
                            elbo_batch: int) -> None:
    """Refuse sizes that cannot fit in memory: a chunk of draws (at most ``memory_mb``, at
    most all K draws of a batch), one batch's K log weights (float64, held twice while they
    are joined), and the ELBO's batches."""
    device = memory.model_device(vae)
    chunk = min(memory_mb * 2**20, memory.inference_bytes(vae, nll_samples * batch))
    memory.check_bytes(chunk, f"a chunk of samples of memory_mb = {memory_mb} (--memory-mb)",
                       "lower --memory-mb (memory_mb)", device=device)
    memory.check_bytes(16 * nll_samples * batch, f"nll_samples = {nll_samples} (--nll-samples) "
                       f"log weights for batches of {batch} points",
                       "lower --nll-samples or --batch-size", device=device)
    memory.check_points(vae, elbo_batch, f"ELBO batches of {elbo_batch} points",
                        "lower --batch-size (batch_size)")


def posterior_diagnostics(vae, x: torch.Tensor, seed: int = 0) -> dict:
    """Active units, mutual information, KL and activity per dimension of the Gaussian
    encoder's q(z|x) (diagnostics.py), for a model with the "encoder" capability.

    The per-dimension KLs and the mutual information are those of N(mu, diag(sigma^2)), so
    they are given only for a diagonal guide (``diagonal_posterior``; None for a full,
    low-rank or flow guide, whose rate is the ELBO's KL); the activity needs only the means."""
    mu, sigma = diagnostics.posterior_params(vae, x)
    diagonal = diagnostics.diagonal_posterior(vae)
    kl_dim = diagnostics.kl_per_dim(vae, mu, sigma) if diagonal else None
    act = diagnostics.activity(mu)
    single = diagonal and not getattr(vae, "latent_layers", None)  # one diagonal-Gaussian latent
    return {**(kl_decomposition(vae, mu, sigma, seed) if single else {}),"active_units": int((act > diagnostics.ACTIVE_THRESHOLD).sum()),
            "latent_dim": int(mu.shape[1]),
            "mutual_info": (diagnostics.mutual_information(mu, sigma, seed=seed) if diagonal
                            else None),
            "mutual_info_max": math.log(x.shape[0]),
            "kl_per_dim": None if kl_dim is None else [float(v) for v in kl_dim],
            "activity": [float(v) for v in act]}


#: what ``pyrovae evaluate --disentanglement`` needs of the run's data
FACTORS_NEEDED = "needs a data set with known factors (dsprites, dsprites-small)"


def check_factors(data, what: str, fix: str = "") -> None:
    """Refuse in one line ``what`` (the scores, a flag asking for them) on data without known
    factors; ``fix``: what to do instead, appended to the line."""
    if getattr(data, "factors", None) is None:
        raise ConfigError(f"{what} {FACTORS_NEEDED}; data set {getattr(data, 'name', '?')!r} "
                          f"has none{fix}")


def check_disentanglement(vae, data, n: int, dci_model: str = "gbt") -> None:
    """Refuse in one line the disentanglement scores of a model without an encoder, of data
    without known factors, of fewer than 6 examples, or with an unknown DCI classifier."""
    from pyrovae.evaluation.disentanglement.dci import MODELS

    if dci_model not in MODELS:
        raise ConfigError(f"dci_model = {dci_model!r}: choose one of {', '.join(MODELS)}")
    check_factors(data, "the disentanglement scores")
    if not has(vae, "encoder"):
        raise ConfigError("the disentanglement scores need a model with an encoder (posterior "
                          "means); this model has no encode()")
    check_number(n, "disentanglement points", DISENTANGLEMENT_POINTS)


def disentanglement_result(vae, data, n: int = 10_000, seed: int = 0,
                           dci_model: str = "gbt") -> dict:
    """MIG, FactorVAE, DCI, SAP and BetaVAE scores (``evaluation.disentanglement``) of the
    posterior means E_q[z|x] on ``n`` examples of ``data`` (a data set with factors: fresh
    grid points through its generator), as floats, with ``disentanglement_points`` = n and
    ``dci_model``, the classifiers DCI used."""
    from pyrovae.evaluation.disentanglement import disentanglement_scores
    from pyrovae.runtime.traces import eval_mode

    check_disentanglement(vae, data, n, dci_model)
    device = next(vae.parameters()).device

    def represent(x):
        flat = torch.as_tensor(x).reshape(len(x), -1).to(device)
        return vae.encode(flat)[0]

    with eval_mode(vae):
        scores = disentanglement_scores(represent, data, n=n, seed=seed, dci_model=dci_model)
    return {"disentanglement_points": n, "dci_model": dci_model,
            **{k: float(v) for k, v in scores.items()}}
