"""The ground-truth factors of a data set made from known factors (e.g. ``dsprites``), kept with
its :class:`~pyrovae.data.dataset.Dataset` as ``dataset.factors`` so that the disentanglement
metrics (``pyrovae.evaluation.disentanglement``) can read them.

Shapes, with K factors, N training and M test examples::

    names    K names, e.g. ("shape", "scale", "orientation", "posX", "posY")
    values   K arrays: values[k][i] is the value that index i of factor k stands for
    sizes    K counts, len(values[k])
    train    [N, K] int64 factor indices of the training examples, row for row
    test     [M, K] int64 factor indices of the test examples
    observe  optional: factor indices [n, K] -> examples x [n, D] float32, as the data set
             holds them (a generator); the metrics that fix one factor and draw the others
             (FactorVAE, BetaVAE) need it, or else draw from the examples held
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Factors:
    """Factor names, the values of each factor's indices, and the indices of every example."""

    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    train: np.ndarray
    test: np.ndarray
    observe: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def sizes(self) -> tuple[int, ...]:
        """How many values each factor takes: K ints."""
        return tuple(len(v) for v in self.values)

    def values_of(self, indices: np.ndarray) -> np.ndarray:
        """Factor indices [n, K] -> factor values [n, K] float64."""
        indices = np.asarray(indices)
        return np.stack([np.asarray(self.values[k], dtype=np.float64)[indices[:, k]]
                         for k in range(len(self.names))], axis=1)

    def take(self, train_rows: np.ndarray, test_rows: np.ndarray) -> Factors:
        """The factors of the examples kept (rows of train and of test)."""
        return replace(self, train=self.train[train_rows], test=self.test[test_rows])


def kept_rows(n: int, labels, classes, limit: int) -> np.ndarray:
    """The rows of n examples that ``data.classes`` (labels in ``classes``; all when empty) and
    ``data.train_size``/``test_size`` (the first ``limit``; all when 0) keep, in order."""
    rows = np.arange(n)
    if classes and labels is not None:
        rows = rows[np.isin(np.asarray(labels), np.asarray(classes))]
    return rows[:limit] if limit else rows
