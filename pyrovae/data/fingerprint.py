"""A fingerprint of the data a run trains on, so resuming onto other data is refused.

``data_fingerprint(data)`` is the sha256 over the training and test tensors as the run sees
them (grey levels before any binarization, after ``classes``/``train_size``/``test_size``),
their labels, dtypes and shapes. It is computed once per ``train()`` call, recorded in the
checkpoint (``data_sha256``) and in metrics.json, and compared on ``resume``: the data config
(name, seed, binarization) says which file was read, the fingerprint says it still holds the
same numbers. Cost: one sha256 pass over the bytes, 0.13 s for MNIST's 70,000 x 784 floats
(220 MB) on one CPU core, against 2.2 s to load them.

Every command that reads a trained run's data checks it too (``check_fingerprint``, called
through ``pyrovae.evaluation.evaluate.check_run_data``): ``evaluate``, ``anomaly``,
``reconstruct``, ``impute``, ``latent-map``, ``interpolate``, ``traverse``, ``compare`` and
``reproduce`` refuse in one line a run whose data changed since training; other data asked
for on purpose (``--data FILE``) are named in the output (``data_sha256``,
``same_data_as_training``). A run trained before fingerprints existed is used as before, with
a one-line note.
"""

from __future__ import annotations

import hashlib

import torch

from pyrovae.runtime.errors import DataError
from pyrovae.data.dataset import Dataset


def tensor_digest(h, name: str, t: torch.Tensor | None) -> None:
    """Feed one named tensor (its dtype, shape and bytes; or its absence) into the hash ``h``."""
    if t is None:
        h.update(f"{name}:none;".encode())
        return
    t = t.detach().to("cpu").contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
    if t.numel():
        h.update(memoryview(t.view(torch.uint8).reshape(-1).numpy()))


def data_fingerprint(data: Dataset) -> str:
    """sha256 (hex) of the data set's tensors: train/test examples and labels, and the
    example shape."""
    h = hashlib.sha256(f"pyrovae-data-v1;{tuple(data.shape)};".encode())
    for name in ("train_x", "train_y", "test_x", "test_y"):
        tensor_digest(h, name, getattr(data, name))
    return h.hexdigest()


def short(sha: str) -> str:
    """The first 16 hex digits of a fingerprint, as messages show it."""
    return f"{sha[:16]}..."


def check_fingerprint(recorded: str | None, data: Dataset, sha: str, run: str, source: str,
                      fix: str, model_shape=None) -> None:
    """Refuse, in one line, the data ``data`` (fingerprint ``sha``, read from ``source``, e.g.
    ``data.name = 'x.npz'``) for the run ``run`` that recorded ``recorded``, when the two
    differ; ``fix`` says what to do; ``model_shape`` (the example shape the model was built
    for) names a change of shape. A run without a recorded fingerprint is not checked."""
    if not recorded or recorded == sha:
        return
    shape = ""
    if model_shape is not None and tuple(data.shape) != tuple(model_shape):
        shape = (f" (examples of shape {list(data.shape)}, where the model takes "
                 f"{list(model_shape)})")
    raise DataError(f"run '{run}' was trained on data with sha256 {short(recorded)} but its "
                    f"data ({source}) now give sha256 {short(sha)}{shape}: they changed since "
                    f"training; {fix}")
