"""The data a class-conditioned CVAE sees: each example followed by its one-hot class.

``with_labels(data, C)`` wraps a :class:`pyrovae.Dataset` so that ``train_data(epoch, seed)``
and ``test_data()`` return [N, D + C]: the examples exactly as the plain data set gives them
(binarized the same way, by the same draws) and then onehot(y). The examples themselves
(``train_x``, ``test_x``, ``shape``) are unchanged, so the data's fingerprint, the pictures'
shape and the binarization are those of the plain data set. Every command that hands a run's
data to its model goes through ``CVAE.data_view`` (``pyrovae.runtime.interface.data_view``), which
returns this view for ``condition = "label"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from pyrovae.runtime import memory
from pyrovae.data import Dataset
from pyrovae.runtime.errors import DataError


@dataclass
class LabelledInputs(Dataset):
    """A :class:`Dataset` whose rows, as the model sees them, end in the one-hot class."""

    num_classes: int = 10

    def _with(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, F.one_hot(y.to(x.device), self.num_classes).to(x.dtype)], dim=-1)

    def train_data(self, epoch: int = 0, seed: int = 0) -> torch.Tensor:
        return self._with(super().train_data(epoch, seed), self.train_y)

    def test_data(self) -> torch.Tensor:
        return self._with(super().test_data(), self.test_y)


def with_labels(data: Dataset, num_classes: int) -> LabelledInputs:
    """``data`` as a class-conditioned model sees it (module docstring); refuses, in one line,
    a data set without labels or with labels outside 0..C-1."""
    from pyrovae.kinds.ssvae.labels import check_labels  # (here: no kind imports another first)

    if isinstance(data, LabelledInputs):
        if data.num_classes != num_classes:
            raise DataError(f"these data carry {data.num_classes} classes but the model takes "
                            f"{num_classes}")
        return data
    for split, y in (("training", data.train_y), ("test", data.test_y)):
        if y is None:
            raise DataError(f"model.condition = \"label\" needs the class of every example, but "
                            f"the {split} data of '{data.name}' have no labels; use mnist, "
                            f"digits or a .npz with y_train and y_test, or condition = "
                            f"\"quadrants\"")
        check_labels(y, num_classes, f"the {split} labels of '{data.name}'")
    rows = max(len(data.train_x), len(data.test_x))  # one split's view is made at a time
    memory.check_bytes(rows * (memory.FLOAT * data.train_x[0].numel() + 12 * num_classes),
                       f"the one-hot classes of model.num_classes = {num_classes} beside "
                       f"{rows} examples", "lower model.num_classes to the number of classes "
                       "of the data")
    fields = {f: getattr(data, f) for f in data.__dataclass_fields__}
    fields.pop("num_classes", None)
    return LabelledInputs(**fields, num_classes=num_classes)
