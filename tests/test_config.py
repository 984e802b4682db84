import importlib.util
from pathlib import Path

import ml_collections
import pytest

from genjax import config as config_lib
from genjax.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("[!_]*.py"))


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_file_validates(path):
    config_lib.validate(load(path), num_devices=8)


def _unlocked():
    return ml_collections.ConfigDict(config_lib.gan_defaults().to_dict())


def test_misspelt_key_is_named_with_suggestion():
    c = _unlocked()
    c.num_train_step = 5
    with pytest.raises(ConfigError, match="num_train_step.*Did you mean 'num_train_steps'"):
        config_lib.validate(c)


def test_wrong_type_is_named():
    d = config_lib.gan_defaults().to_dict()
    d["batch_size"] = "64"  # e.g. from a hand-edited JSON file
    c = ml_collections.ConfigDict(d)
    with pytest.raises(ConfigError, match="'batch_size' must be a int"):
        config_lib.validate(c)


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
        config_lib.validate(c)


def test_batch_size_must_divide_by_devices():
    c = _unlocked()
    c.batch_size = 60
    with pytest.raises(ConfigError, match="divisible by the number of local devices \\(8\\)"):
        config_lib.validate(c, num_devices=8)


def test_json_round_trip_and_shape_differences():
    c = config_lib.gan_defaults()
    back = config_lib.from_json(config_lib.to_json(c))
    assert back.to_dict() == c.to_dict()
    other = _unlocked()
    other.model.g_width = 64
    assert config_lib.shape_differences(c, other) == {"model.g_width": (32, 64)}
