"""Lossless compression of discrete data with a trained VAE (bits-back ANS, ``bbans.py``; a
hierarchy of latent layers by Bit-Swap, ``bitswap.py``) into
a file that fails safe (``container.py``); docs/compression.md.

    compress(run, x, out=None, latent_bits=8, batch_size=100) -> stats
        x [N, ...] with prod(...) = D values per example on the likelihood's grid ({0, 1} for
        bernoulli, k/255 for discretized-logistic; integer dtypes hold k itself)
        stats: bits (all words written, the initial clean words included), bits_per_dim =
        bits / (N D), ideal_bits (sum over images of -log2 P(x|c_j) - log2 P(j) + log2 Q(j|x),
        from the float64 probabilities), initial_bits, images, seconds, images_per_second
    decompress(run, path) -> x, bit for bit, in its shape and dtype

    A hierarchy (Bit-Swap) codes on a grid per latent layer, equal mass under the layer's
    aggregate posterior, estimated from the run's training data (``grids.py``; seeded) and
    stored in the file; stats add grid_bits (its size in the file), grid_seconds and
    file_bits_per_dim (the whole file: header, grid, words and checksum).

    compress(run, x, out, lossy_step=S)   the lossy codec (``lossy.py``): the posterior mean
        quantised with step S, coded under the prior on that grid; decompress gives
        E[x | z = k S], float32 in the data's shape (docs/compression.md)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pyrovae.applications.compression import bbans, bitswap, container, grids, lossy
from pyrovae.applications.runs import as_run
from pyrovae.config.fields import COUNT, POSITIVE, check_number
from pyrovae.runtime.errors import ConfigError, DataError
from pyrovae.runtime.interface import has
from pyrovae.runtime.traces import eval_mode

__all__ = ["compress", "decompress", "encode_array", "decode_array", "encode_lossy",
           "decode_lossy"]


def _settings(codec: bbans.BitsBack, batch_size: int, words: int) -> dict:
    kind = "bitswap" if isinstance(codec, bitswap.BitSwap) else "bbans"
    extra = codec.grid_settings() if isinstance(codec, bitswap.BitSwap) else {}
    return {"codec": kind, "batches": "ramp", "latent_bits": codec.latent_bits,
            "batch_size": batch_size,
            "initial_words": words, "likelihood": codec.name, **extra}


def _examples(x, dim) -> np.ndarray:
    """x [N, ...] (a tensor or array) as a NumPy array, refused in one line when it is empty
    or its examples do not have the model's D = ``dim`` values."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise DataError("no examples to compress; give an array [N, ...] with N >= 1")
    if dim is not None and int(np.prod(arr.shape[1:], dtype=np.int64)) != dim:
        raise DataError(f"the data have {int(np.prod(arr.shape[1:]))} values per example but "
                        f"the run's model takes {dim}; use data of the kind it was trained on")
    return arr


GRIDS = ("aggregate", "normal")


def _grid(model, grid: str, grid_x, x_values) -> grids.Grid | None:
    """The latent grid of a hierarchy: "aggregate" estimated from ``grid_x`` [N, D] (the
    training data; None: the data being coded, ``x_values``), "normal" None (N(0, 1))."""
    if grid not in GRIDS:
        raise ConfigError(f"grid = {grid!r} is not one of {', '.join(GRIDS)}; \"aggregate\" "
                          f"matches each layer's aggregate posterior")
    if not has(model, "hierarchy") or grid == "normal":
        return None
    data = x_values if grid_x is None else torch.as_tensor(grid_x, dtype=torch.float32)
    return grids.estimate(model, data.reshape(len(data), -1))


def encode_array(model, x, latent_bits: int = 8, batch_size: int = 100,
                 progress: bool = False, grid_x=None, grid: str = "aggregate"
                 ) -> tuple[dict, np.ndarray, dict]:
    """(header, payload words [W] uint32, stats) of x [N, ...] under ``model``; a hierarchy
    on the ``grid`` of :func:`_grid` (from ``grid_x``, the training data, when given)."""
    batch_size = check_number(batch_size, "batch_size", COUNT)
    codec = bitswap.codec_for(model, latent_bits)
    dim = codec.input_dim()
    arr = _examples(x, dim)
    idx = codec.symbols(arr.reshape(arr.shape[0], dim))
    start = time.perf_counter()
    with eval_mode(model), torch.no_grad():
        latent_grid = _grid(model, grid, grid_x, codec.levels[torch.from_numpy(idx).long()])
    grid_seconds = time.perf_counter() - start
    if latent_grid is not None:
        codec = bitswap.codec_for(model, latent_bits, latent_grid)
    first = bbans.batches(len(idx), batch_size)[0]
    words = bbans.default_initial_words(first[1] - first[0], codec.latent_dim, latent_bits)
    start = time.perf_counter()
    with eval_mode(model), torch.no_grad(), \
            tqdm(total=len(idx), desc="compress", unit="img", disable=not progress) as bar:
        payload, ideal = bbans.encode(codec, idx, batch_size, words, bar)
    seconds = time.perf_counter() - start
    header = {**container.identity(model, _settings(codec, batch_size, words)),
              "shape": list(arr.shape), "dtype": arr.dtype.str, "count": int(len(idx)),
              "latent_bits": codec.latent_bits, "batch_size": batch_size,
              "initial_words": words}
    if latent_grid is not None:
        header["grid"] = latent_grid.to_header()
    bits, dims = 32 * int(payload.size), idx.size
    grid_bits = 8 * len(json.dumps(header.get("grid", {}))) if latent_grid is not None else 0
    stats = {"bits": bits, "bits_per_dim": bits / dims, "ideal_bits": ideal,
             "grid_bits": grid_bits, "grid_seconds": grid_seconds,
             "file_bits_per_dim": 8 * len(container.pack(header, payload)) / dims,
             "ideal_bits_per_dim": ideal / dims, "initial_bits": 32 * words,
             "net_bits_per_dim": (bits - 32 * words) / dims, "images": int(len(idx)),
             "dims": int(dims), "seconds": seconds,
             "images_per_second": len(idx) / max(seconds, 1e-9)}
    return header, payload, stats


def decode_array(model, header: dict, payload: np.ndarray, progress: bool = False,
                 what: str = "the file") -> np.ndarray:
    """x of :func:`encode_array`'s header and payload, in its shape and dtype."""
    latent_grid = grids.Grid.from_header(header["grid"], what) if "grid" in header else None
    claimed = header.get("settings", {}).get("grid_sha256")
    if (latent_grid.sha256() if latent_grid is not None else None) != claimed:
        raise DataError(f"{what} has a latent grid that does not match its fingerprint "
                        f"(tampered with); compress the data again")
    codec = bitswap.codec_for(model, int(header["latent_bits"]), latent_grid)
    words, batch = int(header["initial_words"]), int(header["batch_size"])
    container.check_identity(header, container.identity(model, _settings(codec, batch, words)),
                             what)
    count = int(header["count"])
    with eval_mode(model), torch.no_grad(), \
            tqdm(total=count, desc="decompress", unit="img", disable=not progress) as bar:
        idx = bbans.decode(codec, payload, count, batch, words, bar)
    dtype = np.dtype(header["dtype"])
    return codec.grid(dtype)[idx].reshape(header["shape"])


def encode_lossy(model, x, step: float, batch_size: int = 100) -> tuple[dict, np.ndarray, dict]:
    """(header, payload words [W] uint32, stats) of the lossy code of x [N, ...] (values in
    [0, 1]; an integer array holds k of k/255) with quantisation step ``step``."""
    step = check_number(step, "step", POSITIVE)
    batch_size = check_number(batch_size, "batch_size", COUNT)
    dim = getattr(model, "input_dim", None)
    arr = _examples(x, None if dim is None else int(dim))
    flat = arr.reshape(arr.shape[0], -1)
    flat = flat / 255.0 if np.issubdtype(arr.dtype, np.integer) else flat
    start = time.perf_counter()
    payload, coded = lossy.encode_latents(model, torch.as_tensor(flat, dtype=torch.float32),
                                          step, batch_size)
    seconds = time.perf_counter() - start
    settings = {"codec": "lossy", "step": float(step), "batch_size": batch_size}
    header = {**container.identity(model, settings), "shape": list(arr.shape),
              "dtype": "<f4", "count": coded.count, "latent_dim": coded.latent_dim}
    stats = {**coded.as_dict(), "codec": "lossy", "bits_per_dim": coded.bits_per_pixel,
             "images": coded.count, "seconds": seconds,
             "images_per_second": coded.count / max(seconds, 1e-9)}
    return header, payload, stats


def decode_lossy(model, header: dict, payload: np.ndarray, what: str = "the file") -> np.ndarray:
    """E[x | z = k S] [N, ...] float32 of :func:`encode_lossy`'s header and payload."""
    settings = header.get("settings", {})
    container.check_identity(header, container.identity(model, settings), what)
    x = lossy.decode_latents(model, payload, settings["step"], int(header["count"]),
                             int(header["latent_dim"]), int(settings["batch_size"]))
    return x.numpy().astype(np.float32).reshape(header["shape"])


def compress(run, x, out=None, latent_bits: int = 8, batch_size: int = 100,
             force: bool = False, progress: bool = False, lossy_step: float | None = None,
             grid: str = "aggregate") -> dict:
    """Compress x [N, ...] with the run's model; write ``out`` (atomically, an existing file
    only with ``force``) when given. Returns the stats of the module docstring (+ ``bytes``,
    ``file``). ``lossy_step`` = S: the lossy codec instead (``lossy.py``). A hierarchy's
    ``grid`` ("aggregate", or "normal": N(0, 1) buckets) is estimated from the run's training
    split."""
    run = as_run(run)
    if out is not None:
        container.refuse_existing(out, force)
    if lossy_step is not None:
        header, payload, stats = encode_lossy(run.model, x, lossy_step, batch_size)
    else:
        grid_x = None
        if has(run.model, "hierarchy") and grid == "aggregate":
            from pyrovae.applications.runs import read_data

            grid_x = read_data(run, "train")[0]
        header, payload, stats = encode_array(run.model, x, latent_bits, batch_size, progress,
                                              grid_x, grid)
    if out is not None:
        stats["bytes"] = container.write(out, header, payload, force=force)
        stats["file"] = str(out)
    return stats


def decompress(run, path, progress: bool = False) -> torch.Tensor:
    """The data of a file written by :func:`compress`, bit for bit (shape and dtype); of a
    lossy file, the decoded E[x | z = k S] (float32, the data's shape)."""
    run = as_run(run)
    header, payload = container.read(path)
    if header.get("settings", {}).get("codec") == "lossy":
        x = decode_lossy(run.model, header, payload, f"'{Path(path)}'")
    else:
        x = decode_array(run.model, header, payload, progress, f"'{Path(path)}'")
    return torch.from_numpy(np.ascontiguousarray(x))
