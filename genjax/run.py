"""A trained run, loaded back: what notebooks, CLIs and evaluators use.

    config, task, state = genjax.load_run('runs/dcgan')

`load_run` rebuilds the task from the workdir's config.json (validated against its
task's schema) and the dataset shapes saved with the checkpoint, then restores the state
into that task's shapes. Runs written by earlier versions of genjax load the same way:
the saved state is a plain dict of arrays keyed by field names, and the schema of each
task only grows (configs saved before a field existed lack it, which is valid).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from genjax import config as config_lib
from genjax import tasks, viz
from genjax.checkpoint import Checkpoints
from genjax.data.pipeline import DatasetMeta
from genjax.errors import CheckpointError


def load_run(workdir, step: int | None = None):
    """(config, task, host state) of a run's checkpoint (the newest unless `step`)."""
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{workdir} has no config.json: it is not a genjax workdir. "
                              "Pass the --workdir that train.py used.")
    config = tasks.complete(config_lib.from_json(config_path.read_text()))
    tasks.validate(config)
    checkpoints = Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        step = checkpoints.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{workdir}/checkpoints holds no finished checkpoint yet. "
                                  "Train first (python train.py ... --workdir=this dir).")
        saved = checkpoints.metadata(step)["dataset"]
        meta = DatasetMeta(**{**saved, "image_shape": tuple(saved["image_shape"])})
        task = tasks.make(config, meta)
        target = jax.eval_shape(task.init, config.seed)
        state, _, _ = checkpoints.restore(step, target)
    finally:
        checkpoints.close()
    return config, task, state


def sample_from_workdir(workdir, num: int, seed: int = 0, step: int | None = None) -> np.ndarray:
    """`num` generated images, uint8 NHWC, from the run's newest checkpoint (its task's
    `sample` function: a GAN's or a VAE's)."""
    _, task, state = load_run(workdir, step)
    images = task.sample(state, jax.random.key(seed), num)
    return viz.to_uint8(images)


def sample_conditioned_from_workdir(workdir, *, labels=None, per_class: int | None = None,
                                    seed: int = 0, step: int | None = None
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 NHWC, labels int32 [N]) from a conditional run's checkpoint: one image
    of each class in `labels` (a sequence of ints), or `per_class` images of every class
    (0, ..., 0, 1, ..., K-1), through its task's `sample_conditioned(state, key, labels)`.
    The noise is drawn from jax.random.key(seed), so the same (seed, labels, checkpoint)
    give the same bytes."""
    from genjax.errors import ConfigError

    if (labels is None) == (per_class is None):
        raise ConfigError("Ask for classes either one by one (--labels=3,3,7) or per class "
                          "(--per_class=100), not both and not neither.")
    if per_class is not None and per_class < 1:
        raise ConfigError(f"--per_class must be at least 1, got {per_class}.")
    config, task, state = load_run(workdir, step)
    if "sample_conditioned" not in task.functions:
        raise ConfigError(
            f"{workdir} holds a {config.task!r} run, which is not conditional: it cannot "
            "make images of requested classes. Drop --labels/--per_class (and use --num), or "
            "pass the workdir of a conditional run (e.g. configs/cgan.py).")
    num_classes = int(task.num_classes)
    if per_class is not None:
        labels = np.repeat(np.arange(num_classes), per_class)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if labels.size == 0:
        raise ConfigError("No labels given: pass at least one class, e.g. --labels=3,3,7.")
    bad = sorted({int(y) for y in labels if not 0 <= y < num_classes})
    if bad:
        raise ConfigError(
            f"Label(s) {bad} out of range: this run's dataset {config.dataset.name!r} has "
            f"{num_classes} classes, 0 to {num_classes - 1}.")
    labels = labels.astype(np.int32)
    images = task.sample_conditioned(state, jax.random.key(seed), labels)
    return viz.to_uint8(images), labels
