"""Which training points are labelled, unlabelled, or held out for validation.

``split_labels(y, labels=N, validation=V, num_classes=C, seed)`` draws (with a generator seeded
by ``seed``, so the split is a function of the data seed alone):

    validation  V points, uniformly at random: they keep their labels and select the epoch
    labelled    N points from the rest, balanced: N // C per class, and one more for the
                first N % C classes
    unlabelled  every other training point (its label is never used)

The three index sets are disjoint and cover the training set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrovae.runtime.errors import DataError


@dataclass
class LabelSplit:
    """Index tensors (int64) into the training set."""

    labelled: torch.Tensor
    unlabelled: torch.Tensor
    validation: torch.Tensor

    def to(self, device) -> LabelSplit:
        return LabelSplit(self.labelled.to(device), self.unlabelled.to(device),
                          self.validation.to(device))


def check_labels(y: torch.Tensor, num_classes: int, what: str) -> None:
    """Refuse, in one line, labels y outside 0..C-1: a negative one is no class (the data must
    be relabelled), one >= C asks for a larger num_classes."""
    if not y.numel():
        return
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise DataError(f"{what} must be in 0..{num_classes - 1} (model.num_classes = "
                        f"{num_classes}); label {low} found: a class is numbered from 0, so "
                        f"relabel the data")
    if high >= num_classes:
        raise DataError(f"{what} span {low}..{high} but model.num_classes = {num_classes} "
                        f"(labels must be in 0..{num_classes - 1}; label {high} found); set "
                        f"num_classes to the number of classes ({high + 1} or more)")


def split_labels(y: torch.Tensor | None, labels: int, validation: int, num_classes: int,
                 seed: int = 0) -> LabelSplit:
    """Split training labels y [N] into labelled / unlabelled / validation indices."""
    if y is None:
        raise DataError("a semi-supervised model needs the training labels, but this data set "
                        "has none; use mnist, digits or a .npz with y_train")
    y = y.cpu()
    n = y.shape[0]
    check_labels(y, num_classes, "the training labels")
    if validation + labels >= n:
        raise DataError(f"model.labels = {labels} plus model.validation = {validation} leave no "
                        f"unlabelled points among the {n} training points; lower them")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    held_out, rest = order[:validation], order[validation:]
    chosen = []
    for c in range(num_classes):
        want = labels // num_classes + (c < labels % num_classes)
        pool = rest[y[rest] == c]
        if pool.numel() < want:
            raise DataError(f"class {c} has only {pool.numel()} training points outside the "
                            f"validation split, fewer than the {want} labelled ones wanted; "
                            f"lower model.labels or model.validation")
        chosen.append(pool[torch.randperm(pool.numel(), generator=gen)[:want]])
    labelled = torch.cat(chosen).sort().values
    is_labelled = torch.zeros(n, dtype=torch.bool)
    is_labelled[labelled] = True
    unlabelled = rest[~is_labelled[rest]].sort().values
    return LabelSplit(labelled, unlabelled, held_out.sort().values)
