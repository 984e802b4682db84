"""genjax: deep generative models of images as pure JAX/Flax functions."""

from genjax.errors import CheckpointError, ConfigError, GenjaxError
from genjax.loop import train_and_evaluate

__all__ = ["train_and_evaluate", "sample_from_workdir", "GenjaxError", "ConfigError",
           "CheckpointError"]


def __getattr__(name):
    # Imported lazily so that `python -m genjax.sample` does not find its own module
    # already imported by the package (runpy warns about that).
    if name == "sample_from_workdir":
        from genjax.sample import sample_from_workdir
        return sample_from_workdir
    raise AttributeError(f"module 'genjax' has no attribute {name!r}")
