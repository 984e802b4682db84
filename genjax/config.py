"""Config schema, defaults and validation.

Every recipe under `configs/` starts from one of the defaults here and overrides
fields; nothing else may be added. `validate` checks a config against the schema of
its task before any JAX work, so a misspelt key or a bad value fails in
milliseconds with a message naming the field and the valid choices.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import ml_collections

from genjax import losses
from genjax.errors import ConfigError

GAN_LOSSES = tuple(losses.GAN_LOSSES)
CONV_IMPLS = ("phase", "lax")
DTYPES = ("float32", "bfloat16")
TASKS = ("gan", "classifier", "autoencoder", "vae")
RECONSTRUCTION_LOSSES = tuple(losses.RECONSTRUCTION_LOSSES)
CORRUPTIONS = ("none", "gaussian", "masking")


def _dataset_fields() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.name = "digits"  # Any TFDS image dataset ('mnist', 'cifar10', 'celeb_a', ...).
    d.split = "train"  # TFDS split to train on.
    d.data_dir = ""  # TFDS data directory; '' means TFDS's default (TFDS_DATA_DIR).
    return d


def _add_checkpoint_fields(c: ml_collections.ConfigDict) -> None:
    c.checkpoint_every_steps = 500  # Orbax checkpoint under <workdir>/checkpoints/.
    c.keep_checkpoints = 3  # How many of the newest checkpoints to keep.
    c.max_nonfinite_steps = 20  # Stop after this many consecutive skipped (non-finite) updates.


def gan_defaults() -> ml_collections.ConfigDict:
    """Defaults of the unconditional GAN task (DCGAN architecture)."""
    c = ml_collections.ConfigDict()
    c.task = "gan"  # Which task in genjax.tasks trains this config.
    c.seed = 0  # Seeds parameters, noise, dropout and the data order.
    c.num_train_steps = 3000  # Generator updates in the whole run.
    c.batch_size = 64  # Global batch, split evenly over all local devices.
    c.image_size = 16  # Images are resized to image_size x image_size (power of two, 8..128).
    c.log_every_steps = 100  # Console and TensorBoard scalars.
    c.sample_every_steps = 500  # Fixed-noise sample grid under <workdir>/samples/.
    _add_checkpoint_fields(c)
    c.num_sample_images = 100  # Images in each sample grid (a square number reads best).
    c.eval_every_steps = 0  # genjax.evaluate metrics (eval/*, <workdir>/eval/); 0 = off.

    c.dataset = _dataset_fields()

    c.model = ml_collections.ConfigDict()
    c.model.latent_dim = 64  # Size of the generator's noise vector z.
    c.model.g_width = 32  # Channels of the generator's last hidden layer (doubling inwards).
    c.model.d_width = 32  # Channels of the discriminator's first layer (doubling inwards).
    c.model.d_dropout = 0.0  # Dropout rate after each discriminator block (training only).
    c.model.conv_impl = "phase"  # 'phase': stride-1 per-phase convolutions; 'lax': plain XLA ops.
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    c.loss = "non_saturating"  # One of genjax.config.GAN_LOSSES.
    c.d_steps_per_g_step = 1  # Discriminator updates before each generator update.
    c.g_learning_rate = 2e-4  # Adam learning rate of the generator.
    c.d_learning_rate = 2e-4  # Adam learning rate of the discriminator.
    c.adam_b1 = 0.5  # Adam beta1 (0.5 as in DCGAN).
    c.adam_b2 = 0.999  # Adam beta2.
    c.ema_decay = 0.999  # EMA of the generator's weights; samples come from the EMA copy.

    c.eval = ml_collections.ConfigDict()  # How genjax.evaluate measures this run.
    c.eval.split = "test"  # Real images the generated ones are compared with.
    c.eval.num_samples = 0  # Generated images; 0 = as many as dataset.split has (<= 10,000).
    c.eval.seed = 0  # Seeds the generated images' noise and the metrics' random subsets.
    # A genjax classifier run whose features the metrics use; '' = runs/classifier_<dataset>.
    c.eval.classifier_workdir = ""
    return c


def classifier_defaults() -> ml_collections.ConfigDict:
    """Defaults of the classifier task (genjax.evaluate's feature extractor)."""
    c = ml_collections.ConfigDict()
    c.task = "classifier"  # Which task in genjax.tasks trains this config.
    c.seed = 0  # Seeds parameters, dropout and the data order.
    c.num_train_steps = 1000  # Parameter updates in the whole run.
    c.batch_size = 64  # Global batch, split evenly over all local devices.
    c.image_size = 16  # Images are resized to image_size x image_size (power of two, 8..128).
    c.log_every_steps = 100  # Console and TensorBoard scalars.
    c.eval_every_steps = 500  # Accuracy on eval.split (and at the end, to eval/classifier.json).
    _add_checkpoint_fields(c)

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "digits"  # Any labelled TFDS image dataset ('mnist', 'cifar10', ...).
    c.dataset.split = "train"  # TFDS split to train on.
    c.dataset.data_dir = ""  # TFDS data directory; '' means TFDS's default (TFDS_DATA_DIR).

    c.eval = ml_collections.ConfigDict()
    c.eval.split = "test"  # Held-out split whose accuracy is reported.

    c.model = ml_collections.ConfigDict()
    c.model.width = 32  # Channels of the first stage (doubling per stage).
    c.model.num_stages = 2  # Conv-conv-maxpool stages; image_size must divide by 2^stages.
    c.model.feature_dim = 128  # Units of the penultimate layer: the evaluation features.
    c.model.dropout = 0.3  # Dropout rate before the last layer (training only).
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    c.learning_rate = 2e-3  # Peak AdamW learning rate (cosine decay to 0 over the run).
    c.weight_decay = 1e-4  # AdamW's decoupled weight decay.
    return c


def autoencoder_defaults() -> ml_collections.ConfigDict:
    """Defaults of the convolutional autoencoder task (x -> z -> x)."""
    c = ml_collections.ConfigDict()
    c.task = "autoencoder"  # Which task in genjax.tasks trains this config.
    c.seed = 0  # Seeds parameters, dropout, input corruption and the data order.
    c.num_train_steps = 2000  # Parameter updates in the whole run.
    c.batch_size = 64  # Global batch, split evenly over all local devices.
    c.image_size = 16  # Images are resized to image_size x image_size (power of two, 8..128).
    c.log_every_steps = 100  # Console and TensorBoard scalars.
    c.sample_every_steps = 500  # Pictures (reconstructions, interpolations, ...) in samples/.
    _add_checkpoint_fields(c)
    c.num_sample_images = 64  # Images in a VAE's prior-sample grid (a square number reads best).
    c.eval_every_steps = 0  # genjax.evaluate metrics (eval/*, <workdir>/eval/); 0 = off.

    c.dataset = _dataset_fields()

    c.model = ml_collections.ConfigDict()
    c.model.latent_dim = 16  # Size n of the code z (the image has m = size*size*channels).
    c.model.width = 32  # Channels of the encoder's first block (doubling inwards).
    c.model.batch_norm = True  # BatchNorm after each (de)convolution but the encoder's first.
    c.model.dropout = 0.0  # Dropout rate after each hidden block (training only).
    c.model.conv_impl = "phase"  # 'phase': stride-1 per-phase convolutions; 'lax': plain XLA ops.
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    c.loss = "mse"  # Reconstruction loss: 'mse' (tanh output) or 'bernoulli' (sigmoid output).
    c.learning_rate = 1e-3  # Peak Adam learning rate (cosine decay to 0 over the run).
    c.weight_decay = 0.0  # AdamW's decoupled weight decay.

    c.corruption = ml_collections.ConfigDict()  # Denoising mode: corrupt inputs, not targets.
    c.corruption.kind = "none"  # 'none', 'gaussian' (add N(0, amount^2)), 'masking' (drop pixels).
    c.corruption.amount = 0.0  # Noise std (gaussian, in [-1, 1] units) or drop probability.

    c.eval = ml_collections.ConfigDict()  # How genjax.evaluate measures this run.
    c.eval.split = "test"  # Held-out images: reconstructions, features, pictures.
    c.eval.seed = 0  # Seeds the pictures' test images and the evaluation's random draws.
    c.eval.num_samples = 0  # VAE samples for sample quality; 0 = as many as dataset.split has.
    # A genjax classifier run for the VAE's sample quality; '' = runs/classifier_<dataset>.
    c.eval.classifier_workdir = ""
    # Another autoencoder/VAE run whose interpolations are drawn beside this one's, on the
    # same test images (e.g. 'runs/ae' for a VAE); '' = none.
    c.eval.compare_workdir = ""
    return c


def vae_defaults() -> ml_collections.ConfigDict:
    """Defaults of the variational autoencoder task: the autoencoder's fields plus the
    ELBO's (β, KL warm-up, Gaussian decoder std) and the likelihood estimate's."""
    c = autoencoder_defaults()
    c.task = "vae"
    c.seed = 0  # Seeds parameters, dropout, the latent samples and the data order.
    c.loss = "bernoulli"  # Decoder likelihood: 'bernoulli' or 'mse' (Gaussian, std decoder_std).
    c.decoder_std = 0.1  # Std of the Gaussian decoder ('mse'), in [-1, 1] pixel units.
    c.beta = 1.0  # Weight of the KL term (beta-VAE); the ELBO reported always uses 1.
    c.kl_warmup_steps = 0  # The KL weight rises linearly from 0 to beta over these steps.
    c.eval.iw_samples = 100  # k of the importance-weighted log-likelihood bound (IWAE).
    del c["corruption"]
    return c


_DEFAULTS = {"gan": gan_defaults, "classifier": classifier_defaults,
             "autoencoder": autoencoder_defaults, "vae": vae_defaults}

# Fields whose change makes an existing checkpoint unusable (different shapes).
SHAPE_FIELDS = ("task", "image_size", "model.latent_dim", "model.g_width", "model.d_width",
                "model.width", "model.num_stages", "model.feature_dim", "model.batch_norm")


def defaults_for(task: str) -> ml_collections.ConfigDict:
    if task not in _DEFAULTS:
        raise ConfigError(
            f"config.task={task!r} is not a genjax task. Valid choices: {', '.join(TASKS)}. "
            "Start your config from one of the files under configs/."
        )
    return _DEFAULTS[task]()


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


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Raises ConfigError naming the first bad field; touches neither JAX nor the disk.

    The fields every task has are checked here, the rest by the task's own checks.
    """
    if "task" not in config:
        raise ConfigError("The config has no 'task' field; start from a file under configs/.")
    schema = flatten(defaults_for(config.task))
    _check_keys_and_types(config, schema)
    c = config
    _require_positive(c, ("num_train_steps", "batch_size", "log_every_steps",
                          "checkpoint_every_steps", "keep_checkpoints", "max_nonfinite_steps"))
    _require(
        c.image_size in (8, 16, 32, 64, 128),
        f"Config field 'image_size' must be a power of two from 8 to 128 "
        f"(8, 16, 32, 64, 128), got {c.image_size}.",
    )
    # Configs saved before a field existed lack it; the loop treats those as the default.
    given = flatten(c)
    _require(given.get("eval_every_steps", 0) >= 0,
             "Config field 'eval_every_steps' must be 0 (off) or a positive integer, got "
             f"{given.get('eval_every_steps')}.")
    _require(bool(c.dataset.name), "Config field 'dataset.name' must name a TFDS dataset.")
    _TASK_CHECKS[c.task](c, given)
    if num_devices is not None:
        _require(
            c.batch_size % num_devices == 0,
            f"Config field 'batch_size' ({c.batch_size}) must be divisible by the number of "
            f"local devices ({num_devices}); use a multiple of {num_devices}, e.g. "
            f"{max(num_devices, c.batch_size // num_devices * num_devices)}.",
        )


def _require_positive(config: ml_collections.ConfigDict, names) -> None:
    for name in names:
        value = schema_value(config, name)
        _require(value > 0, f"Config field {name!r} must be a positive integer, got {value}.")


def _require_choice(config: ml_collections.ConfigDict, name: str, choices) -> None:
    value = schema_value(config, name)
    _require(value in choices,
             f"Config field {name!r} is {value!r}; valid choices: {', '.join(choices)}.")


def _validate_gan(c: ml_collections.ConfigDict, given: dict[str, Any]) -> None:
    _require_positive(c, ("sample_every_steps", "num_sample_images", "d_steps_per_g_step",
                          "model.latent_dim", "model.g_width", "model.d_width"))
    _require_choice(c, "loss", GAN_LOSSES)
    _require_choice(c, "model.conv_impl", CONV_IMPLS)
    _require_choice(c, "model.dtype", DTYPES)
    _require(0.0 <= c.model.d_dropout < 1.0,
             f"Config field 'model.d_dropout' must be in [0, 1), got {c.model.d_dropout}.")
    _require(0.0 <= c.ema_decay < 1.0,
             f"Config field 'ema_decay' must be in [0, 1), got {c.ema_decay}.")
    for name in ("g_learning_rate", "d_learning_rate"):
        _require(schema_value(c, name) > 0, f"Config field {name!r} must be positive.")
    _require(given.get("eval.num_samples", 0) >= 0,
             "Config field 'eval.num_samples' must be 0 (as many as the training split has) "
             f"or positive, got {given.get('eval.num_samples')}.")


def _validate_classifier(c: ml_collections.ConfigDict, given: dict[str, Any]) -> None:
    del given  # every classifier config has every field
    _require_positive(c, ("model.width", "model.num_stages", "model.feature_dim"))
    _require_choice(c, "model.dtype", DTYPES)
    _require(c.image_size % 2 ** c.model.num_stages == 0,
             f"Config field 'image_size' ({c.image_size}) must be divisible by "
             f"2^model.num_stages = {2 ** c.model.num_stages}: each stage halves the image.")
    _require(0.0 <= c.model.dropout < 1.0,
             f"Config field 'model.dropout' must be in [0, 1), got {c.model.dropout}.")
    _require(c.learning_rate > 0, "Config field 'learning_rate' must be positive.")
    _require(c.weight_decay >= 0, "Config field 'weight_decay' must be 0 or positive.")


def _validate_autoencoder(c: ml_collections.ConfigDict, given: dict[str, Any]) -> None:
    del given  # every autoencoder config has every field
    _require_positive(c, ("sample_every_steps", "num_sample_images", "model.latent_dim",
                          "model.width"))
    _require_choice(c, "loss", RECONSTRUCTION_LOSSES)
    _require_choice(c, "model.conv_impl", CONV_IMPLS)
    _require_choice(c, "model.dtype", DTYPES)
    _require(0.0 <= c.model.dropout < 1.0,
             f"Config field 'model.dropout' must be in [0, 1), got {c.model.dropout}.")
    _require(c.learning_rate > 0, "Config field 'learning_rate' must be positive.")
    _require(c.weight_decay >= 0, "Config field 'weight_decay' must be 0 or positive.")
    _require(c.eval.num_samples >= 0,
             "Config field 'eval.num_samples' must be 0 (as many as the training split has) "
             f"or positive, got {c.eval.num_samples}.")
    if c.task == "autoencoder":
        _require_choice(c, "corruption.kind", CORRUPTIONS)
        amount = c.corruption.amount
        if c.corruption.kind == "gaussian":
            _require(amount > 0, "Config field 'corruption.amount' is the noise std of "
                     f"corruption.kind='gaussian' and must be positive, got {amount}.")
        elif c.corruption.kind == "masking":
            _require(0 < amount < 1, "Config field 'corruption.amount' is the drop probability "
                     f"of corruption.kind='masking' and must be in (0, 1), got {amount}.")
        else:
            _require(amount == 0, "Config field 'corruption.amount' is set but "
                     "corruption.kind is 'none'; set corruption.kind to 'gaussian' or "
                     "'masking' for a denoising autoencoder, or leave the amount at 0.")
    else:
        _require(c.beta >= 0, f"Config field 'beta' must be 0 or positive, got {c.beta}.")
        _require(c.kl_warmup_steps >= 0,
                 f"Config field 'kl_warmup_steps' must be 0 or positive, got "
                 f"{c.kl_warmup_steps}.")
        _require(c.decoder_std > 0,
                 f"Config field 'decoder_std' must be positive, got {c.decoder_std}.")
        _require(c.eval.iw_samples >= 1,
                 f"Config field 'eval.iw_samples' must be at least 1, got {c.eval.iw_samples}.")


_TASK_CHECKS = {"gan": _validate_gan, "classifier": _validate_classifier,
                "autoencoder": _validate_autoencoder, "vae": _validate_autoencoder}


def schema_value(config: ml_collections.ConfigDict, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """Rebuilds a config saved by `to_json` (the workdir's config.json), validated."""
    config = ml_collections.ConfigDict(json.loads(text))
    validate(config)
    return config


def shape_differences(old: ml_collections.ConfigDict,
                      new: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two configs in a way that changes array shapes."""
    a, b = flatten(old), flatten(new)
    fields = list(SHAPE_FIELDS)
    fields += [k for k in ("dataset.name",) if k in a or k in b]
    return {k: (a.get(k), b.get(k)) for k in fields if a.get(k) != b.get(k)}
