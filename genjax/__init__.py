"""genjax: deep generative models of images as pure JAX/Flax functions."""

from genjax.errors import (CheckpointError, CheckpointSaveError, ConfigError,
                           CorruptCheckpointError, GenjaxError, NonFiniteError, Preempted)

__all__ = ["train_and_evaluate", "sample_from_workdir", "load_run", "GenjaxError", "ConfigError",
           "CheckpointError", "CorruptCheckpointError", "CheckpointSaveError", "NonFiniteError",
           "Preempted"]


def __getattr__(name):
    # Imported lazily: `import genjax.tasks.gan` (a notebook, bench/, a GPU box) then needs
    # only JAX, flax, optax and ml_collections, not the input pipeline or TensorBoard; and
    # `python -m genjax.sample` does not find its own module already imported (runpy warns).
    if name == "train_and_evaluate":
        from genjax.loop import train_and_evaluate
        return train_and_evaluate
    if name in ("sample_from_workdir", "load_run"):
        from genjax import run
        return getattr(run, name)
    raise AttributeError(f"module 'genjax' has no attribute {name!r}")
