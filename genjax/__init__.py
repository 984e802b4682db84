"""genjax: deep generative models of images as pure JAX/Flax functions."""

from genjax.errors import (CheckpointError, CheckpointSaveError, ConfigError,
                           CorruptCheckpointError, GenjaxError, NonFiniteError, Preempted)
from genjax.loop import train_and_evaluate

__all__ = ["train_and_evaluate", "sample_from_workdir", "load_run", "GenjaxError", "ConfigError",
           "CheckpointError", "CorruptCheckpointError", "CheckpointSaveError", "NonFiniteError",
           "Preempted"]


def __getattr__(name):
    # Imported lazily so that `python -m genjax.sample` does not find its own module
    # already imported by the package (runpy warns about that).
    if name in ("sample_from_workdir", "load_run"):
        from genjax import sample
        return getattr(sample, name)
    raise AttributeError(f"module 'genjax' has no attribute {name!r}")
