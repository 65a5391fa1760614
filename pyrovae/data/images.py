"""Folders of image files (PNG, JPEG, BMP): ``data.name = "images"``, ``data.path = DIR``.

Layouts of DIR (labels as torchvision's ``ImageFolder`` gives them: the index of the class
folder's name in sorted order)::

    DIR/*.png                        flat: no labels
    DIR/<class>/**/*.png             one sub-folder per class: labels
    DIR/train/..., DIR/test/...      each side flat or by class: that split; otherwise the
                                     images are split 90/10 by ``data.seed``

Every image becomes ``data.image_channels`` channels (1 = greyscale, 3 = RGB, 0 = greyscale
when every file is grey, else RGB; an alpha channel is dropped, 16-bit grey is scaled to 8 bits)
and ``data.image_size`` pixels (bilinear, with antialiasing, to exactly [H, W]); without an
image_size all images must have one size. The result is one uint8 array [N, C, H, W] (later
divided by 255, and flattened to [N, C*H*W] with ``Dataset.shape = (C, H, W)``), filled in
place: the files are read twice, headers (sizes, modes) first, then pixels, so that a bad size
is refused before anything is decoded. Files and folders whose names start with "." are
skipped. A folder of 1,000 files or more shows a progress bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrovae.runtime import memory
from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import DATASETS
from pyrovae.data.sources import RawData, _split

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
PROGRESS_MIN = 1000   # files from which reading shows a progress bar
TEST_FRACTION = 0.1   # of a folder without train/ and test/
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N")
SIZE_FIX = "set data.image_size = [height, width] to resize them all to one size"


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in SUFFIXES and _visible(p)


def _images_under(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (any depth), sorted by path; hidden ones skipped."""
    return sorted(p for p in folder.rglob("*") if _is_image(p)
                  and all(_visible(q) for q in p.relative_to(folder).parents if q.name))


def scan(folder: Path) -> tuple[list[Path], list[str] | None]:
    """The image files of one folder and, in the class layout, their class names (else None):
    flat images, or one sub-folder per class."""
    if not folder.is_dir():
        raise DataError(f"'{folder}' is not a folder of images; set data.path to the folder "
                        f"holding them")
    direct = sorted(p for p in folder.iterdir() if _is_image(p))
    classes = {d.name: _images_under(d) for d in sorted(folder.iterdir())
               if d.is_dir() and _visible(d)}
    classes = {name: files for name, files in classes.items() if files}
    if direct and classes:
        raise DataError(f"'{folder}' holds images ({direct[0].name}, ...) beside class "
                        f"folders ({', '.join(list(classes)[:3])}); move the images into a "
                        f"class folder, or the class folders out")
    if classes:
        return ([f for files in classes.values() for f in files],
                [name for name, files in classes.items() for _ in files])
    if not direct:
        others = sum(1 for p in folder.rglob("*") if p.is_file())
        raise DataError(f"no PNG, JPEG or BMP images in '{folder}' ({others} other files); put "
                        f"the images there, flat or one sub-folder per class")
    return direct, None


def _open(path: Path):
    from PIL import Image

    try:
        return Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read the image {path} ({err}); it is corrupt or not an "
                        f"image: replace or delete it") from None


def _is_grey(img) -> bool:
    if img.mode in GREY_MODES:
        return True
    if img.mode == "P":  # a palette of greys only
        palette = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        return bool((palette == palette[:, :1]).all())
    return False


def _progress(n: int, what: str):
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=what, unit="file", disable=True if n < PROGRESS_MIN else None,
                dynamic_ncols=True)


def target_size(image_size) -> tuple[int, int] | None:
    """data.image_size as (H, W): [S] means S x S, [] None."""
    if not image_size:
        return None
    return (image_size[0], image_size[0]) if len(image_size) == 1 else tuple(image_size)


def _to_mode(img, channels: int):
    """A PIL image as "L" (channels 1) or "RGB" (3); 16-bit grey scaled to 8 bits."""
    from PIL import Image

    if img.mode.startswith("I"):  # 16-bit grey (I;16...) or 32-bit I holding 16-bit values
        grey = np.clip(np.round(np.asarray(img, dtype=np.float64) / 257), 0, 255)
        img = Image.fromarray(grey.astype(np.uint8))
    return img.convert("L" if channels == 1 else "RGB")


def _pixels(img, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """[C, H, W] uint8 of one image, converted to ``channels`` and resized to ``size``."""
    from PIL import Image

    img = _to_mode(img, channels)
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


def read_images(files: list[Path], image_size=(), channels: int = 0,
                what: str = "images") -> np.ndarray:
    """The images in ``files`` as one uint8 array [N, C, H, W]."""
    size = target_size(image_size)
    grey, first = True, None
    with _progress(len(files), f"scanning {what}") as bar:
        for f in files:
            with _open(f) as img:
                h, w = img.size[1], img.size[0]
                grey = grey and (channels != 0 or _is_grey(img))
            if first is None:
                first = (f, h, w)
            elif size is None and (h, w) != first[1:]:
                raise DataError(f"the image {f} is {h} x {w} (height x width) but {first[0]} is "
                                f"{first[1]} x {first[2]}; {SIZE_FIX}")
            bar.update(1)
    c = channels or (1 if grey else 3)
    h, w = size or first[1:]
    shape = (len(files), c, h, w)
    memory.check_bytes(memory.array_bytes(shape, 1) * (1 + 3 * memory.FLOAT),
                       f"loading {len(files)} images of {c} x {h} x {w}",
                       "set a smaller data.image_size or use fewer images", error=DataError)
    out = np.empty(shape, dtype=np.uint8)
    with _progress(len(files), f"reading {what}") as bar:
        for i, f in enumerate(files):
            with _open(f) as img:
                try:
                    out[i] = _pixels(img, c, size)
                except (OSError, SyntaxError, ValueError) as err:
                    raise DataError(f"cannot read the image {f} ({err}); it is truncated or "
                                    f"corrupt: replace or delete it") from None
            bar.update(1)
    return out


def _label_ids(names: list[str] | None, classes: list[str]) -> np.ndarray | None:
    if names is None:
        return None
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[n] for n in names], dtype=np.int64)


def read_image_folder(path: str, seed: int = 0, image_size=(), channels: int = 0) -> RawData:
    """A folder of images (module docstring) as uint8 [N, C, H, W] arrays and int64 labels."""
    if not path:
        raise DataError("data.name = \"images\" needs data.path = the folder of images")
    root = Path(path)
    if not root.exists():
        raise DataError(f"data.path '{path}' does not exist; set it to the folder of images")
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        (train, train_names), (test, test_names) = scan(train_dir), scan(test_dir)
        if (train_names is None) != (test_names is None):
            flat = train_dir if train_names is None else test_dir
            raise DataError(f"'{flat}' holds images without class folders but the other split "
                            f"has them; use one layout for train/ and test/")
        classes = sorted(set(train_names or ()) | set(test_names or ()))
        x = read_images(train + test, image_size, channels)
        return RawData(x[:len(train)], x[len(train):], _label_ids(train_names, classes),
                       _label_ids(test_names, classes))
    files, names = scan(root)
    if len(files) < 2:
        raise DataError(f"'{root}' holds 1 image; a train/test split needs at least 2")
    x = read_images(files, image_size, channels)
    return _split(x, _label_ids(names, sorted(set(names or ()))), seed, TEST_FRACTION)


def fit_images(x: np.ndarray, image_size=(), channels: int = 0) -> np.ndarray:
    """uint8 images [N, H, W], [N, H, W, C] or [N, C, H, W] (C = 1 or 3) -> [N, C', H', W']
    with ``channels`` (0 = as they are) and ``image_size`` (empty = as they are)."""
    from PIL import Image

    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = np.moveaxis(x, -1, 1)
    size = target_size(image_size)
    c = channels or x.shape[1]
    if size is None and c == x.shape[1]:
        return x
    h, w = size or x.shape[2:]
    out = np.empty((len(x), c, h, w), dtype=np.uint8)
    mode = "L" if x.shape[1] == 1 else "RGB"
    with _progress(len(x), "resizing images") as bar:
        for i, img in enumerate(x):
            pil = Image.fromarray(img[0] if mode == "L" else np.moveaxis(img, 0, -1), mode)
            out[i] = _pixels(pil, c, size)
            bar.update(1)
    return out


def fit_raw(raw: RawData, image_size=(), channels: int = 0) -> RawData:
    """:func:`fit_images` on the train and test images of ``raw`` (labels unchanged)."""
    if not image_size and not channels:
        return raw
    return RawData(fit_images(raw.x_train, image_size, channels),
                   fit_images(raw.x_test, image_size, channels), raw.y_train, raw.y_test)


@DATASETS.register("images", path="required", images=True,
                   layout="the images (flat, one sub-folder per class, or train/ and test/ "
                          "of those)")
def _images(cfg) -> RawData:
    return read_image_folder(cfg.path, cfg.seed, cfg.image_size, cfg.image_channels)
