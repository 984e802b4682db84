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
