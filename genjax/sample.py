"""Images from a run's newest checkpoint.

    python -m genjax.sample --workdir=DIR --num=N --seed=S --out=FILE.npz

writes N images (uint8, NHWC) as the array `images` of FILE.npz. The same seed and
checkpoint give the same bytes. From a notebook: `genjax.sample_from_workdir(DIR, N, S)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from genjax import config as config_lib
from genjax import data, tasks, viz
from genjax.checkpoint import Checkpoints
from genjax.errors import CheckpointError, GenjaxError


def load_run(workdir, step: int | None = None):
    """(config, task, host state) of a run's checkpoint (the newest unless `step`)."""
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{workdir} has no config.json: it is not a genjax workdir. "
                              "Pass the --workdir that train.py used.")
    config = config_lib.from_json(config_path.read_text())
    checkpoints = Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        step = checkpoints.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{workdir}/checkpoints holds no finished checkpoint yet. "
                                  "Train first (python train.py ... --workdir=this dir).")
        saved = checkpoints.metadata(step)["dataset"]
        meta = data.DatasetMeta(**{**saved, "image_shape": tuple(saved["image_shape"])})
        task = tasks.make(config, meta)
        target = jax.eval_shape(task.init, config.seed)
        state, _, _ = checkpoints.restore(step, target)
    finally:
        checkpoints.close()
    return config, task, state


def sample_from_workdir(workdir, num: int, seed: int = 0, step: int | None = None) -> np.ndarray:
    """`num` generated images, uint8 NHWC, from the run's newest checkpoint."""
    _, task, state = load_run(workdir, step)
    images = task.sample(state, jax.random.key(seed), num)
    return viz.to_uint8(images)


def main(argv=None) -> None:
    from absl import app, flags, logging

    flags.DEFINE_string("workdir", None, "The run's workdir (as given to train.py).")
    flags.DEFINE_integer("num", 64, "How many images.")
    flags.DEFINE_integer("seed", 0, "Seed of the noise; same seed, same images.")
    flags.DEFINE_string("out", None, "Output .npz file (array 'images', uint8 NHWC).")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
    flags.mark_flags_as_required(["workdir", "out"])
    FLAGS = flags.FLAGS

    def run(_):
        logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
        try:
            images = sample_from_workdir(FLAGS.workdir, FLAGS.num, FLAGS.seed, FLAGS.step)
        except GenjaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        out = Path(FLAGS.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, images=images)
        print(f"Wrote {images.shape[0]} images {images.shape[1:]} to {out}")

    app.run(run, argv)


if __name__ == "__main__":
    main()
