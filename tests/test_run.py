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
import ml_collections
import numpy as np

import genjax
from genjax import data, parallel, run, tasks
from genjax.checkpoint import Checkpoints, library_versions

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


def _numerics_versions(versions: dict) -> tuple:
    return tuple(versions.get(k) for k in ("jax", "jaxlib", "flax", "optax", "numpy"))


def test_an_older_run_resumes_exactly(tmp_path):
    """Resumed from the old checkpoint by today's code: its step 2 is the old run's saved
    state, and its step 3 is today's train step applied to that state on the batch at the
    saved input-pipeline position (recomputed here, in process), so nothing of the old run
    is lost or read differently. Under the library versions the fixture was written with,
    step 3 is also bit for bit the step 3 of a run today's code trains from scratch (other
    versions compute other roundings, so that comparison needs the same ones)."""
    data_dir = str(tmp_path / "tfds")
    resumed = tmp_path / "resumed"
    shutil.copytree(FIXTURE, resumed)
    proc = _train(resumed, data_dir, 3, tmp_path)
    assert "Resumed from" in proc.stdout and "steps 3..3" in proc.stdout
    assert (resumed / "samples" / "step_000003.png").exists()

    config, task, old_2 = run.load_run(FIXTURE, 2)
    _, _, resumed_2 = run.load_run(resumed, 2)
    _, _, resumed_3 = run.load_run(resumed, 3)
    chex.assert_trees_all_equal(resumed_2, old_2)
    config = ml_collections.ConfigDict(config.to_dict())
    config.dataset.data_dir = data_dir
    checkpoints = Checkpoints(FIXTURE / "checkpoints", read_only=True)
    try:
        _, data_state, _ = checkpoints.restore(2, jax.eval_shape(task.init, config.seed))
        written_under = checkpoints.metadata(2)["versions"]
    finally:
        checkpoints.close()
    pipeline = data.training_pipeline(tasks.data_spec(config), num_devices=1,
                                      global_batch_size=config.batch_size, seed=config.seed)
    pipeline.set_state(data_state)
    step = jax.pmap(task.train_step, axis_name=parallel.AXIS, devices=jax.local_devices()[:1])
    want, _ = step(jax.tree.map(lambda x: np.asarray(x)[None], old_2), next(pipeline))
    chex.assert_trees_all_close(resumed_3, jax.tree.map(lambda x: np.asarray(x[0]), want),
                                atol=1e-6, rtol=1e-6)
    assert int(resumed_3.step) == 3

    if _numerics_versions(written_under) == _numerics_versions(library_versions()):
        straight = tmp_path / "straight"
        _train(straight, data_dir, 3, tmp_path)
        for n in (2, 3):
            _, _, a = run.load_run(resumed, n)
            _, _, b = run.load_run(straight, n)
            chex.assert_trees_all_equal(a, b)
