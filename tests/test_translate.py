"""pix2pix end to end: train.py on a small paired folder the test writes, the pictures,
bitwise resume, both configs' networks, and `python -m genjax.translate` on a folder
(names kept, other sizes converted and said so, each bad input a clear error)."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import genjax
from genjax import tasks, viz
from genjax.errors import ConfigError, GenjaxError

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config.image_size=16", "--config.batch_size=8", "--config.model.num_downs=4",
        "--config.model.ngf=4", "--config.model.ndf=4", "--config.model.n_layers=2",
        "--config.num_sample_images=3"]


def _photo(rng, size):
    """A smooth random colour image (uint8 [size, size, 3])."""
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR))


def write_side_by_side(root: Path, counts=(("train", 12), ("val", 4), ("test", 4)), size=16,
                       seed=0) -> Path:
    """PATH/<split>/<i>.png, each the grey input A and the colour target B side by side."""
    rng = np.random.default_rng(seed)
    for split, n in counts:
        (root / split).mkdir(parents=True)
        for i in range(n):
            b = _photo(rng, size)
            a = np.repeat(np.asarray(Image.fromarray(b).convert("L"))[..., None], 3, -1)
            Image.fromarray(np.concatenate([a, b], axis=1)).save(root / split / f"{i:03d}.png")
    return root


def write_two_folders(root: Path, size=16, seed=1) -> Path:
    """PATH/A/<split>/ (grey, 1 channel) and PATH/B/<split>/ (colour), matched by name."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", 12), ("test", 4)):
        for side in "AB":
            (root / side / split).mkdir(parents=True)
        for i in range(n):
            b = _photo(rng, size)
            Image.fromarray(b).save(root / "B" / split / f"{i:03d}.png")
            Image.fromarray(b).convert("L").save(root / "A" / split / f"{i:03d}.png")
    return root


def _train(workdir, data, *extra, env_devices=2):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'pix2pix.py'}",
         f"--workdir={workdir}", f"--config.dataset.name=folder:{data}",
         "--config.num_train_steps=3", "--config.log_every_steps=1",
         "--config.sample_every_steps=3", "--config.checkpoint_every_steps=3", *TINY, *extra],
        cwd=workdir.parent, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "XLA_FLAGS": f"--xla_force_host_platform_device_count={env_devices}"})


def _translate(args, cwd):
    return subprocess.run([sys.executable, "-m", "genjax.translate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_train_on_a_side_by_side_folder_then_translate_a_folder(tmp_path):
    data = write_side_by_side(tmp_path / "pairs")
    workdir = tmp_path / "run"
    workdir.parent.mkdir(exist_ok=True)
    proc = _train(workdir, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("d/loss", "g/loss", "g/l1", "g/adversarial"):
        assert name in proc.stdout
    grid = np.asarray(Image.open(workdir / "samples" / "translations_step_000003.png"))
    # 3 rows (input, output, target) of 3 held-out pairs, 16x16 cells drawn at scale 2.
    assert grid.shape[1] > grid.shape[0] * 0.9 and grid.shape[0] > 3 * 32

    config, task, state = genjax.load_run(workdir)
    assert config.task == "pix2pix" and task.input_channels == 3 and task.image_size == 16

    # A folder of inputs: two at the model's size, one larger and grey, one not an image.
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(_photo(rng, 16)).save(inputs / "a.png")
    Image.fromarray(_photo(rng, 16)).save(inputs / "b.jpg")
    Image.fromarray(_photo(rng, 40)[:, :30]).convert("L").save(inputs / "wide.png")
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    proc = _translate([f"--workdir={workdir}", f"--input={inputs}", f"--output={out}"],
                      tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "wide.png"]
    assert "wide.png: converted 30x40 grey -> 16x16 RGB" in proc.stdout
    assert "a.png" not in proc.stdout.replace("wide.png", "")  # nothing said of the others
    for p in out.iterdir():
        assert np.asarray(Image.open(p)).shape == (16, 16, 3)
    # The CLI's output is the library's: task.translate of the converted image.
    a = np.asarray(Image.open(inputs / "a.png"), np.float32) / 127.5 - 1
    want = viz.to_uint8(task.translate(state, a[None]))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), want)

    # One file, and --checkpoint by step.
    proc = _translate([f"--workdir={workdir}", f"--input={inputs / 'a.png'}",
                       f"--output={tmp_path / 'one'}", "--checkpoint=3"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "one" / "a.png")), want)

    # Bad input: each a one-paragraph error, exit 2, no traceback.
    for args, pattern in [
        ([f"--input={tmp_path / 'nowhere'}"], "does not exist"),
        ([f"--input={inputs}", "--direction=BtoA"], "translates one way only, 'AtoB'"),
        ([f"--input={inputs}", "--checkpoint=7"], "has no step 7"),
    ]:
        proc = _translate([f"--workdir={workdir}", f"--output={tmp_path / 'x'}", *args],
                          tmp_path)
        assert proc.returncode == 2 and pattern in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG not really")
    proc = _translate([f"--workdir={workdir}", f"--input={bad}", f"--output={tmp_path / 'x'}"],
                      tmp_path)
    assert proc.returncode == 2 and "Cannot decode the image file" in proc.stderr
    assert "broken.png" in proc.stderr


def test_a_workdir_of_another_task_and_an_empty_folder_are_refused(tmp_path, monkeypatch):
    from genjax import translate

    inputs = tmp_path / "in"
    inputs.mkdir()
    with pytest.raises(GenjaxError, match="holds no image files"):
        translate.translate_path(tmp_path, inputs, tmp_path / "out")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(inputs / "a.png")
    gan = tasks.Task(name="gan", init=None, train_step=None, functions={"sample": None})
    config = tasks.defaults("gan")
    monkeypatch.setattr(translate, "load_run", lambda workdir, step: (config, gan, None))
    with pytest.raises(ConfigError, match="holds a 'gan' run, which does not translate"):
        translate.translate_path(tmp_path, inputs, tmp_path / "out")


def test_conversion_to_the_model_input(tmp_path):
    """Grey -> RGB by repetition, RGB -> grey by PIL's luma, any size -> the centred
    square resized: the training pipeline's preparation."""
    from genjax.data.pipeline import _center_square, _resize
    from genjax.translate import read_as_model_input

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    grey, note = read_as_model_input(tmp_path / "rgb.png", 16, 1)
    luma = np.asarray(Image.fromarray(rgb).convert("L"))[..., None]
    np.testing.assert_array_equal(grey, _resize(_center_square(luma), 16))
    assert note == "rgb.png: converted 30x20 RGB -> 16x16 grey, the model's input"
    Image.fromarray(rgb[:16, :16, 0]).save(tmp_path / "g.png")
    colour, note = read_as_model_input(tmp_path / "g.png", 16, 3)
    np.testing.assert_array_equal(colour, np.repeat(rgb[:16, :16, :1], 3, -1))
    assert note == "g.png: converted 16x16 grey -> 16x16 RGB, the model's input"
    same, note = read_as_model_input(tmp_path / "g.png", 16, 1)
    assert note is None and same.shape == (16, 16, 1)


def _config(name):
    namespace: dict = {}
    exec((ROOT / "configs" / name).read_text(), namespace)
    return namespace["get_config"]()


@pytest.mark.parametrize("name", ["pix2pix.py", "pix2pix_digits.py"])
def test_configs_are_valid(name):
    config = _config(name)
    tasks.validate(config)
    assert config.dataset.name in ("photo_colour", "digits_upsample")


def _tiny(name, data, **overrides):
    c = _config(name)
    c.dataset.name = f"folder:{data}"
    c.batch_size, c.num_sample_images = 8, 2
    c.model.ngf, c.model.ndf = 4, 4
    c.log_every_steps = c.sample_every_steps = c.checkpoint_every_steps = 2
    c.num_train_steps = 2
    for k, v in overrides.items():
        section, _, leaf = k.rpartition(".")
        (c[section] if section else c)[leaf] = v
    return c


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("pix2pix.py", 32), ("pix2pix_digits.py", 16)])
def test_configs_networks_train_on_a_folder(tmp_path, name, size):
    """Each config's own depth, PatchGAN and dropout on a grey -> colour folder of its
    image size (the embedded datasets are built elsewhere; these are their shapes)."""
    data = write_two_folders(tmp_path / "pairs", size=size)
    c = _tiny(name, data)
    state = genjax.train_and_evaluate(c, tmp_path / "run")
    assert int(state.step) == 2
    _, task, loaded = genjax.load_run(tmp_path / "run")
    out = task.translate(loaded, np.zeros((2, size, size, 1), np.float32))
    assert out.shape == (2, size, size, 3)
    assert (tmp_path / "run" / "samples" / "translations_step_000002.png").exists()


@pytest.mark.slow
def test_resume_is_bitwise_equal_to_a_straight_run(tmp_path):
    """BatchNorm in G and D, dropout, jittered pairs, the learning rate decaying: 2 steps
    then resumed to 4, bit for bit a straight run of 4. The schedule's lengths are given:
    their defaults follow num_train_steps, which the two runs change."""
    import chex

    data = write_side_by_side(tmp_path / "pairs", size=16)

    def config(steps):
        c = _tiny("pix2pix.py", data, num_train_steps=steps, image_size=16,
                  lr_constant_steps=1, lr_decay_steps=3,
                  **{"model.num_downs": 4, "model.n_layers": 2})
        c.checkpoint_every_steps = 2
        return c

    straight = genjax.train_and_evaluate(config(4), tmp_path / "a")
    genjax.train_and_evaluate(config(2), tmp_path / "b")
    resumed = genjax.train_and_evaluate(config(4), tmp_path / "b")
    assert int(resumed.step) == 4 and jax.tree.leaves(resumed.discriminator.batch_stats)
    chex.assert_trees_all_equal(straight, resumed)


@pytest.mark.slow
@pytest.mark.parametrize("name,size,channels", [("pix2pix.py", 32, (1, 3)),
                                                ("pix2pix_digits.py", 16, (1, 1))])
def test_configs_train_on_their_embedded_datasets(tmp_path, name, size, channels):
    """A few steps of each config on its own embedded dataset (prepared here), then the
    'translation' measurement the task declares (on the photographs: no classifier)."""
    c = _config(name)
    c.dataset.data_dir = str(tmp_path / "tfds")
    c.batch_size, c.num_sample_images, c.num_train_steps = 8, 2, 2
    c.model.ngf, c.model.ndf = 4, 4
    c.log_every_steps = c.sample_every_steps = c.checkpoint_every_steps = 2
    state = genjax.train_and_evaluate(c, tmp_path / "run")
    assert int(state.step) == 2
    _, task, loaded = genjax.load_run(tmp_path / "run")
    assert (task.input_channels, task.target_channels) == channels
    assert task.translate(loaded, np.zeros((1, size, size, 1), np.float32)).shape == \
        (1, size, size, channels[1])
    if name == "pix2pix.py":
        from genjax.evaluate import evaluate_workdir

        result = evaluate_workdir(tmp_path / "run", num=16, write=False)
        assert result["kind"] == "translation" and result["task"] == "pix2pix"
        assert 0 < result["outputs"]["l1"] < 2 and result["outputs"]["colourfulness"] >= 0
