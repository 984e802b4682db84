"""configs/cgan.py end to end (train.py, the class-by-noise grid, sampling, load_run) and
its config checks."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from PIL import Image

import genjax
from genjax import tasks
from genjax.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config.image_size=16", "--config.batch_size=16", "--config.model.g_width=4",
        "--config.model.d_width=4", "--config.model.latent_dim=8", "--config.model.embed_dim=4",
        "--config.num_sample_images=3"]


def _config_file():
    namespace: dict = {}
    exec((ROOT / "configs" / "cgan.py").read_text(), namespace)
    return namespace["get_config"]()


@pytest.mark.slow
@pytest.mark.parametrize("conditioning,weight", [("projection", 0.5), ("acgan", 0.5),
                                                 ("concat", 0.0)])
def test_cgan_config_trains_draws_a_class_grid_and_samples_classes(tmp_path, conditioning,
                                                                   weight):
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'cgan.py'}",
         f"--workdir={workdir}", "--config.num_train_steps=3", "--config.log_every_steps=1",
         "--config.sample_every_steps=3", "--config.checkpoint_every_steps=3",
         f"--config.dataset.data_dir={tmp_path / 'tfds'}",
         f"--config.model.conditioning={conditioning}", f"--config.matching_weight={weight}",
         *TINY], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("d/loss_wrong" in proc.stdout) == (weight > 0)
    assert ("d/class_loss" in proc.stdout) == (conditioning == "acgan")
    grid = np.asarray(Image.open(workdir / "samples" / "step_000003.png"))
    # 10 rows (digits 0..9) of 3 columns; each 16x16 cell drawn at scale 2 with 2 px gaps.
    assert grid.shape[0] > grid.shape[1] * 3
    config, task, state = genjax.load_run(workdir)
    assert config.model.conditioning == conditioning and task.num_classes == 10
    images = task.sample_classes(state, jax.random.key(0), np.array([3, 3, 7]))
    assert images.shape == (3, 16, 16, 1)
    balanced = genjax.sample_from_workdir(workdir, 12, seed=1)
    assert balanced.shape == (12, 16, 16, 1) and balanced.dtype == np.uint8


@pytest.mark.parametrize("field,value,pattern", [
    ("model.conditioning", "film", "concat, projection, acgan"),
    ("matching_weight", 1.5, "must be in \\[0, 1\\]"),
    ("ac_weight", -1.0, "ac_weight"),
])
def test_bad_conditioning_fields_are_named(field, value, pattern):
    config = _config_file()
    section, _, leaf = field.rpartition(".")
    (config[section] if section else config)[leaf] = value
    with pytest.raises(ConfigError, match=pattern):
        tasks.validate(config)


def test_a_dataset_without_labels_is_refused():
    meta = SimpleNamespace(name="celeb_a", image_shape=(16, 16, 3), num_classes=None)
    with pytest.raises(ConfigError, match="needs class labels"):
        tasks.make(_config_file(), meta)
