"""configs/cgan.py end to end (train.py, the class-by-noise grid, sampling, load_run) and
its config checks."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import ml_collections
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


def _tiny(data_dir, **overrides):
    c = _config_file()
    c.image_size, c.batch_size, c.num_sample_images, c.num_train_steps = 16, 16, 2, 2
    c.model.latent_dim, c.model.g_width, c.model.d_width, c.model.embed_dim = 8, 4, 4, 4
    c.log_every_steps = c.sample_every_steps = c.checkpoint_every_steps = 2
    c.dataset.data_dir = str(data_dir)
    for k, v in overrides.items():
        section, _, leaf = k.rpartition(".")
        (c[section] if section else c)[leaf] = v
    return c


def _sample(args, cwd):
    return subprocess.run([sys.executable, "-m", "genjax.sample", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_sample_command_line_labels_and_per_class(tmp_path):
    """--per_class and --labels write the requested classes beside the images, the same
    bytes for the same seed, and each bad request is a clear error (exit 2)."""
    from genjax.run import sample_conditioned_from_workdir

    workdir = tmp_path / "cgan"
    genjax.train_and_evaluate(_tiny(tmp_path / "tfds"), workdir)
    outs = []
    for name in ("a.npz", "b.npz"):
        proc = _sample([f"--workdir={workdir}", "--per_class=2", "--seed=3",
                        f"--out={tmp_path / name}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(tmp_path / name, allow_pickle=False) as f:
            outs.append((f["images"], f["labels"]))
    images, labels = outs[0]
    assert images.dtype == np.uint8 and images.shape == (20, 16, 16, 1)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 2))
    np.testing.assert_array_equal(outs[1][0], images)
    # The images are the task's for these labels and this seed (the library path).
    config, task, state = genjax.load_run(workdir)
    from genjax import viz
    np.testing.assert_array_equal(
        viz.to_uint8(task.sample_classes(state, jax.random.key(3), labels)), images)

    proc = _sample([f"--workdir={workdir}", "--labels=3,3,7", f"--out={tmp_path / 'c.npz'}"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        assert f["labels"].tolist() == [3, 3, 7] and f["images"].shape == (3, 16, 16, 1)
        assert f["labels"].dtype == np.int32

    proc = _sample([f"--workdir={workdir}", "--labels=3,10", f"--out={tmp_path / 'd.npz'}"],
                   tmp_path)
    assert proc.returncode == 2 and "[10] out of range" in proc.stderr
    assert "10 classes, 0 to 9" in proc.stderr and not (tmp_path / "d.npz").exists()
    for bad, pattern in [(dict(labels=[1], per_class=2), "not both"),
                         (dict(per_class=0), "at least 1"), (dict(labels=[-1]), "out of range")]:
        with pytest.raises(ConfigError, match=pattern):
            sample_conditioned_from_workdir(workdir, **bad)
    proc = _sample([f"--workdir={workdir}", "--labels=3,x", f"--out={tmp_path / 'e.npz'}"],
                   tmp_path)
    assert proc.returncode == 2 and "integers separated by commas" in proc.stderr
    proc = _sample([f"--workdir={workdir}", "--labels=3", "--num=4",
                    f"--out={tmp_path / 'e.npz'}"], tmp_path)
    assert proc.returncode == 2 and "Drop --num" in proc.stderr

    # An unconditional run cannot make requested classes.
    gan = ml_collections.ConfigDict(tasks.defaults("gan").to_dict())
    gan.image_size, gan.batch_size, gan.num_train_steps, gan.num_sample_images = 8, 16, 1, 4
    gan.model.latent_dim, gan.model.g_width, gan.model.d_width = 8, 4, 4
    gan.log_every_steps = gan.sample_every_steps = gan.checkpoint_every_steps = 1
    gan.dataset.data_dir = str(tmp_path / "tfds")
    genjax.train_and_evaluate(gan, tmp_path / "gan")
    proc = _sample([f"--workdir={tmp_path / 'gan'}", "--per_class=2",
                    f"--out={tmp_path / 'f.npz'}"], tmp_path)
    assert proc.returncode == 2 and "not conditional" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_resume_is_bitwise_equal_to_a_straight_run(tmp_path):
    """AC-GAN with the matching-aware term (both heads, wrong labels, BatchNorm in G and D
    at 16x16): 3 steps, then resumed to 6, bit for bit a straight run of 6."""
    import chex

    def config(steps):
        return _tiny(tmp_path / "tfds", **{"num_train_steps": steps, "log_every_steps": 3,
                                           "sample_every_steps": 3,
                                           "checkpoint_every_steps": 3,
                                           "model.conditioning": "acgan",
                                           "matching_weight": 0.5})

    straight = genjax.train_and_evaluate(config(6), tmp_path / "a")
    genjax.train_and_evaluate(config(3), tmp_path / "b")
    resumed = genjax.train_and_evaluate(config(6), tmp_path / "b")
    assert int(resumed.step) == 6 and jax.tree.leaves(resumed.discriminator.batch_stats)
    chex.assert_trees_all_equal(straight, resumed)


@pytest.mark.slow
@pytest.mark.parametrize("name,channels", [("mnist", 1), ("cifar10", 3)])
def test_real_datasets_by_name_on_mock_data(tmp_path, name, channels):
    """--config.dataset.name=mnist|cifar10 trains (TFDS records mocked from the real
    builders' features), with the datasets' own 10 classes and channels."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=32, policy=tfds.testing.MockPolicy.USE_CODE):
        state = genjax.train_and_evaluate(_tiny(tmp_path / "tfds", **{"dataset.name": name}),
                                          tmp_path / "run")
        config, task, loaded = genjax.load_run(tmp_path / "run")
    assert int(state.step) == 2 and config.dataset.name == name and task.num_classes == 10
    images = task.sample_classes(loaded, jax.random.key(0), np.array([0, 9]))
    assert images.shape == (2, 16, 16, channels)
    assert (tmp_path / "run" / "samples" / "step_000002.png").exists()
