"""The whole training command, timed from outside: `python train.py` against a plain
PyTorch training command of the same shape (`bench/torch_train.py`), side by side.

    python bench/whole_command.py --torch_python=/path/to/venv-with-torch/bin/python \
        --config=configs/dcgan.py --config.image_size=32 --config.model.g_width=32 \
        --config.model.d_width=32 --config.model.d_dropout=0 --steps=1000 --repeats=5

`bench/dcgan.py` times the train step alone, on a device-resident batch; this times
what a user waits for. Each run is a fresh process with a fresh workdir:

  genjax   python train.py --config=CONFIG --workdir=NEW --config.num_train_steps=STEPS
           --config.eval_every_steps=0 [the --config.* overrides given here]: the input
           pipeline (grain, prefetch), logging to the console and TensorBoard, sample
           grids and orbax checkpoints at the config's cadences.
  torch    bench/torch_train.py under --torch_python: the same images (the config's
           digits training split, exported once from genjax's TFDS records to .npz and
           resized per image in a Dataset), a shuffling DataLoader, the same DCGAN shape
           (image size, widths, latent size, batch, discriminator dropout; the DCGAN of
           bench/torch_dcgan.py), Adam, and prints, sample grids and checkpoints at the
           same cadences (log_every_steps, sample_every_steps, checkpoint_every_steps,
           keep_checkpoints, num_sample_images). Only the architecture and cadences are
           mirrored: loss variants, augmentation or penalties in the genjax config are not.

After one warm-up run of each (not counted: the OS file cache, and genjax's compilation
cache, which a user's second run also finds warm; --cold gives every genjax run an
empty cache, as a user's very first run), the two alternate: genjax, torch, genjax,
torch, ... --repeats times each. Figures per run:

  wall s      from starting the process to its exit (interpreter start, imports, data,
              compilation, training, the last checkpoint)
  first s     from starting the process to its "First step" line (start-up + step 1)
  steps/s     (STEPS - 1) / the time between the "First step" line and the last
              "step STEPS/STEPS" line: the training loop with its logging, pictures and
              checkpoints, after the first step
  foreign     the share of the machine's CPU time other processes used during the run
              (from /proc/stat, as bench/windows.py); above 5% the run was disturbed

and for each pair the ratios genjax/torch of steps/s and torch/genjax of wall time (> 1:
genjax ahead), with their min / median / max. Quote the medians of a run in which no
run was disturbed; on a shared machine the figures are contaminated.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from windows import _machine_busy_seconds  # noqa: E402  (bench/windows.py)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "dcgan.py"),
                                "A GAN config file (train.py's --config).")
flags.DEFINE_string("torch_python", None, "A Python interpreter with torch, numpy and "
                    "pillow installed (e.g. a venv's bin/python).")
flags.DEFINE_integer("steps", 1000, "Training steps of every run (both commands).")
flags.DEFINE_integer("repeats", 5, "Counted runs of each command, alternating.")
flags.DEFINE_integer("warmup", 1, "Uncounted runs of each command first.")
flags.DEFINE_bool("cold", False, "An empty compilation cache for every genjax run.")
flags.DEFINE_string("workroot", None, "Where the runs' logs go (default: a new temporary "
                    "folder); each run's workdir is deleted after it.")
flags.DEFINE_string("json", None, "Also write every run's figures to this JSON file.")
flags.DEFINE_integer("torch_workers", 0, "DataLoader worker processes on the torch side.")

_FIRST = re.compile(r"^First step")


def torch_args(config, steps: int) -> list[str]:
    """bench/torch_train.py's arguments for the shape and cadences of `config`."""
    m = config.model
    return [f"--steps={steps}", f"--image_size={config.image_size}",
            f"--g_width={m.g_width}", f"--d_width={m.d_width}", f"--d_dropout={m.d_dropout}",
            f"--latent_dim={m.latent_dim}", f"--batch={config.batch_size}",
            f"--log_every={config.log_every_steps}",
            f"--sample_every={config.sample_every_steps}",
            f"--checkpoint_every={config.checkpoint_every_steps}",
            f"--keep={config.keep_checkpoints}", f"--num_samples={config.num_sample_images}",
            f"--seed={config.seed}"]


def export_images(config, data_dir: Path, path: Path) -> int:
    """The config's training split (genjax's TFDS records) as uint8 NHWC in an .npz."""
    import numpy as np

    from genjax.data import dataset_source

    source = dataset_source(config.dataset.name, config.dataset.split, str(data_dir))
    images = np.stack([np.asarray(source[i]["image"], np.uint8) for i in range(len(source))])
    np.savez(path, image=images)
    return images.shape[0]


def timed_run(command: list[str], env: dict, steps: int, log: Path) -> dict:
    """Runs `command` to its end, timestamping its output lines; its figures (docstring)."""
    busy0 = _machine_busy_seconds()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    first = last = None
    final = re.compile(rf"^step {steps}/{steps}\b")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=ROOT, bufsize=1)
        for line in proc.stdout:
            now = time.perf_counter()
            out.write(line)
            if first is None and _FIRST.match(line):
                first = now
            elif final.match(line):
                last = now
        code = proc.wait()
    wall = time.perf_counter() - start
    busy1 = _machine_busy_seconds()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0 or first is None or last is None:
        raise SystemExit(f"error: {' '.join(command[:3])} ... exited with {code} (or printed "
                         f"no 'First step' / 'step {steps}/{steps}' line); its output: {log}")
    used = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    foreign = 0.0
    if busy0 is not None and busy1 is not None:
        foreign = max(0.0, busy1 - busy0 - used) / (wall * (os.cpu_count() or 1))
    return {"wall_s": wall, "first_s": first - start,
            "steps_per_sec": (steps - 1) / max(last - first, 1e-9),
            "cpu_s": used, "foreign": foreign}


def _flat(config) -> dict:
    from genjax import config as config_lib

    return config_lib.flatten(config)


def _spread(values) -> str:
    return (f"{min(values):8.2f} {statistics.median(values):8.2f} {max(values):8.2f}")


def report(runs: list[dict]) -> str:
    lines = [f"{'run':>10} {'wall s':>8} {'first s':>8} {'steps/s':>8} {'cpu s':>8} "
             f"{'foreign':>8}"]
    for r in runs:
        mark = "  (disturbed)" if r["foreign"] > 0.05 else ""
        lines.append(f"{r['side'] + ' ' + str(r['repeat']):>10} {r['wall_s']:8.1f} "
                     f"{r['first_s']:8.1f} {r['steps_per_sec']:8.2f} {r['cpu_s']:8.1f} "
                     f"{100 * r['foreign']:7.0f}%{mark}")
    lines.append(f"{'':>24} {'min':>8} {'median':>8} {'max':>8}")
    by = {side: [r for r in runs if r["side"] == side] for side in ("genjax", "torch")}
    for side, rs in by.items():
        lines.append(f"{side + ' wall s':>24} " + _spread([r["wall_s"] for r in rs]))
        lines.append(f"{side + ' steps/s':>24} " + _spread([r["steps_per_sec"] for r in rs]))
    pairs = list(zip(by["genjax"], by["torch"]))
    lines.append(f"{'genjax/torch steps/s':>24} "
                 + _spread([g["steps_per_sec"] / t["steps_per_sec"] for g, t in pairs]))
    lines.append(f"{'torch/genjax wall':>24} "
                 + _spread([t["wall_s"] / g["wall_s"] for g, t in pairs]))
    return "\n".join(lines)


def main(argv) -> None:
    del argv  # absl consumed the --config.* overrides; train.py gets them as given
    logging.set_verbosity(logging.WARNING)  # TFDS is chatty at INFO
    overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
    config = FLAGS.config
    if config.task != "gan" or config.dataset.name != "digits":
        raise SystemExit("error: the torch side mirrors a DCGAN on the embedded digits; give a "
                         f"--config of task 'gan' on 'digits' (got {config.task!r} on "
                         f"{config.dataset.name!r}).")
    if not FLAGS.torch_python:
        raise SystemExit("error: --torch_python is required: an interpreter with torch, numpy "
                         "and pillow, e.g. python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/"
                         "pip install torch numpy pillow, then --torch_python=/tmp/torchenv/bin/"
                         "python.")
    from genjax.tasks import gan

    given, plain = _flat(config), _flat(gan.defaults())
    unmirrored = [f"{k}={given[k]!r}" for k in ("augment", "r1_weight", "model.d_norm", "loss",
                                                 "d_steps_per_g_step")
                  if k in given and k in plain and given[k] != plain[k]]
    if unmirrored:
        print("note: the torch side is a plain DCGAN; it does not mirror "
              + ", ".join(unmirrored), flush=True)
    root = Path(FLAGS.workroot or tempfile.mkdtemp(prefix="whole_command_"))
    root.mkdir(parents=True, exist_ok=True)
    steps = FLAGS.steps
    env = {**os.environ, "TFDS_DATA_DIR": str(root / "tfds"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    count = export_images(config, root / "tfds", root / "digits_train.npz")
    config_path = config_flags.get_config_filename(FLAGS["config"])
    torch_version = subprocess.run([FLAGS.torch_python, "-c", "import torch; print("
                                    "torch.__version__, torch.get_num_threads())"],
                                   capture_output=True, text=True, check=True).stdout.split()
    print(f"genjax: python train.py --config={config_path} --config.num_train_steps={steps} "
          f"--config.eval_every_steps=0 {' '.join(overrides)}\n"
          f"torch {torch_version[0]} ({torch_version[1]} threads): bench/torch_train.py "
          f"{' '.join(torch_args(config, steps))} ({count} images)\n"
          f"{os.cpu_count()} CPUs; {FLAGS.warmup} warm-up + {FLAGS.repeats} counted runs each, "
          f"alternating; {'cold' if FLAGS.cold else 'warm'} genjax compilation cache; "
          f"logs in {root}", flush=True)

    def command(side: str, workdir: Path) -> tuple[list[str], dict]:
        if side == "genjax":
            cache = root / ("xla_" + workdir.name if FLAGS.cold else "xla")
            return ([sys.executable, str(ROOT / "train.py"), f"--config={config_path}",
                     f"--workdir={workdir}", f"--config.num_train_steps={steps}",
                     "--config.eval_every_steps=0", *overrides],
                    {**env, "GENJAX_COMPILATION_CACHE": str(cache)})
        return ([FLAGS.torch_python, str(ROOT / "bench" / "torch_train.py"),
                 f"--data={root / 'digits_train.npz'}", f"--workdir={workdir}",
                 f"--num_workers={FLAGS.torch_workers}", *torch_args(config, steps)], env)

    runs = []
    for repeat in range(-FLAGS.warmup, FLAGS.repeats):
        for side in ("genjax", "torch"):
            name = f"{side}_warmup{-repeat}" if repeat < 0 else f"{side}_{repeat}"
            workdir = root / name
            shutil.rmtree(workdir, ignore_errors=True)
            cmd, cmd_env = command(side, workdir)
            figures = timed_run(cmd, cmd_env, steps, root / f"{name}.log")
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(root / f"xla_{name}", ignore_errors=True)
            print(f"{name}: {figures['wall_s']:.1f} s, first step at {figures['first_s']:.1f} s, "
                  f"{figures['steps_per_sec']:.2f} steps/s, foreign "
                  f"{100 * figures['foreign']:.0f}%", flush=True)
            if repeat >= 0:
                runs.append({"side": side, "repeat": repeat, **figures})
    print(report(runs))
    if FLAGS.json:
        Path(FLAGS.json).write_text(json.dumps(
            {"steps": steps, "overrides": overrides, "config": str(config_path),
             "torch": torch_version[0], "cpus": os.cpu_count(), "runs": runs}, indent=2))


if __name__ == "__main__":
    app.run(main)
