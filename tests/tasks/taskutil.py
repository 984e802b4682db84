"""Helpers shared by the task tests: tiny configs, synthetic batches, a pmap runner."""

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
