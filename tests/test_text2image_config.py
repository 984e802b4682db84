"""configs/text_encoder.py and configs/text2image.py end to end (train.py on the embedded
captioned digits, the caption grid, load_run, `genjax.sample --caption`, bitwise resume)
and their config checks."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import chex
import jax
import numpy as np
import pytest
from PIL import Image

import genjax
from genjax import tasks, viz
from genjax.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT),
       "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _config(name, data_dir, **overrides):
    namespace: dict = {}
    exec((ROOT / "configs" / f"{name}.py").read_text(), namespace)
    c = namespace["get_config"]()
    c.image_size, c.batch_size, c.num_train_steps = 16, 16, 2
    c.log_every_steps = c.checkpoint_every_steps = 2
    c.dataset.data_dir = str(data_dir)
    if name == "text_encoder":
        c.model.text_width, c.model.image_width, c.model.embed_dim = 8, 4, 8
    else:
        c.sample_every_steps, c.num_sample_images, c.num_sample_captions = 2, 3, 4
        c.model.latent_dim, c.model.g_width, c.model.d_width, c.model.compress_dim = 8, 4, 4, 4
    for k, v in overrides.items():
        section, _, leaf = k.rpartition(".")
        (c[section] if section else c)[leaf] = v
    return c


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny text encoder run on the captioned digits: (workdir, tfds data_dir)."""
    root = tmp_path_factory.mktemp("encoder")
    genjax.train_and_evaluate(_config("text_encoder", root / "tfds"), root / "run")
    return root / "run", root / "tfds"


def _sample(args, cwd):
    return subprocess.run([sys.executable, "-m", "genjax.sample", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=ENV)


@pytest.mark.slow
def test_train_py_trains_the_pair_draws_a_caption_grid_and_samples_captions(tmp_path, encoder):
    """train.py (2 devices) trains text2image on a frozen encoder; the grid has one row per
    fixed caption; `genjax.sample --caption` writes the caption's images and the captions,
    the same bytes as the library; unknown words are a clear error (exit 2)."""
    enc_dir, data_dir = encoder
    workdir = tmp_path / "t2i"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'text2image.py'}",
         f"--workdir={workdir}", "--config.num_train_steps=2", "--config.log_every_steps=1",
         "--config.sample_every_steps=2", "--config.checkpoint_every_steps=2",
         f"--config.dataset.data_dir={data_dir}", f"--config.text_encoder_workdir={enc_dir}",
         "--config.image_size=16", "--config.batch_size=16", "--config.model.g_width=4",
         "--config.model.d_width=4", "--config.model.latent_dim=8",
         "--config.model.compress_dim=4", "--config.num_sample_images=3",
         "--config.num_sample_captions=4"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "d/loss_wrong" in proc.stdout and "g/loss_int" in proc.stdout
    grid = np.asarray(Image.open(workdir / "samples" / "step_000002.png"))
    assert grid.shape[0] == grid.shape[1]  # 4 captions x (the real image + 3 generated)

    config, task, state = genjax.load_run(workdir)
    _, enc_task, enc_state = genjax.load_run(enc_dir)
    chex.assert_trees_all_equal(state.text_encoder, enc_task.text_params(enc_state))
    caption = "a thin green three"
    proc = _sample([f"--workdir={workdir}", f"--caption={caption}", "--num=5", "--seed=2",
                    f"--out={tmp_path / 'a.npz'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "a.npz", allow_pickle=False) as f:
        images, captions = f["images"], f["captions"]
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
    assert captions.tolist() == [caption] * 5
    tokens = np.stack([task.tokenizer.encode(caption)] * 5)
    np.testing.assert_array_equal(
        viz.to_uint8(task.sample_captions(state, tokens, jax.random.key(2))), images)

    (tmp_path / "captions.txt").write_text("a bold red seven\n\nthe digit 1 in blue\n")
    proc = _sample([f"--workdir={workdir}", f"--captions_file={tmp_path / 'captions.txt'}",
                    "--num=2", f"--out={tmp_path / 'b.npz'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "b.npz", allow_pickle=False) as f:
        assert f["captions"].tolist() == ["a bold red seven"] * 2 + ["the digit 1 in blue"] * 2
        assert f["images"].shape == (4, 16, 16, 3)

    proc = _sample([f"--workdir={workdir}", "--caption=a thin zebra three",
                    f"--out={tmp_path / 'c.npz'}"], tmp_path)
    assert proc.returncode == 2 and "outside this run's vocabulary: zebra" in proc.stderr
    assert "green" in proc.stderr and not (tmp_path / "c.npz").exists()
    proc = _sample([f"--workdir={enc_dir}", f"--caption={caption}",
                    f"--out={tmp_path / 'd.npz'}"], tmp_path)
    assert proc.returncode == 2 and "does not draw from captions" in proc.stderr


@pytest.mark.slow
def test_resume_is_bitwise_equal_to_a_straight_run(tmp_path, encoder):
    enc_dir, data_dir = encoder

    def config(steps):
        return _config("text2image", data_dir, num_train_steps=steps,
                       text_encoder_workdir=str(enc_dir), log_every_steps=2,
                       sample_every_steps=2, checkpoint_every_steps=2)

    straight = genjax.train_and_evaluate(config(4), tmp_path / "a")
    genjax.train_and_evaluate(config(2), tmp_path / "b")
    resumed = genjax.train_and_evaluate(config(4), tmp_path / "b")
    assert int(resumed.step) == 4
    chex.assert_trees_all_equal(straight, resumed)


@pytest.mark.slow
def test_a_missing_text_encoder_names_the_command_that_makes_it(tmp_path, encoder):
    _, data_dir = encoder
    c = _config("text2image", data_dir, text_encoder_workdir=str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="configs/text_encoder.py"):
        genjax.train_and_evaluate(c, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("field,value,pattern", [
    ("cls_weight", 1.5, "cls_weight"), ("int_weight", -1.0, "int_weight"),
    ("text_encoder_workdir", "", "configs/text_encoder.py"),
])
def test_bad_fields_are_named(field, value, pattern):
    c = _config("text2image", "/nonexistent", **{field: value})
    with pytest.raises(ConfigError, match=pattern):
        tasks.validate(c)


def test_a_dataset_without_captions_is_refused():
    meta = SimpleNamespace(name="digits", image_shape=(16, 16, 1), num_classes=10,
                           vocabulary=None, max_tokens=None)
    for name in ("text_encoder", "text2image"):
        with pytest.raises(ConfigError, match="needs captions"):
            tasks.make(_config(name, "/nonexistent"), meta)
