"""The training loop end to end: resume exactness, train.py, sample CLI, bad input.

The GAN runs at 16x16, where both networks have BatchNorm, so bitwise resume covers
the discriminator's statistics too."""

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import ml_collections
import numpy as np
import pytest

import genjax
from genjax import tasks as tasks_lib

ROOT = Path(__file__).resolve().parent.parent
TINY_FLAGS = ["--config.image_size=16", "--config.batch_size=16", "--config.model.g_width=4",
              "--config.model.d_width=4", "--config.model.latent_dim=8",
              "--config.num_sample_images=16"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
    c = ml_collections.ConfigDict(tasks_lib.defaults("gan").to_dict())
    c.image_size, c.batch_size, c.num_sample_images = 16, 16, 16
    c.model.latent_dim, c.model.g_width, c.model.d_width = 8, 4, 4
    c.dataset.data_dir = data_dir
    c.log_every_steps = c.sample_every_steps = c.checkpoint_every_steps = 3
    for k, v in overrides.items():
        c[k] = v
    return c


@pytest.mark.slow
def test_resume_is_bitwise_equal_to_a_straight_run(tmp_path, data_dir):
    straight = genjax.train_and_evaluate(tiny_config(data_dir, num_train_steps=6), tmp_path / "a")
    genjax.train_and_evaluate(tiny_config(data_dir, num_train_steps=3), tmp_path / "b")
    resumed = genjax.train_and_evaluate(tiny_config(data_dir, num_train_steps=6), tmp_path / "b")
    assert int(resumed.step) == 6
    assert jax.tree.leaves(resumed.discriminator.batch_stats)  # D has BatchNorm here
    # Parameters, BatchNorm statistics, optimiser states, EMA, key: all bit for bit.
    chex.assert_trees_all_equal(straight, resumed)
    assert sorted(os.listdir(tmp_path / "b" / "checkpoints")) == ["3", "6"]


def _run(args, cwd, **env):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


@pytest.mark.slow
def test_train_py_end_to_end_then_sample(tmp_path, data_dir):
    workdir = tmp_path / "run"
    proc = _run([str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'dcgan.py'}",
                 f"--workdir={workdir}", "--config.num_train_steps=4",
                 "--config.log_every_steps=2", "--config.sample_every_steps=4",
                 "--config.checkpoint_every_steps=4", f"--config.dataset.data_dir={data_dir}",
                 *TINY_FLAGS], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 4/4" in proc.stdout
    assert (workdir / "samples" / "step_000004.png").exists()
    assert (workdir / "checkpoints" / "4").is_dir()
    assert list(workdir.glob("events.out.tfevents.*"))
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["num_train_steps"] == 4 and saved["image_size"] == 16

    outs = []
    for name in ("a.npz", "b.npz"):
        proc = _run(["-m", "genjax.sample", f"--workdir={workdir}", "--num=5", "--seed=7",
                     f"--out={tmp_path / name}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(tmp_path / name, allow_pickle=False) as f:
            outs.append(f["images"])
    assert outs[0].dtype == np.uint8 and outs[0].shape == (5, 16, 16, 1)
    np.testing.assert_array_equal(outs[0], outs[1])
    # The notebook function gives the same bytes as the command line.
    np.testing.assert_array_equal(genjax.sample_from_workdir(workdir, 5, seed=7), outs[0])


@pytest.mark.slow
def test_workdir_defaults_to_runs_config_name(tmp_path, data_dir):
    proc = _run([str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'dcgan.py'}",
                 "--config.num_train_steps=1", f"--config.dataset.data_dir={data_dir}",
                 *TINY_FLAGS], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs" / "dcgan" / "checkpoints" / "1").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("flag,pattern", [
    ("--config.num_train_step=5", "num_train_step"),
    ("--config.loss=wasserstein", "non_saturating"),
    ("--config.batch_size=60", "divisible"),
])
def test_bad_config_fails_before_training_and_writes_nothing(tmp_path, flag, pattern):
    workdir = tmp_path / "run"
    proc = _run([str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'dcgan.py'}",
                 f"--workdir={workdir}", flag], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert pattern in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not workdir.exists()


@pytest.mark.slow
def test_resuming_with_other_shapes_is_refused(tmp_path, data_dir):
    workdir = tmp_path / "run"
    genjax.train_and_evaluate(tiny_config(data_dir, num_train_steps=1), workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    bigger = tiny_config(data_dir, num_train_steps=2)
    bigger.model.g_width = 8
    with pytest.raises(genjax.ConfigError, match="model.g_width: 4 in the workdir vs 8 now"):
        genjax.train_and_evaluate(bigger, workdir)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
