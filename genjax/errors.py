"""Errors that genjax raises for user mistakes.

Each carries one paragraph naming the problem and the fix; `train.py` and the
command-line entry points print the message and exit non-zero without a traceback.
"""


class GenjaxError(Exception):
    """Base class of the errors a user can fix (bad config, missing data, bad workdir)."""


class ConfigError(GenjaxError, ValueError):
    """A config field is unknown, of the wrong type, or has an unsupported value."""


class CheckpointError(GenjaxError):
    """A workdir's checkpoints cannot be used (corrupt, incompatible, or missing)."""


class CorruptCheckpointError(CheckpointError):
    """One checkpoint step cannot be read back (truncated or missing files, bad values)."""


class CheckpointSaveError(CheckpointError):
    """Writing a checkpoint failed (disk full, read-only or vanished directory)."""


class NonFiniteError(GenjaxError):
    """Training stopped: too many consecutive updates had a non-finite loss or gradient."""


class DistributedError(GenjaxError):
    """A multi-process run cannot be set up as configured (flags, devices, the lock)."""


class Preempted(GenjaxError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; rerun to continue.

    `exit_code` is 128 + the signal number, the status a shell reports for a process
    that the signal ended, so schedulers that requeue preempted jobs recognise it.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
