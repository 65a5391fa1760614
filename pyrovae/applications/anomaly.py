"""Anomaly detection: examples the model finds improbable score high.

    score "elbo":  s(x) = -ELBO(x) = -(1/K) sum_k log p(x|z_k) + KL(q(z|x) || p(z)),
                   z_k ~ q(z|x), the KL analytic where it has a closed form (else Monte Carlo
                   over the same K draws); beta = 1 whatever the training beta, so s(x) is
                   a bound on -log p(x)
    score "nll":   s(x) = -log p(x), importance-sampled with K draws
                   (pyrovae.evaluation.log_likelihood)
    score "ratio": s(x) = -ELBO(x) + log p_0(x), a likelihood ratio against a background
                   model p_0(x) = prod_d Bernoulli(x_d; m_d), m = the mean training image
                   (Bernoulli likelihood only). -ELBO alone mostly measures how many strokes
                   an image has (a held-out 9 is simpler than a 0 or an 8 and scores lower);
                   the ratio removes that (Ren et al. 2019; Serra et al. 2020).
    score "latent": s(x) = || mu(x) - mu(x_(k)) ||, mu = E_q[z|x], x_(k) the training point
                   whose code is x's k-th nearest (k = ``neighbours``, default 1): how far x's
                   code lies from every training code. An unseen class gets codes of its own
                   even when its pixels are as likely as the training digits'.

AUROC = P(s(anomalous) > s(normal)) + 1/2 P(tie), computed from ranks (Mann-Whitney U):

    AUROC = (R_+ - n_+ (n_+ + 1) / 2) / (n_+ n_-)

with R_+ the sum of the anomalous examples' ranks among all scores, ties given their
average rank. Shapes: x [N, D] -> scores [N].
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from pyrovae.runtime import memory
from pyrovae.config.fields import COUNT, SEED, SIZE, check_number
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.evaluation import elbo_terms, log_likelihood
from pyrovae.runtime.traces import eval_mode
from pyrovae.runtime.files import write_csv, write_json
from pyrovae.reports.applications import save_score_histogram
from pyrovae.runtime.rng import seeded
from pyrovae.runtime.interface import data_view, require, takes_condition
from pyrovae.applications.runs import as_run, own_data, output_dir, read_data

SCORES = ("elbo", "nll", "ratio", "latent")
DEFAULT_SAMPLES = {"elbo": 10, "nll": 200, "ratio": 10, "latent": 1}  # latent: no sampling
PIXEL_CLAMP = 1e-3  # background pixel probabilities kept in [1e-3, 1 - 1e-3]


def auroc(scores, anomalous) -> float:
    """Area under the ROC curve of ``scores`` [N] (higher = more anomalous) for the boolean
    labels ``anomalous`` [N]; 1 = every anomaly above every normal example, 0.5 = chance."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(anomalous, dtype=bool).reshape(-1)
    if s.shape != pos.shape:
        raise DataError(f"{s.size} scores but {pos.size} labels; give one label per score")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"AUROC needs normal and anomalous examples, got {n_neg} normal and "
                        f"{n_pos} anomalous; check --labels-anomalous and --data")
    if not np.isfinite(s).all():
        raise DataError("anomaly scores contain NaN or inf; the model cannot score these data")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based, ties share their average rank
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def background_log_prob(x: torch.Tensor, mean_image: torch.Tensor) -> torch.Tensor:
    """log p_0(x) = sum_d x_d log m_d + (1 - x_d) log(1 - m_d): x [N, D], m [D] -> [N]."""
    m = mean_image.double().clamp(PIXEL_CLAMP, 1 - PIXEL_CLAMP)
    xd = x.double()
    return (xd * m.log() + (1 - xd) * torch.log1p(-m)).sum(1)


@torch.no_grad()
def latent_distance(vae, x: torch.Tensor, x_train: torch.Tensor, neighbours: int = 1,
                    chunk: int = 1000) -> torch.Tensor:
    """Distance [N] from each E_q[z|x] (x [N, D]) to its ``neighbours``-th nearest code among
    the posterior means of x_train [M, D]; O(chunk * M) memory."""
    from pyrovae.evaluation import posterior_params

    if not 1 <= neighbours <= x_train.shape[0]:
        raise ConfigError(f"neighbours = {neighbours} must be between 1 and the "
                          f"{x_train.shape[0]} training points")
    codes = posterior_params(vae, x_train)[0]  # [M, L]
    mu = posterior_params(vae, x)[0].to(codes.device)  # [N, L]
    return torch.cat([torch.cdist(b, codes).topk(neighbours, largest=False).values[:, -1]
                      for b in mu.split(chunk)]).double()


@torch.no_grad()
def anomaly_scores(vae, x: torch.Tensor, score: str = "elbo", num_samples: int | None = None,
                   batch_size: int = 100, seed: int = 0, progress: bool = False,
                   mean_image: torch.Tensor | None = None,
                   x_train: torch.Tensor | None = None, neighbours: int = 1) -> torch.Tensor:
    """Per-example anomaly scores [N] in nats (higher = more anomalous) of x [N, D];
    ``mean_image`` [D] (the background model) is needed by the "ratio" score, the training
    points ``x_train`` [M, D] by the "latent" score."""
    if score == "latent":
        require(vae, "encoder", command="anomaly --score latent")
        if x_train is None:
            raise ConfigError("score \"latent\" needs the training points (x_train)")
        return latent_distance(vae, x, x_train, neighbours)
    if score == "ratio":
        if takes_condition(vae):  # its bound is of x_out given x_in, not of the whole x
            raise ConfigError(f"score \"ratio\" compares p(x) with a background model of x, "
                              f"but {type(vae).__name__} is a conditional model of part of x "
                              f"given the rest; use --score elbo, nll or latent")
        if getattr(getattr(vae, "likelihood", None), "name", None) != "bernoulli" \
                or mean_image is None:
            raise ConfigError("score \"ratio\" needs a bernoulli likelihood (binary data) and "
                              "the mean training image; use --score elbo or nll")
        elbo = anomaly_scores(vae, x, "elbo", num_samples, batch_size, seed, progress)
        return elbo + background_log_prob(x, mean_image.to(x.device))
    if score not in SCORES:
        raise ConfigError(f"score {score!r} is not one of: {', '.join(SCORES)}")
    k = DEFAULT_SAMPLES[score] if num_samples is None else check_number(num_samples,
                                                                        "num_samples", COUNT)
    batch_size = check_number(batch_size, "batch_size", COUNT)
    check_scoring_memory(vae, score, k, min(batch_size, max(len(x), 1)))
    if score == "nll":
        return -log_likelihood(vae, x, num_samples=k, batch_size=batch_size, seed=seed,
                               progress=progress)
    out = []
    with seeded(seed), eval_mode(vae):
        for xb in tqdm(x.split(batch_size), disable=not progress, desc=f"-ELBO, K={k}"):
            terms = elbo_terms(vae, xb, analytic_kl=True, particles=k)    # each [K, B]
            out.append((terms.kl.double() - terms.log_px_z.double()).mean(0))
    return torch.cat(out)


def check_scoring_memory(vae, score: str, k: int, batch: int) -> None:
    """Refuse K draws per point for batches of ``batch`` points when they cannot fit in
    memory: K x batch points through the model (elbo, ratio), or the nll's K x batch log
    weights (its draws come in chunks of a bounded size)."""
    what, fix = f"scoring with num_samples = {k} (--samples)", "lower --samples (num_samples)"
    if score == "nll":
        memory.check_bytes(16 * k * batch, what, fix, device=memory.model_device(vae))
    elif score in ("elbo", "ratio"):
        memory.check_points(vae, k * batch, what, fix)


def anomalous_labels(run, labels, anomalous_classes=None, data: str = "test:all"):
    """Boolean [N] (True = anomalous) from labels: listed classes, or else every class the
    run did not train on (``data.classes``); None when that cannot be known. A listed class
    that no example of ``data`` has is refused in one line naming the labels there are."""
    if labels is None:
        if anomalous_classes:
            raise DataError("--labels-anomalous needs labelled data, but these data have no "
                            "labels")
        return None
    y = labels.cpu().numpy()
    if anomalous_classes:
        present = sorted(int(c) for c in np.unique(y))
        missing = [int(c) for c in anomalous_classes if int(c) not in present]
        if missing:
            listed = " ".join(str(c) for c in missing)
            which = "that label" if len(missing) == 1 else "those labels"
            raise DataError(f"--labels-anomalous {listed} (labels_anomalous): no example of "
                            f"data '{data}' has {which}; its labels are "
                            f"{', '.join(str(c) for c in present)}")
        return np.isin(y, list(anomalous_classes))
    trained = run.config.data.classes
    return ~np.isin(y, list(trained)) if trained else None


def anomaly(run, out=None, data: str = "test:all", score: str = "elbo",
            labels_anomalous=None, num_samples: int | None = None, seed: int = 0,
            progress: bool = False, neighbours: int = 1) -> dict:
    """Score every example of ``data``: anomaly_scores.csv (index, label, anomalous, score),
    anomaly.png (histogram, normal vs anomalous) and anomaly.json (AUROC when labels say
    which examples are anomalous). Returns the numbers."""
    if score not in SCORES:
        raise ConfigError(f"score {score!r} is not one of: {', '.join(SCORES)}")
    if num_samples is not None:
        num_samples = check_number(num_samples, "num_samples", COUNT)
    seed, neighbours = check_number(seed, "seed", SEED), check_number(neighbours, "neighbours",
                                                                      COUNT)
    if labels_anomalous is not None:
        labels_anomalous = [check_number(c, "labels_anomalous", SIZE) for c in labels_anomalous]
    run = as_run(run)
    folder = output_dir(run, out)
    x, y, _, record = read_data(run, data)  # the run's own data are checked: one line if not
    anomalous = anomalous_labels(run, y, labels_anomalous, data)
    mean_image = x_train = None
    if score in ("ratio", "latent"):  # the data the run trained on (checked)
        train = data_view(run.vae, own_data(run)[0])
        train = train.to(next(run.vae.parameters()).device)
        mean_image = train.train_x.mean(0)
        x_train = train.train_data(0, run.config.train.seed)
    s = anomaly_scores(run.vae, x, score, num_samples, seed=seed, progress=progress,
                       mean_image=mean_image, x_train=x_train, neighbours=neighbours)
    s = s.cpu().numpy()
    rows = [{"index": i, "label": "" if y is None else int(y[i]),
             "anomalous": "" if anomalous is None else int(anomalous[i]), "score": float(v)}
            for i, v in enumerate(s)]
    write_csv(folder / "anomaly_scores.csv", rows)
    k = DEFAULT_SAMPLES[score] if num_samples is None else num_samples
    result = {**record, "score": score, "num_samples": k,
              "n": len(s), "trained_classes": list(run.config.data.classes),
              "anomalous_classes": (list(labels_anomalous) if labels_anomalous else None),
              "mean_score": float(s.mean()), "auroc": None}
    title = f"anomaly score {score} on '{data}'"
    if anomalous is not None:
        result.update(n_anomalous=int(anomalous.sum()),
                      mean_score_normal=float(s[~anomalous].mean()) if (~anomalous).any() else None,
                      mean_score_anomalous=float(s[anomalous].mean()) if anomalous.any() else None)
        if anomalous.any() and (~anomalous).any():
            result["auroc"] = auroc(s, anomalous)
            title += f": AUROC {result['auroc']:.3f}"
    label = {"elbo": "-ELBO (nats)", "nll": "-log p(x) (nats, importance sampled)",
             "ratio": "-ELBO + log p_0(x) (nats, vs independent pixels)",
             "latent": "distance of E_q[z|x] to the nearest training code"}[score]
    save_score_histogram(s, anomalous, folder / "anomaly.png", title, label)
    result.update(csv=str(folder / "anomaly_scores.csv"), png=str(folder / "anomaly.png"))
    write_json(folder / "anomaly.json", result)
    return result
