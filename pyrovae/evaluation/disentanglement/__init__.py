"""Disentanglement metrics: how well a representation separates known ground-truth factors
(data sets made from factors, e.g. ``dsprites``; docs/disentanglement.md).

One module per metric, each following disentanglement_lib (Locatello et al. 2019, "Challenging
common assumptions in the unsupervised learning of disentangled representations") with the
math in its docstring: :func:`mig` (Chen et al. 2018), :func:`factor_vae_score` (Kim & Mnih
2018), :func:`dci` (Eastwood & Williams 2018), :func:`sap` (Kumar et al. 2018),
:func:`beta_vae_score` (Higgins et al. 2017); ``common`` holds the shared pieces. Inputs are
representations z [N, L] (e.g. posterior means) and factor indices [N, K]; FactorVAE and
BetaVAE draw examples with one factor fixed through a sampler ``(k, value, n) -> z [n, L]``.
NumPy and scikit-learn only, every draw seeded.

:func:`disentanglement_scores` computes all five for a representation function and a data set
with factors (``dataset.factors``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.disentanglement.beta_vae import beta_vae_score
from pyrovae.evaluation.disentanglement.common import grid_sampler, pool_sampler
from pyrovae.evaluation.disentanglement.dci import dci
from pyrovae.evaluation.disentanglement.factor_vae import factor_vae_score
from pyrovae.evaluation.disentanglement.mig import mig
from pyrovae.evaluation.disentanglement.sap import sap

ENCODE_BATCH = 1000


def _encoder(model_encode: Callable, batch: int = ENCODE_BATCH) -> Callable[[np.ndarray], np.ndarray]:
    """x [n, D] float32 -> representations [n, L] float64, in batches; ``model_encode`` may
    take and return torch tensors (called under no_grad) or NumPy arrays."""
    import torch

    def encode(x: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(x), batch):
                z = model_encode(torch.as_tensor(x[start:start + batch]))
                z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
                out.append(np.asarray(z, dtype=np.float64).reshape(len(z), -1))
        return np.concatenate(out)

    return encode


def disentanglement_scores(model_encode: Callable, dataset, n: int = 10_000, seed: int = 0,
                           bins: int = 20, dci_model: str = "gbt", votes: int | None = None,
                           batch_size: int = 64) -> dict:
    """The five metrics of the representation ``model_encode``: x [n, D] -> z [n, L] (e.g. a
    model's posterior means) on ``dataset`` (a :class:`~pyrovae.data.Dataset` whose
    ``factors`` is set, e.g. ``load_dataset("dsprites-small")``).

    Examples: with a generator (``dataset.factors.observe``), ``n`` fresh grid points drawn
    uniformly; else the data set's test then training examples (at most ``n``). MIG uses all
    n; DCI and SAP train on the first 2/3 and test on the rest; FactorVAE and BetaVAE draw
    ``votes`` (default n // 10) training points and votes // 2 evaluation points, each from a
    batch of ``batch_size`` examples with one factor fixed (the generator, else the examples
    held). Returns a flat dict of floats: mig, factorvae, factorvae_train, active_dims,
    dci_disentanglement, dci_completeness, dci_informativeness, sap, betavae, betavae_train.
    """
    factors = getattr(dataset, "factors", None)
    if factors is None:
        raise ConfigError(f"data set {getattr(dataset, 'name', '?')!r} has no ground-truth "
                          f"factors; use one made from known factors, e.g. dsprites or "
                          f"dsprites-small")
    if n < 6:
        raise ConfigError(f"disentanglement_scores n = {n}: use at least 6 examples (10,000 is "
                          f"usual)")
    encode = _encoder(model_encode)
    rng = np.random.default_rng(seed)
    sizes = factors.sizes
    if factors.observe is not None:
        v = (rng.random((n, len(sizes))) * np.asarray(sizes)).astype(np.int64)
        z = encode(factors.observe(v))
        sampler = grid_sampler(lambda idx: encode(factors.observe(idx)), sizes, seed + 1)
    else:
        x = np.concatenate([dataset.test_x.cpu().numpy(), dataset.train_x.cpu().numpy()])[:n]
        v = np.concatenate([factors.test, factors.train])[:n]
        z = encode(x)
        sampler = pool_sampler(z, v, seed + 1)
    cut = (2 * len(z)) // 3
    votes = votes or max(len(z) // 10, 2)
    scores = {"mig": mig(z, v, bins)["mig"]}
    scores.update(factor_vae_score(z, sampler, sizes, batch_size, votes, max(votes // 2, 1),
                                   seed=seed))
    d = dci(z[:cut], v[:cut], z[cut:], v[cut:], dci_model, seed)
    scores.update({k: d[k] for k in ("dci_disentanglement", "dci_completeness",
                                     "dci_informativeness")})
    scores["sap"] = sap(z[:cut], v[:cut], z[cut:], v[cut:])["sap"]
    scores.update(beta_vae_score(sampler, sizes, batch_size, votes, max(votes // 2, 1),
                                 seed=seed))
    return scores


__all__ = ["beta_vae_score", "dci", "disentanglement_scores", "factor_vae_score", "mig", "sap",
           "grid_sampler", "pool_sampler"]
