"""Everything that knows about data parallelism over the local devices.

genjax trains with `jax.pmap` over one named axis. Keeping every use of it in this
module (the axis name, collectives, replication, batch placement, per-device keys)
means a move to `jax.jit` with shardings touches one file.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

AXIS = "batch"  # The device axis; BatchNorm synchronises its statistics over it.


def device_count() -> int:
    return jax.local_device_count()


def _sharding(devices=None) -> jax.sharding.NamedSharding:
    devices = devices or jax.local_devices()
    # The mesh axis carries pmap's axis name: pmap returns arrays sharded this way, and
    # inputs placed with any other sharding would make it trace and compile a second time.
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))


def replicate(tree: Any) -> Any:
    """Copies a host pytree onto every local device (leading axis = device)."""
    n = device_count()
    sharding = _sharding()
    return jax.tree.map(lambda x: jax.device_put(np.stack([np.asarray(x)] * n), sharding), tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a replicated pytree, fetched to the host as numpy."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data[0])
                        if isinstance(x, jax.Array) else np.asarray(x[0]), tree)


def shard(batch: Any) -> Any:
    """Places a host batch laid out [devices, per_device, ...] onto the devices."""
    sharding = _sharding()
    return jax.tree.map(lambda x: jax.device_put(x, sharding), batch)


def prefetch(iterator: Iterator[tuple[Any, Any]], size: int = 2) -> Iterator[tuple[Any, Any]]:
    """Yields `(device_batch, tag)` pairs, keeping `size` batches already transferred.

    The tag (the input pipeline's state after that batch) travels with its batch, so a
    checkpoint records exactly the batches the model has consumed, not those prefetched.
    """
    queue = collections.deque()

    def enqueue(n):
        for batch, tag in itertools.islice(iterator, n):
            queue.append((shard(batch), tag))

    enqueue(size)
    while queue:
        yield queue.popleft()
        enqueue(1)


def pmap(fn: Callable, donate_state: bool = True) -> Callable:
    """`fn(state, batch)` mapped over the devices; the state's buffers are donated."""
    return jax.pmap(fn, axis_name=AXIS, donate_argnums=(0,) if donate_state else ())


# --- Inside a mapped function -------------------------------------------------------

def pmean(tree: Any) -> Any:
    return jax.lax.pmean(tree, AXIS)


def device_index() -> jnp.ndarray:
    return jax.lax.axis_index(AXIS)


def num_devices_in_step() -> int:
    return jax.lax.psum(1, AXIS)


def device_key(key: jax.Array) -> jax.Array:
    """A key that differs per device (for dropout masks and other local noise)."""
    return jax.random.fold_in(key, device_index())


def _global_draw(draw: Callable[[tuple[int, ...]], jnp.ndarray],
                 per_device_shape: tuple[int, ...]) -> jnp.ndarray:
    n, b = num_devices_in_step(), per_device_shape[0]
    full = draw((n * b, *per_device_shape[1:]))
    return jax.lax.dynamic_slice_in_dim(full, device_index() * b, b, axis=0)


def global_normal(key: jax.Array, per_device_shape: tuple[int, ...]) -> jnp.ndarray:
    """This device's slice of one normal draw for the whole global batch.

    Drawing the global batch and slicing it makes the noise independent of the
    device count: 8 devices of 8 see exactly what 1 device of 64 sees, so runs can
    move between device counts and be compared with each other.
    """
    return _global_draw(lambda shape: jax.random.normal(key, shape), per_device_shape)


def global_randint(key: jax.Array, per_device_shape: tuple[int, ...], minval, maxval,
                   dtype=jnp.int32) -> jnp.ndarray:
    """This device's slice of one uniform integer draw in [minval, maxval) for the whole
    global batch (see `global_normal`); `jax.random.randint`'s signature."""
    return _global_draw(lambda shape: jax.random.randint(key, shape, minval, maxval, dtype),
                        per_device_shape)
