"""A new family is a new task module: nothing else in genjax changes. A toy module
(tests/fixtures/plugin_tasks/mean_image.py) is found by its name, validated, trained by
the loop with its pictures, and loaded back by `genjax.run.load_run`."""

from pathlib import Path

import numpy as np
import pytest

import genjax
from genjax import tasks

PLUGINS = Path(__file__).resolve().parent / "fixtures" / "plugin_tasks"


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(PLUGINS)])
    yield
    import sys
    sys.modules.pop("genjax.tasks.mean_image", None)


def test_a_new_task_module_plugs_in(plugin, tmp_path):
    assert "mean_image" in tasks.available()
    config = tasks.defaults("mean_image")
    config.image_size, config.batch_size, config.num_train_steps = 8, 16, 2
    config.log_every_steps = config.checkpoint_every_steps = 2
    config.dataset.data_dir = str(tmp_path / "tfds")
    state = genjax.train_and_evaluate(config, tmp_path / "run")
    assert int(state.step) == 2
    assert (tmp_path / "run" / "samples" / "mean_step_000002.png").exists()
    loaded_config, task, loaded = genjax.load_run(tmp_path / "run")
    assert loaded_config.task == "mean_image"
    np.testing.assert_array_equal(task.mean(loaded), state.model.params["mean"])
    assert float(np.abs(task.mean(loaded)).max()) > 0  # it learned something
    with pytest.raises(genjax.ConfigError, match="has no function 'translate'.*mean, sample"):
        task.translate(loaded, None)
