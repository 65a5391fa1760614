"""User-facing errors.

Every problem caused by the user's input (data, config, files, device) raises a subclass of
:class:`PyroVAEError` whose message names the problem and the fix in one line. The CLI prints
that line and exits with status 2; anything else is a bug and keeps its traceback.
"""


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
