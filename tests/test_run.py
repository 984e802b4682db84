"""`genjax.run.load_run` on runs written before the task protocol, and their resumption.

tests/fixtures/gan_8d60b3b is a tiny GAN workdir (image_size 8, 2 steps, a checkpoint at
each) written by genjax at commit 8d60b3b, before task modules owned their configs and
states, on one CPU device:
    python train.py --config=configs/dcgan.py --workdir=... --config.image_size=8
      --config.batch_size=16 --config.model.g_width=4 --config.model.d_width=4
      --config.model.latent_dim=8 --config.num_sample_images=4 --config.num_train_steps=2
      --config.log_every_steps=1 --config.sample_every_steps=2
      --config.checkpoint_every_steps=1
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np

import genjax
from genjax import run

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "gan_8d60b3b"


def test_an_older_run_loads():
    config, task, state = run.load_run(FIXTURE)
    assert config.task == "gan" and task.name == "gan" and int(state.step) == 2
    _, _, first = run.load_run(FIXTURE, 1)
    assert int(first.step) == 1
    images = task.sample(state, jax.random.key(0), 3)
    assert images.shape == (3, 8, 8, 1) and np.all(np.isfinite(images))
    assert genjax.load_run is run.load_run


def _train(workdir: Path, data_dir: str, steps: int, cwd: Path):
    """train.py on one device (as the fixture was written) with the fixture's config."""
    config = json.loads((FIXTURE / "config.json").read_text())
    config["dataset"]["data_dir"], config["num_train_steps"] = data_dir, steps
    path = cwd / f"config_{workdir.name}.py"
    path.write_text("import ml_collections\n\ndef get_config():\n"
                    f"    return ml_collections.ConfigDict({config!r})\n")
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--config={path}",
                           f"--workdir={workdir}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_an_older_run_resumes_bitwise(tmp_path):
    """Resumed from the old checkpoint by today's code, step 3 is bit for bit the step 3 of
    a run that today's code trained from scratch; and today's code computes the old run's
    step 2 bit for bit."""
    data_dir = str(tmp_path / "tfds")
    resumed = tmp_path / "resumed"
    shutil.copytree(FIXTURE, resumed)
    proc = _train(resumed, data_dir, 3, tmp_path)
    assert "Resumed from" in proc.stdout and "steps 3..3" in proc.stdout
    straight = tmp_path / "straight"
    _train(straight, data_dir, 3, tmp_path)
    for step in (2, 3):
        _, _, a = run.load_run(resumed, step)
        _, _, b = run.load_run(straight, step)
        chex.assert_trees_all_equal(a, b)
    assert (resumed / "samples" / "step_000003.png").exists()
