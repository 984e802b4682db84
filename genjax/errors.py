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
