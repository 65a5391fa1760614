"""Keep freed memory in the process while a loop allocates the same large tensors over and over.

On CPU, torch gets each tensor from the C library's malloc. glibc serves a request above its
mmap threshold (128 KiB, raised as the process frees such blocks, to at most 32 MiB) with a
fresh mmap, and returns it to the system on free; the next chunk's tensor is then a new
mapping whose every 4 KiB page faults on first touch. An importance-sampled evaluation draws
chunks of [S, B, D] tensors (S = 213 particles x 100 points x 784 pixels = 67 MB at the
default 512 MB budget), so it pays that for every tensor of every chunk: on the 2-core machine
of docs/performance.md, 141 million page faults and 24 % of the CPU time in the kernel over a
VampPrior NLL with K = 5000 on 10,000 images.

:func:`reuse_freed_memory` turns glibc's mmap off (``M_MMAP_MAX = 0``) and keeps freed memory at
the top of the heap (``M_TRIM_THRESHOLD``) for the duration, so each chunk reuses the previous
chunk's pages; on leaving it restores glibc's defaults and returns what is free to the system
(``malloc_trim``). The peak memory is that of one chunk, as before. Elsewhere (macOS, musl, a
C library without ``mallopt``) it does nothing. Nested uses act once, at the outermost.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4          # glibc's mallopt parameters (malloc.h)
DEFAULT_TRIM_THRESHOLD = 128 * 1024            # glibc's defaults, restored on leaving
DEFAULT_MMAP_MAX = 65536
KEEP = 2 ** 31 - 1                             # "never trim" (mallopt takes an int)

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc():
    """glibc's handle, or None where the C library is another (no mallopt/malloc_trim, or
    ``gnu_get_libc_version`` missing)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    needed = ("mallopt", "malloc_trim", "gnu_get_libc_version")
    return libc if all(hasattr(libc, name) for name in needed) else None


def _set(libc, mmap_max: int, trim: int) -> bool:
    return bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))


@contextlib.contextmanager
def reuse_freed_memory():
    """Within the block, freed memory stays in the process for the next allocation (module
    docstring); a no-op where the C library is not glibc."""
    global _depth
    libc = _glibc()
    with _lock:
        _depth += 1
        active = libc is not None and (_depth > 1 or _set(libc, 0, KEEP))
    try:
        yield active
    finally:
        with _lock:
            _depth -= 1
            if libc is not None and _depth == 0:
                _set(libc, DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
