"""The compressed file (``.pvz``): a format that fails safe.

    offset  size  field
    0       8     magic b"PYVAEZ1\\0"
    8       2     format version, uint16 little-endian: 1, or 2 when the header holds a
                  Bit-Swap latent grid (``grid``: per-layer knots, grids.py)
    10      4     header length H, uint32 little-endian
    14      H     header: UTF-8 JSON {fingerprint, weights_sha256, torch, device, settings,
                  shape, dtype, count, latent_bits, batch_size, initial_words, words
                  [, grid]}
    14+H    4W    payload: the W ANS words, uint32 little-endian
    end-32  32    sha256 of everything before it

``fingerprint`` = sha256 of (the run's weights, the codec settings, the torch version, the
device type; the settings hold the grid's sha256 when there is one): decoding needs the very
probabilities encoding used, so a file is decoded only by the same model, settings (grid
included), torch build and device type. A reader of version 1 refuses a version-2 file as
newer; files without a grid stay version 1, readable by it. Reading refuses in one line a file
that is not of this format, of a newer version, truncated, corrupted, or of another model
(naming the torch version or device type when those differ).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch

from pyrovae.runtime.errors import DataError
from pyrovae.runtime.files import atomic_write

MAGIC = b"PYVAEZ1\0"
FORMAT_VERSION = 2  # the newest this reads; it reads 1 and 2
_FIXED = struct.Struct("<8sHI")
_DIGEST = 32


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict: each key, dtype, shape and the tensor's bytes, sorted."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy()
                 .tobytes())
    return h.hexdigest()


def identity(model: torch.nn.Module, settings: dict) -> dict:
    """What a file must match to be decoded by ``model``: its fingerprint and the parts."""
    device = next(model.parameters()).device.type
    weights = weights_sha256(model)
    text = json.dumps({"weights": weights, "settings": settings, "torch": torch.__version__,
                       "device": device}, sort_keys=True)
    return {"fingerprint": hashlib.sha256(text.encode()).hexdigest(), "weights_sha256": weights,
            "torch": torch.__version__, "device": device, "settings": settings}


def pack(header: dict, payload: np.ndarray) -> bytes:
    """The file's bytes for a header (JSON-able) and the payload words [W] uint32."""
    words = np.ascontiguousarray(payload, dtype="<u4")
    head = json.dumps({**header, "words": int(words.size)}, sort_keys=True).encode()
    version = 2 if "grid" in header else 1
    body = _FIXED.pack(MAGIC, version, len(head)) + head + words.tobytes()
    return body + hashlib.sha256(body).digest()


def write(path: str | Path, header: dict, payload: np.ndarray, force: bool = False) -> int:
    """Write atomically (never a half file); an existing ``path`` only with ``force``.
    Returns the file's size in bytes."""
    path = Path(path)
    refuse_existing(path, force)
    data = pack(header, payload)
    atomic_write(path, data)
    return len(data)


def refuse_existing(path: str | Path, force: bool) -> None:
    if Path(path).exists() and not force:
        raise DataError(f"'{path}' exists; pass --force (force=True) to overwrite it, or "
                        f"choose another -o")


def unpack(data: bytes, what: str = "file") -> tuple[dict, np.ndarray]:
    """(header, payload words [W] uint32) of a file's bytes; one line when it is not whole."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise DataError(f"{what} is not a pyrovae compressed file (wrong magic); give a file "
                        f"written by `pyrovae compress`")
    if len(data) < _FIXED.size + _DIGEST:
        raise DataError(f"{what} is truncated ({len(data)} bytes); compress the data again")
    _, version, head_len = _FIXED.unpack_from(data)
    if version > FORMAT_VERSION:
        raise DataError(f"{what} has format version {version}, newer than this pyrovae "
                        f"reads ({FORMAT_VERSION}); upgrade pyrovae")
    if version < 1:
        raise DataError(f"{what} has format version {version}, which no pyrovae writes (1 to "
                        f"{FORMAT_VERSION}); compress the data again")
    start = _FIXED.size + head_len
    if len(data) < start + _DIGEST:
        raise DataError(f"{what} is truncated ({len(data)} bytes, its header alone is "
                        f"{start}); compress the data again")
    try:
        header = json.loads(data[_FIXED.size:start].decode())
        words = int(header["words"])
    except (ValueError, KeyError, TypeError):
        header, words = None, -1
    expected = start + 4 * words + _DIGEST
    if header is not None and len(data) != expected:
        raise DataError(f"{what} is truncated or has extra bytes ({len(data)} bytes, its "
                        f"header says {expected}); compress the data again")
    if hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:] or header is None:
        raise DataError(f"{what} is corrupted (its sha256 checksum does not match); "
                        f"compress the data again")
    return header, np.frombuffer(data, dtype="<u4", count=words, offset=start).astype(np.uint32)


def read(path: str | Path) -> tuple[dict, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"'{path}' does not exist or is not a file; give a file written by "
                        f"`pyrovae compress`")
    return unpack(path.read_bytes(), f"'{path}'")


def check_identity(header: dict, mine: dict, what: str = "the file") -> None:
    """Refuse (one line) a file made by another model, settings, torch version or device."""
    if header.get("fingerprint") == mine["fingerprint"]:
        return
    differ = [f"{key} {header.get(key)!r} vs this {mine[key]!r}" for key in ("torch", "device")
              if header.get(key) != mine[key]]
    if header.get("weights_sha256") != mine["weights_sha256"]:
        differ.insert(0, "the model's weights differ")
    if not differ:
        differ = ["the codec settings differ"]
    raise DataError(f"{what} was compressed with another model ({'; '.join(differ)}); "
                    f"decompress it with the run, torch version and device type that made it")
