"""model.conv_impl='auto': the implementation measured faster on each backend, chosen when
the run starts and recorded in config.json (genjax.config.auto_conv_impl).

The expected choices are the README's measurements ("Speed"), written out here by hand:
'phase' on the CPU at every size; on a GPU 'lax' up to 32x32 and 'phase' from 64x64;
'lax' on a TPU."""

import json

import jax
import ml_collections
import pytest

import genjax
from genjax import config as config_lib
from genjax import tasks as tasks_lib
from genjax.errors import ConfigError
from genjax.tasks import gan

MEASURED = {  # (backend, image_size) -> the faster whole DCGAN step there
    ("cpu", 16): "phase", ("cpu", 32): "phase", ("cpu", 64): "phase",
    ("gpu", 32): "lax", ("gpu", 64): "phase",
}
TASKS_WITH_CONV_IMPL = ("gan", "cgan", "autoencoder", "vae", "pix2pix")


def _gan(**fields):
    c = ml_collections.ConfigDict(tasks_lib.defaults("gan").to_dict())
    for name, value in fields.items():
        section, _, leaf = name.rpartition(".")
        (c[section] if section else c)[leaf] = value
    return c


@pytest.mark.parametrize("task", TASKS_WITH_CONV_IMPL)
def test_auto_is_every_conv_tasks_default(task):
    assert tasks_lib.defaults(task).model.conv_impl == "auto"
    tasks_lib.validate(tasks_lib.defaults(task))


@pytest.mark.parametrize("backend,size", sorted(MEASURED))
def test_auto_picks_the_measured_faster_implementation(backend, size):
    assert config_lib.auto_conv_impl(backend, size) == MEASURED[backend, size]


@pytest.mark.parametrize("size", (8, 16, 32, 64, 128))
def test_auto_on_a_tpu_is_lax(size):
    assert config_lib.auto_conv_impl("tpu", size) == "lax"


def test_auto_resolves_to_the_cpu_choice_here():
    assert jax.default_backend() == "cpu"
    resolved = config_lib.resolve_auto(_gan(image_size=32), jax.default_backend())
    assert resolved.model.conv_impl == "phase"
    generator, discriminator = gan.build_models(_gan(image_size=32), 1)
    assert generator.conv_impl == discriminator.conv_impl == "phase"


@pytest.mark.parametrize("backend,size,expected", [
    ("gpu", 32, "lax"), ("gpu", 64, "phase"), ("tpu", 32, "lax"), ("tpu", 64, "lax")])
def test_models_follow_the_backend_jax_reports(monkeypatch, backend, size, expected):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    generator, discriminator = gan.build_models(_gan(image_size=size), 1)
    assert generator.conv_impl == discriminator.conv_impl == expected


@pytest.mark.parametrize("backend", ("cpu", "gpu", "tpu"))
@pytest.mark.parametrize("explicit", ("phase", "lax"))
def test_an_explicit_value_is_kept(monkeypatch, backend, explicit):
    config = _gan(image_size=32, **{"model.conv_impl": explicit})
    assert config_lib.resolve_auto(config, backend) is config
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert gan.build_models(config, 1)[0].conv_impl == explicit


def test_resolving_leaves_the_given_config_alone():
    config = _gan(image_size=64)
    resolved = config_lib.resolve_auto(config, "gpu")
    assert resolved.model.conv_impl == "phase" and config.model.conv_impl == "auto"
    assert {k: v for k, v in config_lib.flatten(resolved).items() if k != "model.conv_impl"} \
        == {k: v for k, v in config_lib.flatten(config).items() if k != "model.conv_impl"}
    classifier = tasks_lib.defaults("classifier")  # no strided convolutions: nothing to do
    assert config_lib.resolve_auto(classifier, "gpu") is classifier


@pytest.mark.parametrize("task", TASKS_WITH_CONV_IMPL)
def test_a_bad_value_is_a_clear_error(task):
    c = ml_collections.ConfigDict(tasks_lib.defaults(task).to_dict())
    c.model.conv_impl = "cudnn"
    with pytest.raises(ConfigError, match=r"'model.conv_impl' is 'cudnn'; valid choices: "
                                          r"auto, phase, lax"):
        tasks_lib.validate(c)


@pytest.mark.slow
def test_config_json_records_the_resolved_value(tmp_path, monkeypatch, capsys):
    """auto on this CPU records 'phase'; the same workdir resumed where JAX reports a TPU
    records 'lax' and says what it recorded before; an explicit value is recorded as is."""
    def run(workdir, steps, **fields):
        c = _gan(image_size=16, batch_size=16, num_sample_images=16, num_train_steps=steps,
                 log_every_steps=2, sample_every_steps=2, checkpoint_every_steps=2,
                 **{"model.latent_dim": 8, "model.g_width": 4, "model.d_width": 4,
                    "dataset.data_dir": str(tmp_path / "tfds"), **fields})
        state = genjax.train_and_evaluate(c, workdir)
        return int(state.step), json.loads((workdir / "config.json").read_text())

    step, saved = run(tmp_path / "auto", 2)
    assert step == 2 and saved["model"]["conv_impl"] == "phase"
    assert "model.conv_impl='auto' is 'phase' on cpu" in capsys.readouterr().out

    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    step, saved = run(tmp_path / "auto", 4)
    assert step == 4 and saved["model"]["conv_impl"] == "lax"
    out = capsys.readouterr().out
    assert "'lax' on tpu" in out and "config.json recorded 'phase'" in out
    assert "Resumed from" in out

    step, saved = run(tmp_path / "explicit", 2, **{"model.conv_impl": "phase"})
    assert saved["model"]["conv_impl"] == "phase"
    assert "model.conv_impl='auto'" not in capsys.readouterr().out
