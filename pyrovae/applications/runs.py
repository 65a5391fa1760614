"""The run, data and output folder that every application works on.

Data specs (``resolve_data``) name the examples an application reads:

    test, train               the run's own split, restricted to its ``data.classes``
    test:all, train:all       the same split with every class (the excluded ones come back)
    CONFIG.toml[:train]       the [data] section of a config file (test split by default)
    NAME_OR_FILE[:train]      a data set (mnist, digits, a .npy/.npz file) with the run's
                              binarization and seed (test split by default)

The run's own data (the first two) are checked against the fingerprint the run recorded in
training (``pyrovae.data.fingerprint``): data that changed since are refused in one line. The
others are other data on purpose: ``read_data``'s record says which they are
(``data_sha256``) and whether they are the run's (``same_data_as_training``), and every
application puts both into its result.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from pyrovae.config import DataConfig, load_config
from pyrovae.runtime.errors import CheckpointError, DataError
from pyrovae.evaluation.evaluate import SPLITS, check_run_data, data_record, split_data
from pyrovae.runtime.files import writable_dir
from pyrovae.runtime.interface import check_data, data_view, input_dim
from pyrovae.runs import Run, load


def as_run(run, device: str = "cpu") -> Run:
    """A :class:`Run` from a Run or a run folder path."""
    if isinstance(run, Run):
        return run
    path = Path(run)
    if not (path / "config.toml").is_file():
        raise CheckpointError(f"'{path}' is not a run folder (no config.toml); give the --out "
                              f"folder of a `pyrovae train` run")
    return load(path, device=device)


def output_dir(run: Run, out=None) -> Path:
    """``out``, or the run's own folder; created if missing and proven writable (a read-only
    folder, a path under a file, ... is a one-line :class:`pyrovae.runtime.files.WriteError`)."""
    folder = Path(out) if out is not None else run.path
    if folder is None:
        raise CheckpointError("this run has no folder; pass out=DIR for the outputs")
    fix = ("make it writable, or choose another --out" if out is None
           else "choose another --out")
    return writable_dir(folder, "output folder", fix)


def device_of(run: Run) -> torch.device:
    return next(run.vae.parameters()).device


def _split_of(spec: str) -> tuple[str, str, bool]:
    """'SOURCE[:SPLIT|:all]' -> (source, split, all_classes)."""
    source, split, every = spec, "test", False
    if source in SPLITS:
        return "", source, False
    head, _, tail = spec.rpartition(":")
    if head and tail in SPLITS + ("all",):
        source = head
        split, every = (split, True) if tail == "all" else (tail, False)
        if source in SPLITS:
            return "", source, every
    return source, split, every


#: what to do when a run's own data changed since training
FIX = ("restore the data it was trained on (the same file and [data] settings), or pass "
       "--data FILE (data=) to use other data on purpose")


def own_data(run: Run, every: bool = False):
    """(the Dataset the run's [data] section gives, its record) after checking that they are
    the data it was trained on (``check_run_data``, one line when not); ``every``: with the
    classes the run excluded added back (data.classes = [])."""
    from pyrovae.data import read_source
    from pyrovae.data.dataset import dataset_of

    cfg = run.config.data
    raw = read_source(cfg)  # read once; the classes filter is applied after
    data = dataset_of(cfg, raw)
    record = check_run_data(run, data, FIX)
    if every and cfg.classes:
        data = dataset_of(replace(cfg, classes=()), raw)
    return data, record


def resolve_data(run: Run, spec: str = "test"):
    """(x [N, D] as the model sees it, labels [N] or None, the Dataset) for a data spec;
    the run's own data are refused in one line when they changed since training."""
    return read_data(run, spec)[:3]


def read_data(run: Run, spec: str = "test"):
    """:func:`resolve_data`'s (x, y, Dataset) and the data's record for a result:
    ``{"data_sha256", "same_data_as_training"}`` (``data_record``; for the run's own data,
    checked, the fingerprint of the data set it trained on, also for test:all)."""
    source, split, every = _split_of(spec)
    own = run.config.data
    if not source:
        dataset, record = own_data(run, every)
    elif every:
        raise DataError(f"data spec '{spec}': ':all' applies to the run's own data only "
                        f"(test:all or train:all)")
    elif source.endswith(".toml"):
        cfg = load_config(source).data
    else:
        from pyrovae.data import takes_image_options

        sized = ({"image_size": own.image_size, "image_channels": own.image_channels}
                 if takes_image_options(source) else {})  # the run's image size, if it can
        cfg = DataConfig(name=source, binarize=own.binarize, seed=own.seed, path=own.path,
                         **sized)
    if source:
        from pyrovae.data import load_dataset

        dataset = load_dataset(cfg)
        record = data_record(run, dataset)
    data = data_view(run.vae, dataset).to(device_of(run))  # as the model reads it
    x = split_data(data, split, seed=run.config.train.seed)
    y = data.test_y if split == "test" else data.train_y
    wanted = input_dim(run.vae)
    if wanted is not None and x.shape[1] != wanted:
        raise DataError(f"data '{spec}' has {x.shape[1]} values per example but the run's "
                        f"model takes {wanted}; use data of the kind it was trained on")
    check_data(run.vae, x, f"data '{spec}'")
    return x, y, data, {"data": spec, **record}


def grey_levels(data, spec: str):
    """The grey levels [N, D] that a binarized split of ``spec`` was drawn from (the pixel
    probabilities), or None when the data are not binarized."""
    if data.binarize == "none":
        return None
    return data.test_x if _split_of(spec)[1] == "test" else data.train_x
