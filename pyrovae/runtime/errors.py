"""User-facing errors.

Every problem caused by the user's input (data, config, files, device) raises a subclass of
:class:`PyroVAEError` whose message names the problem and the fix in one line. The CLI prints
that line and exits with status 2; anything else is a bug and keeps its traceback, except an
allocation that failed (:func:`out_of_memory`): sizes too large for the memory there is, which
the CLI also reports in one line naming the sizes to lower.
"""

import errno
import sys

#: what allocators say when memory runs out (lower case): torch's CPU allocator ("can't
#: allocate memory", "not enough memory"), CUDA/MPS ("out of memory"), C++ and the OS
OUT_OF_MEMORY_TEXT = ("can't allocate memory", "not enough memory", "out of memory",
                      "cannot allocate memory", "std::bad_alloc", "failed to allocate memory")


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err``, or an exception it was raised from or while handling, is an allocation
    that failed: a MemoryError (numpy's included), an OSError ENOMEM, torch's OutOfMemoryError
    (CUDA), or a RuntimeError with an allocator's message (torch's "DefaultCPUAllocator: can't
    allocate memory", also when Pyro re-raises it with the trace's shapes)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, MemoryError):
            return True
        if isinstance(err, OSError) and err.errno == errno.ENOMEM:
            return True
        oom_type = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
        if oom_type is not None and isinstance(err, oom_type):
            return True
        if isinstance(err, RuntimeError) and any(t in str(err).lower()
                                                 for t in OUT_OF_MEMORY_TEXT):
            return True
        err = err.__cause__ or err.__context__
    return False


class PyroVAEError(Exception):
    """Base class of errors caused by bad input rather than by a bug."""


class ConfigError(PyroVAEError, ValueError):
    """An unknown key, a bad value or an impossible combination in a config."""


class DataError(PyroVAEError, ValueError):
    """A data set that is missing, unreadable, or does not fit the model."""


class CheckpointError(PyroVAEError):
    """A checkpoint or run folder that cannot be read, or would be overwritten."""


class DeviceError(PyroVAEError):
    """A device that this machine does not have."""


class DistributedError(PyroVAEError):
    """Data-parallel training or evaluation cannot go on: a process died or stopped answering
    (a collective timed out), or the launch does not fit the run (batch not divisible by the
    number of processes, NCCL without a GPU)."""
