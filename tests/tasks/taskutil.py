"""Helpers shared by the task tests: tiny configs, synthetic batches, a pmap runner."""

import chex
import jax
import ml_collections
import numpy as np

from genjax import config as config_lib
from genjax import parallel


def tiny(defaults: ml_collections.ConfigDict, fields: dict, overrides: dict):
    """`defaults` with `fields` then `overrides` ({'model.width': 4, ...}) set, validated."""
    c = ml_collections.ConfigDict(defaults.to_dict())
    for k, v in {**fields, **overrides}.items():
        section, _, leaf = k.rpartition(".")
        (c[section] if section else c)[leaf] = v
    config_lib.validate(c)
    return c


def batches(n, global_batch=16, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": rng.uniform(-1, 1, (global_batch, 8, 8, 1)).astype(np.float32),
             "label": rng.integers(0, 10, (global_batch,)).astype(np.int32)} for _ in range(n)]


def run(fn, state, global_batches, num_devices):
    """Runs fn(state, batch) under pmap on `num_devices` devices; returns the host state."""
    devices = jax.local_devices()[:num_devices]
    p_fn = jax.pmap(fn, axis_name=parallel.AXIS, devices=devices)
    s = jax.tree.map(lambda x: np.stack([np.asarray(x)] * num_devices), state)
    metrics = None
    for b in global_batches:
        sharded = jax.tree.map(lambda x: x.reshape(num_devices, -1, *x.shape[1:]), b)
        s, metrics = p_fn(s, sharded)
    return jax.tree.map(lambda x: np.asarray(x[0]), s), metrics


def assert_one_device_matches_eight(task, metric: str, steps: int = 3):
    """`steps` train steps on 1 device and on 8 (same global batches) give the same state
    and the same first-step `metric`."""
    s0 = task.init(0)
    one, m1 = run(task.train_step, s0, batches(steps), 1)
    eight, m8 = run(task.train_step, s0, batches(steps), 8)
    chex.assert_trees_all_close(one, eight, atol=2e-5, rtol=2e-4)
    np.testing.assert_allclose(m1[metric][0], m8[metric][0], rtol=1e-4)
