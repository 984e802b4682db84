"""Trains a genjax model.

    python train.py --config=configs/dcgan.py [--workdir=DIR] [--config.FIELD=VALUE ...]

`--workdir` defaults to runs/<config file name>. Running the same command again
resumes from the newest checkpoint in the workdir.

Exit status: 0 when training finished; 2 for a problem to fix (the message says what);
128 + the signal number (143 for SIGTERM, 130 for SIGINT) when a signal stopped the run
after saving a checkpoint, so a scheduler can requeue it.
"""

import signal
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

import genjax
from genjax.cli import parse_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file under configs/.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax and TFDS are chatty at INFO
    config_name = Path(config_flags.get_config_filename(FLAGS["config"])).stem
    workdir = FLAGS.workdir or str(Path("runs") / config_name)
    try:
        genjax.train_and_evaluate(FLAGS.config, workdir)
    except genjax.Preempted as e:
        for signum in (signal.SIGINT, signal.SIGTERM):  # the checkpoint is committed: a
            signal.signal(signum, signal.SIG_IGN)      # further signal changes nothing
        print(str(e), file=sys.stderr)
        sys.exit(e.exit_code)
    except genjax.GenjaxError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
