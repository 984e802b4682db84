import functools
from types import SimpleNamespace

import chex
import jax
import numpy as np
import pytest

from genjax import tasks as tasks_lib
from genjax import parallel, tasks
from genjax.tasks import gan
from taskutil import assert_one_device_matches_eight, batches, run, tiny

META = SimpleNamespace(image_shape=(8, 8, 1), num_classes=10)


def tiny_config(**overrides):
    fields = {"image_size": 8, "batch_size": 16, "model.latent_dim": 8, "model.g_width": 4,
              "model.d_width": 4}
    return tiny(tasks_lib.defaults("gan"), fields, overrides)


def _differs(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_train_step_moves_both_players_and_ema():
    task = tasks.make(tiny_config(), META)
    s0 = task.init(0)
    s1, metrics = run(task.train_step, s0, batches(1), 1)
    assert int(s1.step) == 1
    assert _differs(s0.generator.params, s1.generator.params)
    assert _differs(s0.discriminator.params, s1.discriminator.params)
    assert _differs(s0.ema["params"], s1.ema["params"])
    for name in ("d/loss", "g/loss", "d/real_prob", "d/fake_prob"):
        assert np.isfinite(metrics[name][0])


def _bound(fn, config):
    """A gan step function with the task's static pieces bound, as `gan.make` does."""
    generator, discriminator = gan.build_models(config, 1)
    g_tx, d_tx = gan.build_optimizers(config)
    kw = dict(generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
              loss=gan.losses.get(config.loss), latent_dim=config.model.latent_dim,
              ema_decay=config.ema_decay)
    names = fn.__code__.co_varnames[fn.__code__.co_argcount:fn.__code__.co_argcount
                                    + fn.__code__.co_kwonlyargcount]
    return functools.partial(fn, **{k: kw[k] for k in names if k in kw})


def test_generator_step_leaves_discriminator_untouched_and_vice_versa():
    config = tiny_config(**{"model.d_dropout": 0.3})
    task = tasks.make(config, META)
    s0 = task.init(0)
    key = jax.random.key(1)

    g_step = _bound(gan.generator_step, config)
    s_g, _ = run(lambda s, b: g_step(s, key, b["image"].shape[0])[:2], s0, batches(1), 2)
    chex.assert_trees_all_equal(s_g.discriminator, s0.discriminator)
    assert _differs(s0.generator.params, s_g.generator.params)
    assert _differs(s0.generator.batch_stats, s_g.generator.batch_stats)

    d_step = _bound(gan.discriminator_step, config)
    s_d, _ = run(lambda s, b: d_step(s, b["image"], key)[:2], s0, batches(1), 2)
    chex.assert_trees_all_equal(s_d.generator, s0.generator)
    chex.assert_trees_all_equal(s_d.ema, s0.ema)
    assert _differs(s0.discriminator.params, s_d.discriminator.params)


@pytest.mark.parametrize("loss", ["non_saturating", "hinge"])
def test_eight_devices_match_one_device(loss):
    """BatchNorm statistics, gradients and noise are global: 8 x 2 behaves as 1 x 16."""
    task = tasks.make(tiny_config(loss=loss), META)
    assert_one_device_matches_eight(task, "g/loss")


def test_step_compiles_once():
    """The loop's own path (replicate, shard, pmap with donation) traces the step once."""
    task = tasks.make(tiny_config(), META)
    step = parallel.pmap(chex.assert_max_traces(lambda s, b: task.train_step(s, b), n=1))
    state = parallel.replicate(task.init(0))
    for b in batches(3):
        laid_out = jax.tree.map(lambda x: x.reshape(8, -1, *x.shape[1:]), b)
        state, _ = step(state, parallel.shard(laid_out))
    assert int(parallel.unreplicate(state).step) == 3


def test_nonfinite_batch_skips_update_and_counts():
    task = tasks.make(tiny_config(), META)
    s0 = task.init(0)
    bad = batches(1)[0]
    bad["image"][0, 0, 0, 0] = np.nan
    s1, metrics = run(task.train_step, s0, [bad], 2)
    chex.assert_trees_all_equal(s1.discriminator, s0.discriminator)
    assert int(s1.skipped) == 1 and int(s1.nonfinite_streak) == 1
    assert int(metrics["train/skipped_updates"][0]) == 1
    floats = [x for x in jax.tree.leaves(s1) if np.issubdtype(np.asarray(x).dtype, np.floating)]
    assert floats and all(np.all(np.isfinite(x)) for x in floats)
    s2, _ = run(task.train_step, s1, batches(1), 2)
    assert int(s2.nonfinite_streak) == 0 and int(s2.skipped) == 1


def test_sample_is_deterministic_and_in_range():
    task = tasks.make(tiny_config(), META)
    state = task.init(0)
    a = task.sample(state, jax.random.key(3), 5)
    b = task.sample(state, jax.random.key(3), 5)
    assert a.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(a, b)
    # Chunking does not change the images: each depends on its own noise only.
    c = gan.sample(state, jax.random.key(3), 5, generator=gan.build_models(tiny_config(), 1)[0],
                   latent_dim=8, chunk=2)
    np.testing.assert_allclose(a, c, atol=1e-6)
