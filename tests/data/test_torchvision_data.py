"""torchvision's on-disk data sets and the binarized MNIST .amat files, read from tiny files
written here in each format (pyrovae/data/torchvision_sets.py, amat.py): never downloaded."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pyrovae import load_dataset
from pyrovae.runtime.registry import DATASETS

from tests.support.one_line import data_error

RNG = np.random.default_rng(0)


def unit(x) -> np.ndarray:
    return np.asarray(x, np.float32).reshape(len(x), -1) / np.float32(255)


def test_every_source_is_registered():
    assert {"mnist", "fashion-mnist", "kmnist", "emnist-balanced", "emnist-letters", "cifar10",
            "svhn", "omniglot", "binarized-mnist", "images", "digits"} <= set(DATASETS)
    assert set(DATASETS.where(path="required")) >= {"cifar10", "svhn", "omniglot", "images"}


# ------------------------------------------------------------------------------ idx files


def idx(path, x: np.ndarray, gz=False):
    head = struct.pack(">I", 0x800 + x.ndim) + struct.pack(f">{x.ndim}I", *x.shape)
    blob = head + x.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob) if gz else blob)


def idx_folder(root, folder, train="train", test="t10k", n=(6, 3), gz=False):
    raw, arrays = root / folder / "raw", {}
    for prefix, k in ((train, n[0]), (test, n[1])):
        x, y = RNG.integers(0, 256, (k, 28, 28)), RNG.integers(0, 10, k)
        suffix = "-ubyte.gz" if gz else "-ubyte"
        idx(raw / f"{prefix}-images-idx3{suffix}", x, gz)
        idx(raw / f"{prefix}-labels-idx1{suffix}", y, gz)
        arrays[prefix] = (x, y)
    return arrays


@pytest.mark.parametrize("name, folder", [("kmnist", "KMNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_sets(tmp_path, name, folder):
    arrays = idx_folder(tmp_path, folder, gz=name == "kmnist")
    data = load_dataset(name, path=str(tmp_path))
    assert data.shape == (1, 28, 28) and data.num_train == 6
    assert np.array_equal(data.train_x.numpy(), unit(arrays["train"][0]))
    assert data.test_y.tolist() == arrays["t10k"][1].tolist()


def test_emnist_split_is_transposed_upright(tmp_path):
    arrays = idx_folder(tmp_path, "EMNIST", "emnist-letters-train", "emnist-letters-test")
    data = load_dataset("emnist-letters", path=str(tmp_path / "EMNIST"))
    stored = arrays["emnist-letters-train"][0]
    assert np.array_equal(data.train_x.numpy(), unit(stored.transpose(0, 2, 1)))
    data_error(load_dataset, "emnist-digits", path=str(tmp_path),
               match=(str(tmp_path / "EMNIST" / "raw" / "emnist-digits-train-images-idx3-ubyte"),
                      "data.path"))


def test_idx_resize_and_channels(tmp_path):
    arrays = idx_folder(tmp_path, "MNIST")
    small = load_dataset("mnist", path=str(tmp_path), image_size=(14,), image_channels=3)
    assert small.shape == (3, 14, 14)
    view = small.train_x.view(-1, 3, 14, 14)
    assert torch.equal(view[:, 0], view[:, 2])  # grey replicated into RGB
    ref = np.asarray(Image.fromarray(arrays["train"][0][0].astype(np.uint8)).resize(
        (14, 14), Image.Resampling.BILINEAR), np.float32) / np.float32(255)
    assert np.array_equal(view[0, 1].numpy(), ref)


def test_a_torchvision_folder_missing_a_file(tmp_path):
    idx_folder(tmp_path, "KMNIST")
    gone = tmp_path / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    gone.unlink()
    data_error(load_dataset, "kmnist", path=str(tmp_path),
               match=(str(gone), "data.path", "downloaded KMNIST into"))
    data_error(load_dataset, "kmnist", match=('data.name = "kmnist" needs data.path',
                                              "nothing is downloaded"))


# --------------------------------------------------------------------------------- CIFAR-10


def cifar_folder(root, n=2, protocol=4):
    folder, batches = root / "cifar-10-batches-py", {}
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = RNG.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "labels": y, "data": x,
                         "filenames": [f"{i}.png" for i in range(n)]}, fh, protocol=protocol)
        batches[name] = (x, y)
    return folder, batches


@pytest.mark.parametrize("protocol", [3, 4])
def test_cifar10(tmp_path, protocol):
    folder, batches = cifar_folder(tmp_path, protocol=protocol)
    data = load_dataset("cifar10", path=str(tmp_path))
    assert data.shape == (3, 32, 32) and data.num_train == 10 and data.test_x.shape[0] == 2
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(data.train_x.numpy(), unit(train))  # rows: R plane, G, B (32 x 32)
    assert data.test_y.tolist() == batches["test_batch"][1]
    assert torch.equal(load_dataset("cifar10", path=str(folder)).test_x, data.test_x)
    grey = load_dataset("cifar10", path=str(tmp_path), image_channels=1, image_size=(16, 16))
    assert grey.shape == (1, 16, 16)


def test_cifar10_errors(tmp_path):
    folder, _ = cifar_folder(tmp_path)
    (folder / "data_batch_3").unlink()
    data_error(load_dataset, "cifar10", path=str(tmp_path),
               match=(str(folder / "data_batch_3"), "point data.path"))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    data_error(load_dataset, "cifar10", path=str(tmp_path), match=("tar xzf",))
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    data_error(load_dataset, "cifar10", path=str(tmp_path),
               match=(str(folder / "data_batch_3"), "truncated or corrupt"))
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}, fh, protocol=4)
    data_error(load_dataset, "cifar10", path=str(tmp_path), match=("not a CIFAR-10 batch",))
    with open(folder / "data_batch_3", "wb") as fh:  # a pickle that would run code
        pickle.dump({"data": os.system}, fh, protocol=4)
    data_error(load_dataset, "cifar10", path=str(tmp_path), match=("refusing", "posix.system"))


# ------------------------------------------------------------------------------------- SVHN


def test_svhn(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    written = {}
    for name, n in (("train_32x32.mat", 5), ("test_32x32.mat", 3)):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [10]][:n], dtype=np.uint8)
        scipy_io.savemat(tmp_path / name, {"X": x, "y": y})
        written[name] = x
    data = load_dataset("svhn", path=str(tmp_path))
    assert data.shape == (3, 32, 32) and data.num_train == 5
    assert data.train_y.tolist() == [0, 1, 2, 3, 0]  # SVHN's label 10 is the digit 0
    first = data.train_x[0].view(3, 32, 32).numpy()
    stored = np.moveaxis(written["train_32x32.mat"][..., 0], -1, 0)  # [32, 32, 3] -> [3, 32, 32]
    assert np.array_equal(first, stored / np.float32(255))
    (tmp_path / "test_32x32.mat").unlink()
    data_error(load_dataset, "svhn", path=str(tmp_path), match=(str(tmp_path / "test_32x32.mat"),))
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB garbage")
    data_error(load_dataset, "svhn", path=str(tmp_path), match=("truncated or corrupt",))


def test_svhn_without_scipy(tmp_path, monkeypatch):
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    data_error(load_dataset, "svhn", path=str(tmp_path), match=("needs scipy", "pip install scipy"))


# --------------------------------------------------------------------------------- Omniglot


def omniglot_folder(root, side, alphabets, size=(12, 12)):
    for alphabet, characters in alphabets.items():
        for c in range(characters):
            for k in range(2):
                path = root / "omniglot-py" / side / alphabet / f"character{c + 1:02d}" / f"{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                bits = RNG.integers(0, 2, size, dtype=np.uint8) * 255
                Image.fromarray(bits).convert("1").save(path)


def test_omniglot_background_trains_evaluation_tests(tmp_path):
    omniglot_folder(tmp_path, "images_background", {"Greek": 2, "Latin": 1})
    omniglot_folder(tmp_path, "images_evaluation", {"Atlantean": 2})
    data = load_dataset("omniglot", path=str(tmp_path))
    assert data.shape == (1, 12, 12) and data.num_train == 6 and data.test_x.shape[0] == 4
    assert data.train_y.tolist() == [0, 0, 1, 1, 2, 2] and data.test_y.tolist() == [3, 3, 4, 4]
    assert set(np.unique(data.train_x.numpy())) <= {0.0, 1.0}
    small = load_dataset("omniglot", path=str(tmp_path / "omniglot-py"), image_size=(6,))
    assert small.shape == (1, 6, 6)
    evaluation = tmp_path / "omniglot-py" / "images_evaluation"
    evaluation.rename(tmp_path / "elsewhere")
    data_error(load_dataset, "omniglot", path=str(tmp_path), match=(str(evaluation), "data.path"))
    (tmp_path / "omniglot-py" / "images_evaluation.zip").write_bytes(b"")
    data_error(load_dataset, "omniglot", path=str(tmp_path), match=("unzip",))


# ----------------------------------------------------------------- binarized MNIST (.amat)


def amat(path, x: np.ndarray):
    path.write_text("".join(" ".join(str(int(v)) for v in row) + "\n" for row in x))


def amat_folder(root, n=(4, 2, 3)):
    arrays = []
    for name, k in zip(("train", "valid", "test"), n):
        x = RNG.integers(0, 2, (k, 784))
        amat(root / f"binarized_mnist_{name}.amat", x)
        arrays.append(x)
    return arrays


def test_binarized_mnist(tmp_path):
    train, valid, test = amat_folder(tmp_path)
    data = load_dataset("binarized-mnist", path=str(tmp_path))
    assert data.shape == (1, 28, 28) and data.binarize == "none" and data.train_y is None
    assert np.array_equal(data.train_x.numpy(), np.concatenate([train, valid]).astype(np.float32))
    assert np.array_equal(data.test_data().numpy(), test.astype(np.float32))
    assert load_dataset("binarized-mnist", path=str(tmp_path), train_size=4).num_train == 4


def test_binarized_mnist_errors(tmp_path):
    amat_folder(tmp_path)
    data_error(load_dataset, "binarized-mnist", binarize="dynamic", path=str(tmp_path),
               match=("already binarized", 'binarize = "none"'))
    data_error(load_dataset, "binarized-mnist", match=("needs data.path", "binarized_mnist_test"))
    test = tmp_path / "binarized_mnist_test.amat"
    lines = test.read_text().splitlines()
    test.write_text("\n".join(lines[:2] + [lines[2][:-2]]) + "\n")
    data_error(load_dataset, "binarized-mnist", path=str(tmp_path),
               match=(str(test), "line 3 has 783 values", "truncated"))
    test.write_text(lines[0].replace("0", "2", 1) + "\n")
    data_error(load_dataset, "binarized-mnist", path=str(tmp_path),
               match=(str(test), "line 1", "not values 0 or 1"))
    test.write_text(lines[0].replace(" ", "", 1) + "\n")
    data_error(load_dataset, "binarized-mnist", path=str(tmp_path), match=("not values 0 or 1",))
    test.unlink()
    data_error(load_dataset, "binarized-mnist", path=str(tmp_path),
               match=(str(test), "larocheh"))
