"""Images from a run's newest checkpoint (or its best, or a given step).

    python -m genjax.sample --workdir=DIR --num=N --seed=S --out=FILE.npz [--checkpoint=best]

writes N images (uint8, NHWC) as the array `images` of FILE.npz. The same seed and
checkpoint give the same bytes. --checkpoint is 'latest' (default), 'best' (the step
with the best evaluation figure, which a run with eval_every_steps keeps) or a step.
From a notebook: `genjax.sample_from_workdir(DIR, N, S, step='best')` (`genjax.run`,
which this command line sits on).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from genjax.errors import GenjaxError
from genjax.run import parse_checkpoint, sample_from_workdir


def main(argv=None) -> None:
    from absl import app, flags, logging

    flags.DEFINE_string("workdir", None, "The run's workdir (as given to train.py).")
    flags.DEFINE_integer("num", 64, "How many images.")
    flags.DEFINE_integer("seed", 0, "Seed of the noise; same seed, same images.")
    flags.DEFINE_string("out", None, "Output .npz file (array 'images', uint8 NHWC).")
    flags.DEFINE_string("checkpoint", "latest", "Which checkpoint: 'latest' (the newest), "
                        "'best' (best evaluation figure, eval/best.json) or a step number.")
    flags.mark_flags_as_required(["workdir", "out"])
    FLAGS = flags.FLAGS

    def run(_):
        logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
        try:
            images = sample_from_workdir(FLAGS.workdir, FLAGS.num, FLAGS.seed,
                                         parse_checkpoint(FLAGS.checkpoint))
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
