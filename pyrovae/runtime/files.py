"""Writing files so that a crash never leaves a half-written one behind, and a failed write
(disk full, read-only folder, a path under a file) is one clear error, not a traceback.

Every file pyrovae writes goes through :func:`atomic_write` (JSON, CSV, PNG, checkpoints):
the bytes go to a temporary ``.NAME.XXXXXXXX.tmp`` beside ``NAME`` (:data:`TEMP_PATTERN`),
are flushed and fsync'ed, then renamed over ``NAME``. A failure leaves ``NAME`` as it was,
removes the temporary file and raises :class:`WriteError`; a process killed with SIGKILL in
the middle of a write leaves only the temporary file, which :func:`stale_temp_files` finds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

from pyrovae.runtime.errors import PyroVAEError

#: the temporary files of :func:`atomic_write` (``tempfile.mkstemp``'s 8 random characters)
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")

#: what to do about a failed write (the CLI's commands take ``--out``)
WRITE_FIX = "free space or make the folder writable, or write elsewhere (--out)"


class WriteError(PyroVAEError, OSError):
    """A file or folder could not be written (disk full, read-only, not a folder, permission).

    Also an :class:`OSError` (``errno``, ``strerror``, ``filename`` = the file that was to be
    written), so code that catches OSError keeps working; its message is one line naming the
    path, the system's reason and the fix."""

    def __init__(self, message: str, path, err: OSError):
        OSError.__init__(self, err.errno, err.strerror or str(err), str(path))
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # (pickling, e.g. across processes)
        return (_rebuild_write_error, (self.message, self.filename, self.errno, self.strerror))


def _rebuild_write_error(message, path, errno_, strerror):
    return WriteError(message, path, OSError(errno_, strerror))


def reason(err: OSError) -> str:
    """The system's one-line reason for ``err`` (e.g. 'No space left on device'), also out of
    the long messages of libraries such as HDF5 (``... error message = '...' ...``)."""
    text = " ".join(str(err.strerror or err).split()) or type(err).__name__
    found = re.search(r"error message = '([^']+)'", text)
    return found[1] if found else (text if len(text) <= 160 else text[:157] + "...")


def write_error(path: str | Path, err: OSError, fix: str = WRITE_FIX) -> WriteError:
    """The :class:`WriteError` for a failed write of ``path`` (nothing was overwritten)."""
    if isinstance(err, WriteError):
        return err
    return WriteError(f"could not write '{path}' ({reason(err)}); nothing was overwritten: "
                      f"{fix}", path, err)


def writable_dir(folder: str | Path, what: str = "output folder",
                 fix: str = "choose another --out") -> Path:
    """Create ``folder`` if missing and prove that files can be created in it; otherwise
    raise a one-line :class:`WriteError` (``what`` names the folder in the message)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"{what} '{folder}' is a file, not a folder; {fix}", folder,
                         OSError(20, "Not a directory"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise WriteError(f"cannot write to {what} '{folder}': {reason(err)}; {fix}", folder,
                         err) from None
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode of every output file: 0666 less the process's umask, as ``open()`` creates a
    file (``tempfile.mkstemp``, behind the atomic writes, makes 0600 ones)."""
    return 0o666 & ~_umask()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``.

    Readers see either the old file or the whole new one; if writing fails (disk full, no
    permission, a missing folder) the old file is left as it was, the temporary file is
    removed, and :class:`WriteError` (an OSError) names ``path`` and the fix."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(path, err) from err
    try:
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600 files; honour the umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise


def stale_temp_files(folder: str | Path, names=None) -> list[Path]:
    """The temporary files that :func:`atomic_write` left in ``folder`` (a process killed in
    the middle of a write), optionally only those of files whose name matches one of the
    glob patterns ``names``. Nothing else: only ``.NAME.XXXXXXXX.tmp`` regular files."""
    import fnmatch

    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = TEMP_PATTERN.match(entry.name)
        if not match or not entry.is_file() or entry.is_symlink():
            continue
        if names is None or any(fnmatch.fnmatchcase(match["name"], p) for p in names):
            found.append(entry)
    return sorted(found)


def write_json(path: str | Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Rows as CSV with a header line: every key of any row, in the order first met (a row
    without a key leaves its cell empty, e.g. history.csv's test_objective once beta is 1)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def read_csv(path: str | Path) -> list[dict]:
    """CSV rows with numbers parsed back to int/float where they look like numbers."""
    def parse(v):
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v

    with open(path, newline="") as fh:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]
