"""Trains a genjax model.

    python train.py --config=configs/dcgan.py [--workdir=DIR] [--config.FIELD=VALUE ...]

`--workdir` defaults to runs/<config file name>. Running the same command again
resumes from the newest checkpoint in the workdir.

Several processes (machines): run the same command in each, with the same workdir on a
filesystem they all see. On a TPU pod slice, or under SLURM or Open MPI, JAX finds the
other processes by itself; elsewhere give each process --coordinator_address=HOST:PORT
(process 0's machine), --num_processes and its own --process_id (or set
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID). config.batch_size is
the global batch, split evenly over every device of every process.

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
from genjax import parallel
from genjax.cli import parse_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file under configs/.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process runs: HOST:PORT of process 0 (default: "
                    "$JAX_COORDINATOR_ADDRESS, or found by JAX on TPU pods, SLURM, Open MPI).")
flags.DEFINE_integer("num_processes", None,
                     "Multi-process runs: how many processes (default: $JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None,
                     "Multi-process runs: this process's index, 0..num_processes-1 "
                     "(default: $JAX_PROCESS_ID).")
flags.DEFINE_integer("heartbeat_timeout", 100,
                     "Multi-process runs: seconds without a sign of life after which a "
                     "process counts as dead and the others stop.")
flags.DEFINE_integer("initialization_timeout", 300,
                     "Multi-process runs: seconds to wait for every process to join.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax and TFDS are chatty at INFO
    config_name = Path(config_flags.get_config_filename(FLAGS["config"])).stem
    workdir = FLAGS.workdir or str(Path("runs") / config_name)
    try:
        parallel.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                            heartbeat_timeout_seconds=FLAGS.heartbeat_timeout,
                            initialization_timeout_seconds=FLAGS.initialization_timeout)
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
