from types import SimpleNamespace

import chex
import jax
import numpy as np
import pytest

from genjax import tasks as tasks_lib
from genjax import parallel, tasks
from genjax.tasks import classifier
from genjax.errors import ConfigError
from taskutil import assert_one_device_matches_eight, batches, run, tiny

META = SimpleNamespace(image_shape=(8, 8, 1), num_classes=10)


def tiny_config(**overrides):
    fields = {"image_size": 8, "batch_size": 16, "model.width": 4, "model.feature_dim": 8}
    return tiny(tasks_lib.defaults("classifier"), fields, overrides)


def test_train_step_learns_a_fixed_batch():
    task = tasks.make(tiny_config(learning_rate=1e-2, **{"model.dropout": 0.0,
                                                         "model.feature_dim": 16}), META)
    s0 = task.init(0)
    batch = batches(1)
    s1, m1 = run(task.train_step, s0, batch * 40, 2)
    assert int(s1.step) == 40
    assert float(m1["clf/loss"][0]) < 0.5 and float(m1["clf/train_accuracy"][0]) > 0.9
    logits, features = task.classify(s1, batch[0]["image"])
    assert logits.shape == (16, 10) and features.shape == (16, 16)


def test_eight_devices_match_one_device():
    """BatchNorm statistics and gradients are global (no dropout: its masks are per device)."""
    task = tasks.make(tiny_config(**{"model.dropout": 0.0}), META)
    assert_one_device_matches_eight(task, "clf/loss")


def test_step_compiles_once_and_classify_is_chunk_invariant():
    task = tasks.make(tiny_config(), META)
    step = parallel.pmap(chex.assert_max_traces(lambda s, b: task.train_step(s, b), n=1))
    state = parallel.replicate(task.init(0))
    for b in batches(3):
        state, _ = step(state, parallel.shard(
            jax.tree.map(lambda x: x.reshape(8, -1, *x.shape[1:]), b)))
    host = parallel.unreplicate(state)
    images = batches(1)[0]["image"]
    whole = task.classify(host, images)
    chunked = classifier.classify(host, images, model=classifier.build_model(
        tiny_config(), 10), chunk=5)
    chex.assert_trees_all_close(whole, chunked, atol=1e-5)


def test_nonfinite_batch_skips_update():
    task = tasks.make(tiny_config(), META)
    s0 = task.init(0)
    bad = batches(1)[0]
    bad["image"][0, 0, 0, 0] = np.nan
    s1, metrics = run(task.train_step, s0, [bad], 2)
    chex.assert_trees_all_equal(s1.model, s0.model)
    assert int(s1.skipped) == 1 and int(metrics["train/nonfinite_streak"][0]) == 1


def test_config_checks_and_unlabelled_data():
    with pytest.raises(ConfigError, match="model.dropout"):
        tiny_config(**{"model.dropout": 1.0})
    with pytest.raises(ConfigError, match="divisible by 2\\^model.num_stages"):
        tiny_config(**{"model.num_stages": 4})
    with pytest.raises(ConfigError, match="d_width"):  # a GAN field in a classifier config
        c = tiny_config()
        c.model.d_width = 4
        tasks_lib.validate(c)
    with pytest.raises(ConfigError, match="class labels"):
        tasks.make(tiny_config(), SimpleNamespace(image_shape=(8, 8, 1), num_classes=None))
