"""Helpers shared by the task tests: tiny configs, synthetic batches, a pmap runner."""

import chex
import jax
import ml_collections
import numpy as np

from genjax import tasks as tasks_lib
from genjax import parallel


def tiny(defaults: ml_collections.ConfigDict, fields: dict, overrides: dict):
    """`defaults` with `fields` then `overrides` ({'model.width': 4, ...}) set, validated."""
    c = ml_collections.ConfigDict(defaults.to_dict())
    for k, v in {**fields, **overrides}.items():
        section, _, leaf = k.rpartition(".")
        (c[section] if section else c)[leaf] = v
    tasks_lib.validate(c)
    return c


def batches(n, global_batch=16, seed=0, size=8):
    rng = np.random.default_rng(seed)
    return [{"image": rng.uniform(-1, 1, (global_batch, size, size, 1)).astype(np.float32),
             "label": rng.integers(0, 10, (global_batch,)).astype(np.int32)} for _ in range(n)]


def run(fn, state, global_batches, num_devices, every_device=False):
    """Runs fn(state, batch) under pmap on `num_devices` devices; returns the host state
    (device 0's copy, or with `every_device` each device's, stacked) and the metrics."""
    devices = jax.local_devices()[:num_devices]
    p_fn = jax.pmap(fn, axis_name=parallel.AXIS, devices=devices)
    s = jax.tree.map(lambda x: np.stack([np.asarray(x)] * num_devices), state)
    metrics = None
    for b in global_batches:
        sharded = jax.tree.map(lambda x: x.reshape(num_devices, -1, *x.shape[1:]), b)
        s, metrics = p_fn(s, sharded)
    if every_device:
        return jax.tree.map(np.asarray, s), metrics
    return jax.tree.map(lambda x: np.asarray(x[0]), s), metrics


def assert_same_on_every_device(stacked):
    """Every leaf of a state returned by `run(..., every_device=True)` is the same on all
    devices (what the checkpoint, which saves device 0's copy, relies on)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(stacked):
        for d in range(1, leaf.shape[0]):
            np.testing.assert_array_equal(leaf[d], leaf[0], err_msg=f"device {d}, "
                                          f"{jax.tree_util.keystr(path)}")


def assert_one_device_matches_eight(task, metric: str, steps: int = 3, size: int = 8):
    """`steps` train steps on 1 device and on 8 (same global batches) give the same state
    and the same first-step `metric`; on 8 devices the state is the same on each."""
    s0 = task.init(0)
    one, m1 = run(task.train_step, s0, batches(steps, size=size), 1)
    every, m8 = run(task.train_step, s0, batches(steps, size=size), 8, every_device=True)
    assert_same_on_every_device(every)
    eight = jax.tree.map(lambda x: x[0], every)
    chex.assert_trees_all_close(one, eight, atol=2e-5, rtol=2e-4)
    np.testing.assert_allclose(m1[metric][0], m8[metric][0], rtol=1e-4)
