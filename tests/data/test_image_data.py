"""Folders of image files (pyrovae/data/images.py): layouts, labels, channels, resizing, the
train/test split, the one-line errors for bad folders, and a CLI run on a tiny folder."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch
from PIL import Image

from pyrovae import DataConfig, load_dataset
from pyrovae.cli import main
from pyrovae.data import images
from pyrovae.runtime.errors import ConfigError

from tests.support.one_line import data_error

RNG = np.random.default_rng(0)


def write(path, pixels: np.ndarray, fmt: str | None = None):
    """Save uint8 pixels [H, W] (grey) or [H, W, 3] (RGB) as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return pixels


def grey(h=6, w=5):
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def rgb(h=6, w=5):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def rows(t) -> list:
    return sorted(tuple(r) for r in np.asarray(t).tolist())


def as_rows(pixels_list) -> list:
    return rows(np.stack([np.asarray(p, np.float32).reshape(-1) / np.float32(255)
                          for p in pixels_list]))


# --------------------------------------------------------------------------------- layouts


def test_flat_folder_of_grey_pngs_split_90_10_by_seed(tmp_path):
    pics = [write(tmp_path / f"img{i:02d}.png", grey()) for i in range(20)]
    a = load_dataset("images", path=str(tmp_path))
    assert a.shape == (1, 6, 5) and a.dim == 30 and a.train_y is None
    assert a.num_train == 18 and a.test_x.shape == (2, 30)
    assert rows(torch.cat([a.train_x, a.test_x])) == as_rows(pics)  # exact: PNG is lossless
    again, other = load_dataset("images", path=str(tmp_path)), load_dataset(
        "images", path=str(tmp_path), seed=3)
    assert torch.equal(again.test_x, a.test_x) and not torch.equal(other.test_x, a.test_x)


def test_class_folders_give_labels_in_sorted_order(tmp_path):
    by_class = {"zebra": [grey() for _ in range(4)], "ant": [grey() for _ in range(6)]}
    for name, pics in by_class.items():
        for i, p in enumerate(pics):
            write(tmp_path / name / ("deeper" if i == 0 else "") / f"{i}.png", p)
    data = load_dataset("images", path=str(tmp_path), seed=1)
    x = torch.cat([data.train_x, data.test_x]).numpy()
    y = torch.cat([data.train_y, data.test_y]).numpy()
    assert data.train_y.dtype == torch.int64 and sorted(y.tolist()) == [0] * 6 + [1] * 4
    for label, name in enumerate(["ant", "zebra"]):  # ImageFolder's rule: sorted names
        assert rows(x[y == label]) == as_rows(by_class[name])


def test_train_and_test_folders_are_the_split(tmp_path):
    train = {c: [grey() for _ in range(3)] for c in ("cat", "dog")}
    test = {c: [grey() for _ in range(2)] for c in ("dog", "emu")}  # emu only in test
    for side, classes in (("train", train), ("test", test)):
        for c, pics in classes.items():
            for i, p in enumerate(pics):
                write(tmp_path / side / c / f"{i}.png", p)
    data = load_dataset("images", path=str(tmp_path))
    assert data.num_train == 6 and data.test_x.shape[0] == 4
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1] and data.test_y.tolist() == [1, 1, 2, 2]
    assert rows(data.test_x) == as_rows(test["dog"] + test["emu"])
    flat = tmp_path / "flat"
    for side in ("train", "test"):
        for i in range(2):
            write(flat / side / f"{i}.png", grey())
    assert load_dataset("images", path=str(flat)).num_train == 2


def test_a_folder_given_as_data_name_is_read_as_images(tmp_path):
    for i in range(4):
        write(tmp_path / f"{i}.png", grey())
    a = load_dataset(str(tmp_path))
    b = load_dataset("images", path=str(tmp_path))
    assert torch.equal(a.train_x, b.train_x) and a.shape == (1, 6, 5)


# ------------------------------------------------------------------------ formats, colour


def test_rgb_png_bmp_and_jpeg(tmp_path):
    pics = [write(tmp_path / "a.png", rgb()), write(tmp_path / "b.bmp", rgb()),
            write(tmp_path / "c.png", rgb())]
    data = load_dataset("images", path=str(tmp_path), seed=0)
    assert data.shape == (3, 6, 5)
    x = torch.cat([data.train_x, data.test_x]).view(-1, 3, 6, 5).numpy()
    chw = [np.moveaxis(p, -1, 0) for p in pics]  # images[n, c, h, w] == pixels[h, w, c]
    assert rows(x.reshape(3, -1)) == as_rows(chw)
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    write(tmp_path / "jpeg" / "d.JPG", np.stack([smooth] * 3, -1), fmt="JPEG")
    write(tmp_path / "jpeg" / "e.jpeg", smooth, fmt="JPEG")
    jpeg = load_dataset("images", path=str(tmp_path / "jpeg"))  # one grey, one colour: RGB
    assert jpeg.shape == (3, 16, 16)
    got = torch.cat([jpeg.train_x, jpeg.test_x]).view(2, 3, 16, 16).numpy() * 255
    assert np.abs(got - smooth).max() < 12  # lossy, but the same picture


def test_channels_mixed_and_forced(tmp_path):
    g, c = write(tmp_path / "g.png", grey()), write(tmp_path / "c.png", rgb())
    as_rgb = load_dataset("images", path=str(tmp_path), test_size=1, train_size=1)
    assert as_rgb.shape == (3, 6, 5)  # any colour image: all RGB, grey ones replicated
    x = torch.cat([as_rgb.train_x, as_rgb.test_x]).view(2, 3, 6, 5).numpy()
    replicated = np.stack([g] * 3) / np.float32(255)
    assert any(np.array_equal(xi, replicated.astype(np.float32)) for xi in x)
    one = load_dataset("images", path=str(tmp_path), image_channels=1)
    assert one.shape == (1, 6, 5)
    luma = np.asarray(Image.fromarray(c).convert("L"), np.float32) / np.float32(255)
    ours = torch.cat([one.train_x, one.test_x]).view(2, 6, 5).numpy()
    assert any(np.array_equal(xi, luma) for xi in ours)
    assert load_dataset("images", path=str(tmp_path), image_channels=3).shape == (3, 6, 5)


def test_sixteen_bit_grey_and_grey_palette(tmp_path):
    deep = (RNG.integers(0, 256, (4, 4)) * 257).astype(np.uint16)  # 16-bit k * 257 -> byte k
    Image.fromarray(deep).save(tmp_path / "deep.png")
    pal = Image.fromarray(grey(4, 4)).convert("P")
    pal.save(tmp_path / "pal.png")
    data = load_dataset("images", path=str(tmp_path))
    assert data.shape == (1, 4, 4)  # a palette of greys is grey
    values = torch.cat([data.train_x, data.test_x]).numpy() * 255
    assert any(np.allclose(v, deep.reshape(-1) / 257, atol=1e-3) for v in values)


def test_image_size_resizes_and_mixed_sizes_need_it(tmp_path):
    write(tmp_path / "small.png", grey(6, 5))
    write(tmp_path / "big.png", grey(12, 10))
    msg = data_error(load_dataset, "images", path=str(tmp_path),
                     match=("small.png", "6 x 5", "12 x 10", "data.image_size"))
    assert "big.png" in msg
    data = load_dataset("images", path=str(tmp_path), image_size=(4, 3))
    assert data.shape == (1, 4, 3)
    assert load_dataset("images", path=str(tmp_path), image_size=(7,)).shape == (1, 7, 7)
    flat = np.full((12, 10), 200, np.uint8)  # a constant image stays constant when resized
    write(tmp_path / "c" / "one.png", flat)
    write(tmp_path / "c" / "two.png", flat)
    same = load_dataset("images", path=str(tmp_path / "c"), image_size=(3, 3))
    assert torch.allclose(same.train_x, torch.full((1, 9), 200 / 255))


def test_image_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="data.image_size = \\[1, 2, 3\\]"):
        DataConfig(name="images", image_size=(1, 2, 3))
    with pytest.raises(ConfigError, match="data.image_channels = 2 is not one of"):
        DataConfig(name="images", image_channels=2)
    np.save(tmp_path / "x.npy", np.zeros((10, 4, 4), np.uint8))
    data_error(load_dataset, str(tmp_path / "x.npy"), image_size=(2, 2),
               match=("data.image_size and data.image_channels apply to image sources", "x.npy"))
    data_error(load_dataset, "digits", image_channels=3, match=("'digits'",))


# ---------------------------------------------------------------------------------- errors


def test_corrupt_and_truncated_images_are_named(tmp_path):
    for i in range(3):
        write(tmp_path / f"{i}.png", grey())
    bad = tmp_path / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a picture")
    data_error(load_dataset, "images", path=str(tmp_path),
               match=(str(bad), "corrupt or not an image", "replace or delete it"))
    write(bad, grey(6, 5))
    big = tmp_path / "2.png"
    write(big, RNG.integers(0, 256, (6, 5), dtype=np.uint8))
    blob = big.read_bytes()
    big.write_bytes(blob[:len(blob) - 30])
    data_error(load_dataset, "images", path=str(tmp_path), match=(str(big), "corrupt"))


def test_empty_missing_and_mixed_folders(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("hi")
    data_error(load_dataset, "images", path=str(empty),
               match=("no PNG, JPEG or BMP images", str(empty), "1 other files"))
    data_error(load_dataset, "images", path=str(tmp_path / "nope"),
               match=("does not exist", str(tmp_path / "nope")))
    data_error(load_dataset, "images", match=('data.name = "images" needs data.path',))
    mixed = tmp_path / "mixed"
    write(mixed / "loose.png", grey())
    write(mixed / "cls" / "a.png", grey())
    data_error(load_dataset, "images", path=str(mixed), match=("loose.png", "class folder"))
    write(tmp_path / "one" / "a.png", grey())
    data_error(load_dataset, "images", path=str(tmp_path / "one"), match=("at least 2",))


def test_hidden_files_and_other_files_are_skipped(tmp_path):
    for i in range(3):
        write(tmp_path / f"{i}.png", grey())
    (tmp_path / "._0.png").write_bytes(b"AppleDouble junk")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "labels.csv").write_text("a,b\n")
    data = load_dataset("images", path=str(tmp_path))
    assert data.num_train + data.test_x.shape[0] == 3


def test_progress_bar_for_large_folders(tmp_path, monkeypatch):
    import tqdm.auto

    seen = []

    class Recorder(tqdm.auto.tqdm):
        def __init__(self, *a, **k):
            seen.append((k["desc"], k["disable"]))
            super().__init__(*a, **{**k, "disable": True})

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    monkeypatch.setattr(images, "PROGRESS_MIN", 3)
    for i in range(3):
        write(tmp_path / f"{i}.png", grey())
    load_dataset("images", path=str(tmp_path))
    assert seen == [("scanning images", None), ("reading images", None)]  # None: on a tty
    seen.clear()
    monkeypatch.setattr(images, "PROGRESS_MIN", 4)
    load_dataset("images", path=str(tmp_path))
    assert [d for _, d in seen] == [True, True]


# ---------------------------------------------------------------------------- end to end


def test_cli_trains_on_a_folder_of_rgb_images(tmp_path, capsys, one_thread):
    for c in ("a", "b"):
        for i in range(12):
            write(tmp_path / "pics" / c / f"{i}.png", rgb(10, 12))
    config = tmp_path / "images.toml"
    config.write_text(f"""
[model]
latent_dim = 2
network = "conv"
channels = [4]
likelihood = "discretized-logistic"
elbo = "meanfield"

[data]
name = "images"
path = "{tmp_path / 'pics'}"
binarize = "none"
image_size = [8, 8]

[train]
epochs = 1
batch_size = 8
progress = false
""")
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.split("\nrun written")[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_train"] == 22 and metrics["num_test"] == 2
    assert metrics["test_bpd"] == pytest.approx(-metrics["test_elbo"] / (3 * 8 * 8 * np.log(2)))
    assert printed["test_bpd"] == metrics["test_bpd"]
    saved = tomllib.loads((out / "config.toml").read_text())["data"]
    assert saved["image_size"] == [8, 8] and saved["image_channels"] == 0
    assert list(saved)[-2:] == ["image_size", "image_channels"]  # appended: old key order kept
