"""configs/cyclegan.py end to end (train.py on the embedded digits_style, the pictures,
load_run and translate both ways), bitwise resume with the image pools, and
TFDS cycle_gan/* by name on mock data."""

import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

import genjax
from genjax import tasks

ROOT = Path(__file__).resolve().parent.parent
TINY = {"batch_size": 8, "model.ngf": 2, "model.ndf": 2, "model.num_blocks": 1,
        "model.d_layers": 1, "num_sample_images": 2, "pool_size": 3}


def _tiny(data_dir, **overrides):
    namespace: dict = {}
    exec((ROOT / "configs" / "cyclegan.py").read_text(), namespace)
    c = namespace["get_config"]()
    for k, v in {**TINY, "num_train_steps": 2, "log_every_steps": 1, "sample_every_steps": 2,
                 "checkpoint_every_steps": 2, "dataset.data_dir": str(data_dir),
                 **overrides}.items():
        section, _, leaf = k.rpartition(".")
        (c[section] if section else c)[leaf] = v
    return c


@pytest.mark.slow
def test_config_trains_from_the_command_line_draws_cycles_and_translates(tmp_path):
    workdir = tmp_path / "run"
    flags = [f"--config.{k}={v}" for k, v in TINY.items()]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'cyclegan.py'}",
         f"--workdir={workdir}", "--config.num_train_steps=2", "--config.log_every_steps=1",
         "--config.sample_every_steps=2", f"--config.dataset.data_dir={tmp_path / 'tfds'}",
         "--config.cycle=forward", *flags],
        capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for direction in ("a2b", "b2a"):
        assert (workdir / "samples" / f"{direction}_step_000002.png").exists()
    config, task, state = genjax.load_run(workdir)
    assert config.cycle == "forward" and int(state.step) == 2
    assert int(state.pool_count["a"]) == 3  # full after the first 8 fakes
    images = np.zeros((3, 16, 16, 1), np.float32) - 1
    outs = {}
    for direction in ("a2b", "b2a"):
        outs[direction] = task.translate(state, images, direction)
        assert outs[direction].shape == (3, 16, 16, 1)

    # python -m genjax.translate --direction=a2b|b2a on a folder of PNGs.
    from PIL import Image
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(inputs / f"digit{i}.png")
    written = {}
    for direction in ("a2b", "b2a"):
        out_dir = tmp_path / direction
        proc = subprocess.run([sys.executable, "-m", "genjax.translate", f"--workdir={workdir}",
                               f"--input={inputs}", f"--output={out_dir}",
                               f"--direction={direction}"],
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        written[direction] = np.asarray(Image.open(out_dir / "digit0.png"), np.float64)
        want = np.rint((np.asarray(outs[direction][0, ..., 0], np.float64) + 1) * 127.5)
        np.testing.assert_allclose(written[direction], want, atol=1)  # G for a2b, F for b2a
    assert np.abs(written["a2b"] - written["b2a"]).max() > 0
    proc = subprocess.run([sys.executable, "-m", "genjax.translate", f"--workdir={workdir}",
                           f"--input={inputs}", f"--output={tmp_path / 'x'}",
                           "--direction=sideways"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 2 and "'a2b' or 'b2a'" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_resume_with_the_pools_is_bitwise_equal_to_a_straight_run(tmp_path):
    """Pools of 3 with batches of 8 (on 8 devices): full after the first step, swapping after; 3 steps,
    then resumed to 6, bit for bit a straight run of 6 (pools and counts included)."""
    import chex

    def config(steps):
        return _tiny(tmp_path / "tfds", num_train_steps=steps, checkpoint_every_steps=3,
                     sample_every_steps=3, log_every_steps=3)

    straight = genjax.train_and_evaluate(config(6), tmp_path / "a")
    genjax.train_and_evaluate(config(3), tmp_path / "b")
    resumed = genjax.train_and_evaluate(config(6), tmp_path / "b")
    assert int(resumed.step) == 6 and int(resumed.pool_count["b"]) == 3
    chex.assert_trees_all_equal(straight, resumed)


@pytest.mark.slow
def test_without_pools_it_checkpoints_and_resumes_bitwise(tmp_path):
    """pool_size=0 (the 'no pool' ablation) holds no pool in the state (a checkpoint
    cannot save zero-size arrays), saves, and resumes bit for bit."""
    import chex

    def config(steps):
        return _tiny(tmp_path / "tfds", num_train_steps=steps, checkpoint_every_steps=2,
                     sample_every_steps=2, log_every_steps=2, pool_size=0)

    straight = genjax.train_and_evaluate(config(4), tmp_path / "a")
    genjax.train_and_evaluate(config(2), tmp_path / "b")
    resumed = genjax.train_and_evaluate(config(4), tmp_path / "b")
    assert int(resumed.step) == 4 and resumed.pool == {} and resumed.pool_count == {}
    chex.assert_trees_all_equal(straight, resumed)


@pytest.mark.slow
def test_tfds_cycle_gan_by_name_on_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        c = _tiny(tmp_path / "tfds", **{"dataset.name": "cycle_gan/horse2zebra",
                                        "image_size": 16, "dataset.jitter": True})
        state = genjax.train_and_evaluate(c, tmp_path / "run")
    assert int(state.step) == 2 and state.pool["a"].shape == (3, 16, 16, 3)


def test_bad_settings_are_config_errors():
    c = ml_collections.ConfigDict(tasks.defaults("cyclegan").to_dict())
    c.image_size, c.model.d_layers = 16, 3  # a 70x70 PatchGAN does not fit 16x16
    with pytest.raises(tasks.ConfigError, match="d_layers"):
        tasks.validate(c)
    c.model.d_layers = 2
    c.cycle = "sideways"
    with pytest.raises(tasks.ConfigError, match="cycle"):
        tasks.validate(c)
    c.cycle = "both"
    c.pool_size = -1
    with pytest.raises(tasks.ConfigError, match="pool_size"):
        tasks.validate(c)
