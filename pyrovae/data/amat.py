"""The statically binarized MNIST of Larochelle & Murray (2011): ``data.name =
"binarized-mnist"``, ``data.path`` = the folder holding its three files, for comparison with
the NLLs published on it (e.g. Burda et al. 2015, Tomczak & Welling 2018)::

    binarized_mnist_train.amat   50,000 lines     each line: 784 values 0 or 1, separated by
    binarized_mnist_valid.amat   10,000 lines     spaces, a 28 x 28 image row by row
    binarized_mnist_test.amat    10,000 lines

The training set is train then valid (60,000, in that order, as for ``mnist``;
``data.train_size = 50000`` keeps exactly the official training split), the test set the
10,000 test images; x is bool [N, 28, 28] (0/1 floats, ``Dataset.shape = (1, 28, 28)``), no
labels. The data are the fixed binarization itself, so ``data.binarize`` must be "none".
Nothing is downloaded; the files are at
http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import DATASETS
from pyrovae.data.sources import RawData

FILES = ("binarized_mnist_train.amat", "binarized_mnist_valid.amat",
         "binarized_mnist_test.amat")
URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
PIXELS = 784
_ZERO, _ONE, _NEWLINE = ord("0"), ord("1"), ord("\n")
_SPACE = np.frombuffer(b" \t\r\n", np.uint8)


def _line_of(a: np.ndarray, i: int) -> int:
    return int(np.count_nonzero(a[:i] == _NEWLINE)) + 1


def read_amat(path: Path) -> np.ndarray:
    """One .amat file of 0/1 values, 784 per line, as bool [N, 28, 28]."""
    try:
        a = np.frombuffer(path.read_bytes(), np.uint8)
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err})") from None
    digit = (a == _ZERO) | (a == _ONE)
    bad = ~digit & ~np.isin(a, _SPACE)
    bad[1:] |= digit[1:] & digit[:-1]  # "01", "11": one value of several digits
    if bad.any():
        i = int(np.argmax(bad))
        token = bytes(a[max(i - 1, 0):i + 2]).decode("latin1").strip()
        raise DataError(f"{path} line {_line_of(a, i)} holds {token!r}, not values 0 or 1 "
                        f"separated by spaces; it is not a binarized MNIST file: download "
                        f"{path.name} again from {URL}")
    ends = np.flatnonzero(a == _NEWLINE)
    if not len(a) or a[-1] != _NEWLINE:
        ends = np.append(ends, len(a))
    before = np.concatenate([[0], np.cumsum(digit)])  # before[i]: values in a[:i]
    counts = np.diff(before[ends], prepend=0)  # values on each line
    wrong = np.flatnonzero((counts != 0) & (counts != PIXELS))
    if len(wrong):
        raise DataError(f"{path} line {wrong[0] + 1} has {counts[wrong[0]]} values, not "
                        f"{PIXELS}; the file is truncated or corrupt: download {path.name} "
                        f"again from {URL}")
    return (a[digit] == _ONE).reshape(-1, 28, 28)


def read_binarized_mnist(path: str) -> RawData:
    """Larochelle & Murray's binarized MNIST: train + valid (60,000) and test (10,000)."""
    if not path:
        raise DataError(f"data.name = \"binarized-mnist\" needs data.path = the folder holding "
                        f"{', '.join(FILES)} (from {URL}; nothing is downloaded here)")
    folder = Path(path)
    arrays = []
    for name in FILES:
        if not (folder / name).is_file():
            raise DataError(f"no binarized MNIST file {folder / name}; put {', '.join(FILES)} "
                            f"(from {URL}) in data.path")
        arrays.append(read_amat(folder / name))
    train, valid, test = arrays
    return RawData(np.concatenate([train, valid]), test)


@DATASETS.register("binarized-mnist", path="required", binarize="none",
                   layout=", ".join(FILES))
def _binarized_mnist(cfg) -> RawData:
    return read_binarized_mnist(cfg.path)
