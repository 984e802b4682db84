import importlib.util
from pathlib import Path

import ml_collections
import pytest

from genjax import config as config_lib
from genjax import tasks as tasks_lib
from genjax.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("[!_]*.py"))


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_file_validates(path):
    tasks_lib.validate(load(path), num_devices=8)


def _unlocked():
    return ml_collections.ConfigDict(tasks_lib.defaults("gan").to_dict())


def test_misspelt_key_is_named_with_suggestion():
    c = _unlocked()
    c.num_train_step = 5
    with pytest.raises(ConfigError, match="num_train_step.*Did you mean 'num_train_steps'"):
        tasks_lib.validate(c)


def test_wrong_type_is_named():
    d = tasks_lib.defaults("gan").to_dict()
    d["batch_size"] = "64"  # e.g. from a hand-edited JSON file
    c = ml_collections.ConfigDict(d)
    with pytest.raises(ConfigError, match="'batch_size' must be a int"):
        tasks_lib.validate(c)


@pytest.mark.parametrize("field,value,pattern", [
    ("image_size", 48, "power of two"),
    ("loss", "wasserstein", "non_saturating"),
    ("model.conv_impl", "fft", "phase, lax"),
    ("model.d_dropout", 1.5, r"\[0, 1\)"),
    ("num_train_steps", 0, "positive"),
])
def test_bad_values_are_named_with_choices(field, value, pattern):
    c = _unlocked()
    section, _, leaf = field.rpartition(".")
    (c[section] if section else c)[leaf] = value
    with pytest.raises(ConfigError, match=pattern):
        tasks_lib.validate(c)


@pytest.mark.parametrize("task,size,ok", [
    ("gan", 128, True), ("gan", 256, False), ("cgan", 256, False), ("classifier", 256, False),
    ("cyclegan", 256, True), ("pix2pix", 256, True), ("pix2pix", 512, False),
])
def test_image_size_limit_is_the_tasks(task, size, ok):
    """The DCGAN body takes 8..128; pix2pix and CycleGAN (MAX_IMAGE_SIZE) the reference's 256."""
    c = ml_collections.ConfigDict(tasks_lib.defaults(task).to_dict())
    c.image_size = size
    if ok:
        tasks_lib.validate(c)
    else:
        with pytest.raises(ConfigError, match=f"power of two from 8 to (128|256) for task '{task}'"):
            tasks_lib.validate(c)


def test_batch_size_must_divide_by_devices():
    c = _unlocked()
    c.batch_size = 60
    with pytest.raises(ConfigError,
                       match="divisible by the number of devices \\(8, over all processes\\)"):
        tasks_lib.validate(c, num_devices=8)


def test_json_round_trip_and_shape_differences():
    c = tasks_lib.defaults("gan")
    back = config_lib.from_json(config_lib.to_json(c))
    assert back.to_dict() == c.to_dict()
    tasks_lib.validate(back)
    other = _unlocked()
    other.model.g_width = 64
    assert tasks_lib.shape_differences(c, other) == {"model.g_width": (32, 64)}
    # The shape fields come from the task module: an autoencoder's width is one, a GAN's
    # dropout is not.
    ae = tasks_lib.defaults("autoencoder")
    wider = ml_collections.ConfigDict(ae.to_dict())
    wider.model.width, wider.model.dropout = 64, 0.5
    assert tasks_lib.shape_differences(ae, wider) == {"model.width": (32, 64)}
    assert tasks_lib.shape_differences(c, ae)["task"] == ("gan", "autoencoder")


def test_unknown_task_names_the_task_modules():
    c = _unlocked()
    c.task = "stylegan"
    names = tasks_lib.available()  # found by scanning genjax/tasks/, so a new family adds itself
    assert {"autoencoder", "classifier", "gan", "vae", "pix2pix"} <= set(names)
    with pytest.raises(ConfigError, match="'stylegan' is not a genjax task.*" + ", ".join(names)):
        tasks_lib.validate(c)


def test_every_task_module_has_the_protocol():
    """Each module of genjax/tasks/ is a task: defaults (every field commented in the
    source), validate, SHAPE_FIELDS, data_spec and make."""

    for name in tasks_lib.available():
        module = tasks_lib.module(name)
        for attr in ("defaults", "validate", "SHAPE_FIELDS", "data_spec", "make"):
            assert hasattr(module, attr), (name, attr)
        defaults = module.defaults()
        assert defaults.task == name
        tasks_lib.validate(defaults)
        assert set(module.SHAPE_FIELDS) <= set(config_lib.flatten(defaults))


def test_every_default_field_is_commented():
    """Every assignment of a field in a defaults() source carries a comment (inline or on
    the line above)."""
    import inspect
    import re

    sources = [inspect.getsource(config_lib)] + [
        inspect.getsource(tasks_lib.module(n)) for n in tasks_lib.available()]
    for source in sources:
        lines = source.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s+(c|d)(\.\w+)+ = ", line) and "ConfigDict()" not in line:
                above = lines[i - 1].strip() if i else ""
                assert "#" in line or above.startswith("#"), line


def test_complete_adds_only_the_fields_a_config_lacks():
    """An older config (without fields added since) gets them at their defaults; its own
    values, and a misspelt or mistyped field, are left for validate to judge."""
    from genjax import tasks
    from genjax.errors import ConfigError

    old = tasks.defaults("gan")
    old.seed = 7
    del old.model["d_norm"]
    del old["augment"]
    full = tasks.complete(old)
    assert full.model.d_norm == "batch" and full.augment == "" and full.seed == 7
    tasks.validate(full)
    typo = tasks.defaults("gan")
    typo.model.g_widht = 3
    with pytest.raises(ConfigError, match="g_widht"):
        tasks.validate(tasks.complete(typo))
    wrong = tasks.defaults("gan").to_dict()
    wrong["seed"] = "one"
    with pytest.raises(ConfigError, match="'seed' must be a int"):
        tasks.validate(tasks.complete(ml_collections.ConfigDict(wrong)))
