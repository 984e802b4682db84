"""Images from a run's newest checkpoint (or its best, or a given step).

    python -m genjax.sample --workdir=DIR --num=N --seed=S --out=FILE.npz [--checkpoint=best]

writes N images (uint8, NHWC) as the array `images` of FILE.npz. The same seed and
checkpoint give the same bytes. --checkpoint is 'latest' (default), 'best' (the step
with the best evaluation figure, which a run with eval_every_steps keeps) or a step.
From a notebook: `genjax.sample_from_workdir(DIR, N, S, step='best')` (`genjax.run`,
which this command line sits on).

A conditional run (one whose task has `sample_conditioned`, e.g. configs/cgan.py) makes
images of requested classes:

    python -m genjax.sample --workdir=runs/cgan --per_class=100 --out=FILE.npz
    python -m genjax.sample --workdir=runs/cgan --labels=3,3,7 --out=FILE.npz

which also writes `labels` (int32 [N], the requested classes, in the images' order;
--per_class gives 0, ..., 0, 1, ..., K-1). From a notebook:
`genjax.run.sample_conditioned_from_workdir(DIR, labels=[3, 3, 7], seed=S)`.

A text-to-image run (configs/text2image.py) makes images of captions:

    python -m genjax.sample --workdir=runs/text2image --caption="a thin green three" --num=16 --out=FILE.npz
    python -m genjax.sample --workdir=runs/text2image --captions_file=F --num=4 --out=FILE.npz

--num images of each caption (one caption per line of F), written with `captions` (str
[N], each image's caption). A word the run's vocabulary lacks is an error that lists the
words it knows. From a notebook: `genjax.run.sample_captions_from_workdir(DIR, [...], 16)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from genjax.errors import GenjaxError
from genjax.run import parse_checkpoint, sample_from_workdir


def _conditioned(FLAGS):
    """(images, labels) for --labels / --per_class (a conditional run only)."""
    from genjax.errors import ConfigError
    from genjax.run import sample_conditioned_from_workdir

    if FLAGS["num"].present:
        raise ConfigError("--num does not go with --labels/--per_class: the number of "
                          "images is the number of labels asked for. Drop --num.")
    labels = None
    if FLAGS.labels is not None:
        try:
            labels = [int(y) for y in FLAGS.labels]
        except ValueError:
            raise ConfigError(f"--labels must be integers separated by commas, e.g. "
                              f"--labels=3,3,7; got {','.join(FLAGS.labels)!r}.") from None
    return sample_conditioned_from_workdir(FLAGS.workdir, labels=labels,
                                           per_class=FLAGS.per_class, seed=FLAGS.seed,
                                           step=parse_checkpoint(FLAGS.checkpoint))


def _captioned(FLAGS):
    """(images, captions) for --caption / --captions_file (a text-to-image run only)."""
    from genjax.errors import ConfigError
    from genjax.run import sample_captions_from_workdir

    if FLAGS.caption is not None and FLAGS.captions_file is not None:
        raise ConfigError("Pass either --caption or --captions_file, not both.")
    if FLAGS.labels is not None or FLAGS.per_class is not None:
        raise ConfigError("--labels/--per_class are for class-conditional runs; a caption "
                          "already says what to draw. Drop them.")
    if FLAGS.caption is not None:
        captions = [FLAGS.caption]
    else:
        path = Path(FLAGS.captions_file)
        if not path.is_file():
            raise ConfigError(f"--captions_file={str(path)!r} is not a file; pass a text "
                              "file with one caption per line.")
        captions = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return sample_captions_from_workdir(FLAGS.workdir, captions, FLAGS.num, seed=FLAGS.seed,
                                        step=parse_checkpoint(FLAGS.checkpoint))


def main(argv=None) -> None:
    from absl import app, flags, logging

    flags.DEFINE_string("workdir", None, "The run's workdir (as given to train.py).")
    flags.DEFINE_integer("num", 64, "How many images.")
    flags.DEFINE_integer("seed", 0, "Seed of the noise; same seed, same images.")
    flags.DEFINE_string("out", None, "Output .npz file (array 'images', uint8 NHWC).")
    flags.DEFINE_string("checkpoint", "latest", "Which checkpoint: 'latest' (the newest), "
                        "'best' (best evaluation figure, eval/best.json) or a step number.")
    flags.DEFINE_list("labels", None, "Conditional runs: the class of each image, e.g. "
                      "3,3,7 (replaces --num).")
    flags.DEFINE_integer("per_class", None, "Conditional runs: this many images of every "
                         "class (replaces --num).")
    flags.DEFINE_string("caption", None, "Text-to-image runs: --num images of this caption.")
    flags.DEFINE_string("captions_file", None, "Text-to-image runs: --num images of each "
                        "caption of this file (one per line).")
    flags.mark_flags_as_required(["workdir", "out"])
    FLAGS = flags.FLAGS

    def run(_):
        logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
        arrays = {}
        try:
            if FLAGS.caption is not None or FLAGS.captions_file is not None:
                arrays["images"], arrays["captions"] = _captioned(FLAGS)
            elif FLAGS.labels is not None or FLAGS.per_class is not None:
                arrays["images"], arrays["labels"] = _conditioned(FLAGS)
            else:
                arrays["images"] = sample_from_workdir(FLAGS.workdir, FLAGS.num, FLAGS.seed,
                                                       parse_checkpoint(FLAGS.checkpoint))
        except GenjaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        images = arrays["images"]
        out = Path(FLAGS.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **arrays)
        print(f"Wrote {images.shape[0]} images {images.shape[1:]} to {out}")

    app.run(run, argv)


if __name__ == "__main__":
    main()
