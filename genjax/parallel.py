"""Everything that knows about data parallelism: devices, processes, pmap.

genjax trains with `jax.pmap` over one named axis. Keeping every use of it in this
module (the axis name, collectives, replication, batch placement, per-device keys)
means a move to `jax.jit` with shardings touches one file.

Several processes (hosts): after `initialize` (`jax.distributed`), each process maps the
step over its own local devices, and the collectives inside it (gradient means,
BatchNorm statistics, `global_normal`'s device index) span every device of every
process. Each process feeds its own rows of every global batch (`process_rows`); the
host-side decisions that must agree (stop on a signal, the lock, an evaluation's
figure) go through `any_process` and `broadcast_float`.
"""

from __future__ import annotations

import collections
import itertools
import os
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from genjax.errors import DistributedError

AXIS = "batch"  # The device axis; BatchNorm synchronises its statistics over it.


def device_count() -> int:
    """This process's devices (the leading axis of what it feeds the mapped step)."""
    return jax.local_device_count()


# --- Several processes ----------------------------------------------------------------

# What `initialize` reads when it is not given a value. JAX_COORDINATOR_ADDRESS is JAX's
# own variable; JAX itself reads no process count or index from the environment.
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"The environment variable {name}={value!r} must be an "
                               "integer.") from None


# JAX's cluster kinds that genjax lets JAX detect without being told: TPU VMs (a pod
# slice, also under GKE), SLURM and Open MPI jobs. Kubernetes (other than GKE TPU) and
# mpi4py need the flags or variables.
_DETECTED_CLUSTERS = ("GceTpuCluster", "GkeTpuCluster", "SlurmCluster", "OmpiCluster")


def _cluster_detected() -> bool:
    """Whether JAX's own cluster detection finds one of `_DETECTED_CLUSTERS` with more
    than one process. Uses JAX's private registry of cluster kinds; if that moved,
    nothing is detected and the flags are needed."""
    try:
        from jax._src import clusters
        kinds = clusters.ClusterEnv._cluster_types
    except (ImportError, AttributeError):
        return False
    for kind in kinds:
        if kind.__name__ not in _DETECTED_CLUSTERS:
            continue
        try:
            if kind.is_env_present() and kind.get_process_count() > 1:
                return True
        except Exception:  # a half-configured environment: not a cluster to join
            continue
    return False


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, heartbeat_timeout_seconds: int = 100,
               initialization_timeout_seconds: int = 300) -> bool:
    """Joins a multi-process run (`jax.distributed.initialize`) when there is one; must
    run before anything touches a JAX device. Returns whether it did.

    A value not given is read from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID. With none of them, it joins only where JAX detects a cluster of more
    than one process by itself (a TPU pod slice, a SLURM or Open MPI job), and a single
    process is left alone. `heartbeat_timeout_seconds`: a process that has not been heard
    from for that long counts as dead, and every other process then stops (JAX aborts it,
    naming the dead task) instead of waiting for it forever.
    """
    address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    count = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    index = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if address is None and count is None and index is None and not _cluster_detected():
        return False
    if count is not None and count < 1 or index is not None and count is not None and not (
            0 <= index < count):
        raise DistributedError(
            f"The process index must be in 0..num_processes-1, got process_id={index} with "
            f"num_processes={count}. Give every process the same --num_processes and its "
            "own --process_id (0 on the machine at --coordinator_address).")
    if count == 1 and address is None:
        return False
    # XLA:CPU's collectives across processes (also set by default in recent JAX).
    try:
        if jax.config.jax_cpu_collectives_implementation is None:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:  # a JAX without the option
        pass
    try:
        jax.distributed.initialize(
            coordinator_address=address, num_processes=count, process_id=index,
            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
            initialization_timeout=initialization_timeout_seconds)
    except (ValueError, TypeError) as e:  # values JAX could not complete or accept
        raise DistributedError(
            f"Cannot join the multi-process run ({e}). Give every process the same "
            "--coordinator_address=HOST:PORT (the machine of process 0 and a free port) and "
            "--num_processes, and each its own --process_id; or set JAX_COORDINATOR_ADDRESS, "
            "JAX_NUM_PROCESSES and JAX_PROCESS_ID.") from e
    except RuntimeError as e:
        raise DistributedError(
            f"Cannot join the multi-process run: {e}. Call it before anything touches a "
            "JAX device (train.py does); if the other processes did not start within the "
            f"{initialization_timeout_seconds} s allowed, check that each was given the same "
            "coordinator address and process count.") from e
    return True


def process_count() -> int:
    return jax.process_count()


def multiprocess() -> bool:
    """Whether this is one process of several; unlike `process_count`, it starts no JAX
    backend (so config checks can run before any JAX work)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def process_index() -> int:
    return jax.process_index()


def is_primary() -> bool:
    """Process 0: the one that writes the logs, pictures, evaluations and config.json."""
    return jax.process_index() == 0


def global_device_count() -> int:
    """Devices over all processes: the mapped step's axis size."""
    return jax.device_count()


def process_rows(global_batch: int) -> tuple[int, int]:
    """(first row, rows) of each global batch that this process feeds: the rows of its
    own devices, whose axis indices under pmap are their places in `jax.devices()`."""
    everyone, mine = jax.devices(), jax.local_devices()
    places = sorted(everyone.index(d) for d in mine)
    if places != list(range(places[0], places[0] + len(places))) or \
            len(everyone) != len(mine) * jax.process_count():
        raise DistributedError(
            f"Process {jax.process_index()} holds the devices at places {places} of "
            f"{len(everyone)}; genjax needs every process to hold the same number of "
            "devices, one contiguous block each. Give every process the same devices "
            "(e.g. the same CUDA_VISIBLE_DEVICES count, or XLA_FLAGS on CPU).")
    per_device = global_batch // len(everyone)
    return places[0] * per_device, len(places) * per_device


_any_fn = None


def any_process(flag: bool) -> bool:
    """Whether `flag` is true on any process (a collective: every process must call it,
    at the same point). With one process, the flag itself."""
    if jax.process_count() == 1:
        return bool(flag)
    global _any_fn
    if _any_fn is None:
        _any_fn = jax.pmap(lambda x: jax.lax.psum(x, AXIS), axis_name=AXIS)
    local = np.zeros((device_count(),), np.int32)
    local[0] = int(bool(flag))
    return bool(np.asarray(_any_fn(shard(local)).addressable_shards[0].data)[0] > 0)


def broadcast_float(value: float | None) -> float | None:
    """Process 0's `value` (None or a float64, bit for bit) on every process (a
    collective, as `any_process`)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    bits = np.array([np.nan if value is None else value], np.float64).view(np.int32)
    got = np.asarray(multihost_utils.broadcast_one_to_all(bits)).astype(np.int32)
    out = float(got.view(np.float64)[0])
    return None if np.isnan(out) else out


def sync(name: str) -> None:
    """Waits until every process reaches this point (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


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
