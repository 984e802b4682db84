"""What every task's config shares: the common fields, the generic checks, JSON.

A task module (`genjax/tasks/<family>.py`) owns its schema: `defaults()` starts from
`base(task)` (the fields every run has: seed, steps, batch, image size, logging,
checkpointing, the dataset) and adds the family's own, every field commented. Its
`validate(config)` adds the family's checks to `check`'s generic ones (keys and types
against the task's defaults, the shared fields' values, the batch over the devices).
`genjax.tasks.validate(config)` runs both, before any JAX work, so a misspelt key or a
bad value fails in milliseconds with a message naming the field and the valid choices.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Iterable

import ml_collections

from genjax.errors import ConfigError

# model.conv_impl: 'auto' (the default) or one of genjax.nn's convolution implementations.
CONV_IMPLS = ("auto", "phase", "lax")
DTYPES = ("float32", "bfloat16")  # compute dtypes of the models (model.dtype)
IMAGE_SIZES = (8, 16, 32, 64, 128, 256, 512)

# Fields whose change makes any task's checkpoint unusable; a task adds its own
# (its module's SHAPE_FIELDS).
SHARED_SHAPE_FIELDS = ("task", "image_size", "dataset.name")


def base(task: str) -> ml_collections.ConfigDict:
    """The fields every task's config has, with their defaults."""
    c = ml_collections.ConfigDict()
    c.task = task  # Which module in genjax.tasks trains this config (genjax/tasks/<task>.py).
    c.seed = 0  # Seeds parameters, the task's random draws and the data order.
    c.num_train_steps = 1000  # Parameter updates (iterations) in the whole run.
    c.batch_size = 64  # Global batch, split evenly over all local devices.
    c.image_size = 16  # Images are resized to image_size x image_size (power of two, 8..128; pix2pix and cyclegan 8..256).
    c.log_every_steps = 100  # Console and TensorBoard scalars.
    add_checkpoint_fields(c)
    c.eval_every_steps = 0  # Evaluators (eval/*, <workdir>/eval/), keeping the best; 0 = off.
    c.dataset = dataset_fields()  # Where the training images come from.
    return c


def dataset_fields() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.name = "digits"  # Any TFDS image dataset ('mnist', 'celeb_a', ...) or an embedded one.
    d.split = "train"  # TFDS split to train on.
    d.data_dir = ""  # TFDS data directory; '' means TFDS's default (TFDS_DATA_DIR).
    return d


def add_checkpoint_fields(c: ml_collections.ConfigDict) -> None:
    c.checkpoint_every_steps = 500  # Orbax checkpoint under <workdir>/checkpoints/.
    c.keep_checkpoints = 3  # Newest checkpoints kept (the best evaluated one is kept besides).
    c.max_nonfinite_steps = 20  # Stop after this many consecutive skipped (non-finite) updates.


def add_adamw_fields(c: ml_collections.ConfigDict, learning_rate: float,
                     weight_decay: float) -> None:
    """One AdamW optimiser with a cosine schedule (see `check_adamw`)."""
    c.learning_rate = learning_rate  # Peak AdamW learning rate (cosine decay to 0 over the run).
    c.weight_decay = weight_decay  # AdamW's decoupled weight decay.


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def flatten(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """`{'model.g_width': 32, ...}`: every leaf field under its dotted name."""
    return _flatten(config.to_dict() if hasattr(config, "to_dict") else config)


def _check_keys_and_types(config: ml_collections.ConfigDict, schema: dict[str, Any]) -> None:
    given = flatten(config)
    for name, value in given.items():
        if name not in schema:
            close = difflib.get_close_matches(name, list(schema), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"Unknown config field {name!r}.{hint} A {config.task!r} config has the fields: "
                f"{', '.join(sorted(schema))}. Fix the name in your config file or override."
            )
        expected = schema[name]
        ok = isinstance(value, type(expected)) and not (
            isinstance(value, bool) and not isinstance(expected, bool))
        if isinstance(expected, float) and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(
                f"Config field {name!r} must be a {type(expected).__name__} (like {expected!r}), "
                f"got {value!r} of type {type(value).__name__}."
            )


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def value(config: ml_collections.ConfigDict, dotted: str) -> Any:
    out = config
    for part in dotted.split("."):
        out = out[part]
    return out


def require_positive(config: ml_collections.ConfigDict, names: Iterable[str]) -> None:
    for name in names:
        v = value(config, name)
        require(v > 0, f"Config field {name!r} must be a positive integer, got {v}.")


def require_choice(config: ml_collections.ConfigDict, name: str, choices) -> None:
    v = value(config, name)
    require(v in choices, f"Config field {name!r} is {v!r}; valid choices: {', '.join(choices)}.")


def require_rate(config: ml_collections.ConfigDict, name: str) -> None:
    """A dropout-like probability in [0, 1)."""
    v = value(config, name)
    require(0.0 <= v < 1.0, f"Config field {name!r} must be in [0, 1), got {v}.")


def check_adamw(config: ml_collections.ConfigDict) -> None:
    require(config.learning_rate > 0, "Config field 'learning_rate' must be positive.")
    require(config.weight_decay >= 0, "Config field 'weight_decay' must be 0 or positive.")


def check(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict,
          num_devices: int | None = None, max_image_size: int = 128) -> None:
    """The generic checks: every key is one of `defaults` (the task's schema) with its
    type, and the shared fields have valid values; raises ConfigError naming the first
    bad field. Touches neither JAX nor the disk."""
    _check_keys_and_types(config, flatten(defaults))
    c = config
    require_positive(c, ("num_train_steps", "batch_size", "log_every_steps",
                         "checkpoint_every_steps", "keep_checkpoints", "max_nonfinite_steps"))
    sizes = tuple(size for size in IMAGE_SIZES if size <= max_image_size)
    require(c.image_size in sizes,
            f"Config field 'image_size' must be a power of two from 8 to {max_image_size} "
            f"for task {c.get('task', '?')!r} {sizes}, got {c.image_size}.")
    # Configs saved before a field existed lack it; the loop treats those as the default.
    given = flatten(c)
    for name in ("eval_every_steps", "sample_every_steps"):
        require(given.get(name, 0) >= 0, f"Config field {name!r} must be 0 (off) or a "
                f"positive integer, got {given.get(name)}.")
    require(bool(c.dataset.name), "Config field 'dataset.name' must name a TFDS dataset.")
    if num_devices is not None:
        require(
            c.batch_size % num_devices == 0,
            f"Config field 'batch_size' ({c.batch_size}, the global batch) must be divisible "
            f"by the number of devices ({num_devices}, over all processes); use a multiple "
            f"of {num_devices}, e.g. "
            f"{max(num_devices, c.batch_size // num_devices * num_devices)}.",
        )


def auto_conv_impl(backend: str, image_size: int) -> str:
    """The convolution implementation `model.conv_impl='auto'` stands for on a JAX backend
    (`jax.default_backend()`: 'cpu', 'gpu', 'tpu'), the one measured faster there for the
    whole DCGAN training step (README, "Speed"):

    - cpu: 'phase', 1.8-5x faster than 'lax' at 16x16x1, 32x32x1 and 64x64x3 (2 cores);
      XLA:CPU runs the lhs-dilated convolutions of 'lax' far below its arithmetic rate.
    - gpu: 'lax' up to 32x32 images, 'phase' from 64x64 (one H200, batch 64: 'lax' was
      1.4x faster at 32x32x1, 'phase' 1.3x faster at 64x64x3). Sizes in between these
      two measurements (8, 16; 128) follow the nearer one: unmeasured.
    - tpu, and any other backend: 'lax', XLA's own convolutions, which the 'phase' layers
      only work around on the CPU. Not measured on a TPU.

    Both implementations compute the same function with the same parameters, so the
    choice changes speed and rounding only."""
    if backend == "cpu":
        return "phase"
    if backend == "gpu":
        return "lax" if image_size <= 32 else "phase"
    return "lax"


def conv_impl(config: ml_collections.ConfigDict, backend: str) -> str:
    """The implementation a config's `model.conv_impl` names on `backend`: its explicit
    value, or for 'auto' `auto_conv_impl(backend, config.image_size)`."""
    impl = config.model.conv_impl
    return auto_conv_impl(backend, config.image_size) if impl == "auto" else impl


def resolve_auto(config: ml_collections.ConfigDict, backend: str) -> ml_collections.ConfigDict:
    """`config` with `model.conv_impl='auto'` replaced by what it stands for on `backend`
    (what a run uses and records in config.json): a copy when there is something to
    resolve, else `config` itself. Explicit values, and configs without the field (a task
    with no strided convolutions), are left as they are."""
    if flatten(config).get("model.conv_impl") != "auto":
        return config
    out = ml_collections.ConfigDict(config.to_dict())
    out.model.conv_impl = conv_impl(out, backend)
    return out


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """A config saved by `to_json` (the workdir's config.json), not yet validated
    (`genjax.tasks.validate` does that, against its task's schema)."""
    return ml_collections.ConfigDict(json.loads(text))


def shape_differences(old: ml_collections.ConfigDict, new: ml_collections.ConfigDict,
                      task_fields: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two configs in a way that changes array shapes:
    the shared ones (`SHARED_SHAPE_FIELDS`) and `task_fields`, the task's own."""
    a, b = flatten(old), flatten(new)
    fields = list(dict.fromkeys([*SHARED_SHAPE_FIELDS, *task_fields]))
    return {k: (a.get(k), b.get(k)) for k in fields if a.get(k) != b.get(k)}
