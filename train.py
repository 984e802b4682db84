"""Trains a genjax model.

    python train.py --config=configs/dcgan.py [--workdir=DIR] [--config.FIELD=VALUE ...]

`--workdir` defaults to runs/<config file name>. Running the same command again
resumes from the newest checkpoint in the workdir.
"""

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

import genjax

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file under configs/.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config_name = Path(config_flags.get_config_filename(FLAGS["config"])).stem
    workdir = FLAGS.workdir or str(Path("runs") / config_name)
    try:
        genjax.train_and_evaluate(FLAGS.config, workdir)
    except genjax.GenjaxError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
