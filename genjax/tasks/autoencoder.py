"""The autoencoder and VAE tasks: one player that learns x -> z -> x.

Autoencoder (task 'autoencoder'): minimises the reconstruction loss of the decoded code,
`losses.reconstruction_loss` ('mse' or 'bernoulli'). In denoising mode the encoder sees
a corrupted input (`corruption.kind` 'gaussian': x + N(0, amount²), clipped to [-1, 1];
'masking': each pixel set to -1, the background, with probability `amount`), while the
target stays the clean image.

VAE (task 'vae'): the encoder gives q(z|x) = N(mean, diag(std²)); z = mean + std·eps
(reparameterisation, eps ~ N(0, I)) is decoded into p(x|z) (Bernoulli, or Gaussian with
std `decoder_std`). It maximises ELBO_β = E_q[log p(x|z)] - β_t·KL(q(z|x) || N(0, I)), the
KL in closed form, β_t = β·min(1, step / kl_warmup_steps). Metrics report the true ELBO
(β = 1) in nats per image.

Each update is the explicit optax transition `state.update_player`; randomness is derived
per step and device from the state's key and split by purpose (dropout, latent noise,
input corruption). The functions below `train_step` run one device in evaluation mode
(BatchNorm running averages, no dropout) and are what notebooks use through the task
(`task.encode`, `task.decode`, `task.reconstruct`, `task.interpolate`, `task.sample`).

This module holds the autoencoder's config schema (`defaults`, `validate`) and the code
both tasks share; `genjax.tasks.vae` holds the VAE's schema and builds its task with
`build(..., variational=True)`. Both use the shared `ModelState`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from absl import logging

from genjax import config as config_lib
from genjax import losses, parallel
from genjax.errors import CheckpointError, ConfigError
from genjax.models.autoencoder import AutoEncoder
from genjax.state import ModelState, finish_step, init_player, update_player
from genjax.tasks import Evaluation, Task

RECONSTRUCTION_LOSSES = tuple(losses.RECONSTRUCTION_LOSSES)
CORRUPTIONS = ("none", "gaussian", "masking")
# Fields whose change changes the state's shapes (besides config.SHARED_SHAPE_FIELDS).
SHAPE_FIELDS = ("model.latent_dim", "model.width", "model.batch_norm")
NUM_PICTURE_IMAGES = 64  # Held-out images the pictures use (traversal ranges come from all).


def defaults() -> ml_collections.ConfigDict:
    """Defaults of the convolutional autoencoder task (x -> z -> x)."""
    c = config_lib.base("autoencoder")
    c.seed = 0  # Seeds parameters, dropout, input corruption and the data order.
    c.num_train_steps = 2000  # Parameter updates in the whole run.
    c.sample_every_steps = 500  # Pictures (reconstructions, interpolations, ...) in samples/.
    c.num_sample_images = 64  # Images in a VAE's prior-sample grid (a square number reads best).

    c.model = ml_collections.ConfigDict()
    c.model.latent_dim = 16  # Size n of the code z (the image has m = size*size*channels).
    c.model.width = 32  # Channels of the encoder's first block (doubling inwards).
    c.model.batch_norm = True  # BatchNorm after each (de)convolution but the encoder's first.
    c.model.dropout = 0.0  # Dropout rate after each hidden block (training only).
    # Strided (transposed) convolutions: 'phase' (stride-1 per-phase convolutions), 'lax'
    # (plain XLA ops) or 'auto': the one measured faster on the backend the run starts on
    # (genjax.config.auto_conv_impl); config.json records the choice.
    c.model.conv_impl = "auto"
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    c.loss = "mse"  # Reconstruction loss: 'mse' (tanh output) or 'bernoulli' (sigmoid output).
    config_lib.add_adamw_fields(c, learning_rate=1e-3, weight_decay=0.0)

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


def validate_shared(c: ml_collections.ConfigDict) -> None:
    """The checks of the fields the autoencoder and the VAE share."""
    config_lib.require_positive(c, ("sample_every_steps", "num_sample_images",
                                    "model.latent_dim", "model.width"))
    config_lib.require_choice(c, "loss", RECONSTRUCTION_LOSSES)
    config_lib.require_choice(c, "model.conv_impl", config_lib.CONV_IMPLS)
    config_lib.require_choice(c, "model.dtype", config_lib.DTYPES)
    config_lib.require_rate(c, "model.dropout")
    config_lib.check_adamw(c)
    config_lib.require(c.eval.num_samples >= 0,
                       "Config field 'eval.num_samples' must be 0 (as many as the training "
                       f"split has) or positive, got {c.eval.num_samples}.")


def validate(c: ml_collections.ConfigDict) -> None:
    """The autoencoder's own checks (after the generic ones)."""
    validate_shared(c)
    config_lib.require_choice(c, "corruption.kind", CORRUPTIONS)
    amount = c.corruption.amount
    if c.corruption.kind == "gaussian":
        config_lib.require(amount > 0, "Config field 'corruption.amount' is the noise std of "
                           f"corruption.kind='gaussian' and must be positive, got {amount}.")
    elif c.corruption.kind == "masking":
        config_lib.require(0 < amount < 1, "Config field 'corruption.amount' is the drop "
                           "probability of corruption.kind='masking' and must be in (0, 1), "
                           f"got {amount}.")
    else:
        config_lib.require(amount == 0, "Config field 'corruption.amount' is set but "
                           "corruption.kind is 'none'; set corruption.kind to 'gaussian' or "
                           "'masking' for a denoising autoencoder, or leave the amount at 0.")


def data_spec(config: ml_collections.ConfigDict):
    """Images (the labels, where the dataset has them, serve the feature evaluation)."""
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config)

# Purposes of the per-step key, folded in so that each draw has its own stream.
_DROPOUT, _LATENT, _CORRUPTION = 0, 1, 2
_CHUNK = 256  # Images per call of the evaluation-mode functions.


def build_model(config: ml_collections.ConfigDict, channels: int,
                variational: bool | None = None) -> AutoEncoder:
    """The model of an autoencoder config, or of a VAE config (`variational`, by default
    whether config.task is 'vae')."""
    m = config.model
    variational = config.task == "vae" if variational is None else variational
    return AutoEncoder(image_size=config.image_size, channels=channels,
                       latent_dim=m.latent_dim, width=m.width,
                       variational=variational, batch_norm=m.batch_norm,
                       dropout=m.dropout, bn_axis_name=parallel.AXIS,
                       conv_impl=config_lib.conv_impl(config, jax.default_backend()),
                       dtype=jnp.dtype(m.dtype))


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_train_steps)
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def init(seed: int, *, model: AutoEncoder, tx, image_shape) -> ModelState:
    params_key, latent_key, train_key = jax.random.split(jax.random.key(seed), 3)
    # train=False: BatchNorm creates its statistics without needing the device axis.
    variables = model.init({"params": params_key, "latent": latent_key},
                           jnp.zeros((2, *image_shape)), train=False)
    return ModelState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(train_key),
                      model=init_player(variables, tx), skipped=jnp.zeros((), jnp.int32),
                      nonfinite_streak=jnp.zeros((), jnp.int32))


def corrupt(x: jnp.ndarray, key: jax.Array, kind: str, amount: float) -> jnp.ndarray:
    """The denoising autoencoder's input: x itself, x + N(0, amount²) clipped to [-1, 1]
    ('gaussian'), or x with each pixel set to -1 with probability `amount` ('masking')."""
    if kind == "none":
        return x
    if kind == "gaussian":
        return jnp.clip(x + amount * jax.random.normal(key, x.shape, x.dtype), -1.0, 1.0)
    if kind == "masking":
        return jnp.where(jax.random.bernoulli(key, amount, x.shape), -1.0, x)
    raise ValueError(f"Unknown corruption {kind!r}.")


def log_likelihood(logits: jnp.ndarray, x: jnp.ndarray, likelihood: str,
                   decoder_std: float) -> jnp.ndarray:
    """log p(x | z) per example of the decoder's logits, in nats."""
    if likelihood == "bernoulli":
        return losses.bernoulli_log_likelihood(logits, x)
    return losses.gaussian_log_likelihood(jnp.tanh(logits), x, decoder_std)


def _psnr(mse: jnp.ndarray) -> jnp.ndarray:
    """Peak signal-to-noise ratio in dB of an MSE in [-1, 1] units (peak-to-peak 2), the
    same as 255² / MSE in uint8 units."""
    return 10.0 * jnp.log10(4.0 / mse)


def train_step(state: ModelState, batch: dict, *, model: AutoEncoder, tx, likelihood: str,
               corruption: tuple[str, float] = ("none", 0.0), beta: float = 1.0,
               kl_warmup_steps: int = 0, decoder_std: float = 0.1
               ) -> tuple[ModelState, dict]:
    """One update on this device's share of the global batch (autoencoder or VAE)."""
    x = batch["image"]
    step_key = parallel.device_key(
        jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step))
    rngs = {"dropout": jax.random.fold_in(step_key, _DROPOUT),
            "latent": jax.random.fold_in(step_key, _LATENT)}
    inputs = corrupt(x, jax.random.fold_in(step_key, _CORRUPTION), *corruption)
    if kl_warmup_steps > 0:
        beta_t = beta * jnp.minimum(1.0, state.step.astype(jnp.float32) / kl_warmup_steps)
    else:
        beta_t = jnp.asarray(beta, jnp.float32)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.model.batch_stats}
        outputs, updates = model.apply(variables, inputs, train=True, mutable=["batch_stats"],
                                       rngs=rngs)
        logits = outputs[0]
        mse = jnp.mean(jnp.square(losses.decoded_image(logits, likelihood) - x))
        aux = {"ae/mse": mse, "ae/psnr": _psnr(mse)}
        if not model.variational:
            loss = losses.reconstruction_loss(logits, x, likelihood)
        else:
            mean, log_std = outputs[1]
            reconstruction = log_likelihood(logits, x, likelihood, decoder_std)
            kl = losses.gaussian_kl(mean, log_std)
            loss = jnp.mean(beta_t * kl - reconstruction)
            aux.update({"vae/elbo": jnp.mean(reconstruction - kl), "vae/kl": jnp.mean(kl),
                        "vae/reconstruction": -jnp.mean(reconstruction), "vae/beta": beta_t})
        return loss, (updates.get("batch_stats", {}), aux)

    player, loss, aux, finite = update_player(state.model, tx, loss_fn)
    return finish_step(state.replace(model=player), finite, {"ae/loss": loss, **aux})


# ------------------------------------------------------------------ evaluation mode


def _variables(state: ModelState) -> dict:
    return {"params": state.model.params, "batch_stats": state.model.batch_stats}


@functools.cache
def _jitted(model: AutoEncoder, method: str):
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False, method=method))


def _chunked(fn, variables, x) -> object:
    pieces = [fn(variables, x[i:i + _CHUNK]) for i in range(0, x.shape[0], _CHUNK)]
    return jax.tree.map(lambda *parts: jnp.concatenate(parts), *pieces)


def posterior(state: ModelState, images, *, model: AutoEncoder):
    """The encoder's output for images [N, H, W, C] in [-1, 1]: the codes z [N, n] of an
    autoencoder, or (mean, log_std) of a VAE's q(z|x)."""
    return _chunked(_jitted(model, "encode"), _variables(state), jnp.asarray(images))


def encode(state: ModelState, images, *, model: AutoEncoder) -> jnp.ndarray:
    """Codes [N, latent_dim]: z of an autoencoder, the posterior mean of a VAE."""
    out = posterior(state, images, model=model)
    return out[0] if model.variational else out


def decode(state: ModelState, z, *, model: AutoEncoder, likelihood: str) -> jnp.ndarray:
    """Images [N, H, W, C] in [-1, 1] of codes z [N, latent_dim] (the decoder's mean)."""
    logits = _chunked(_jitted(model, "decode"), _variables(state), jnp.asarray(z, jnp.float32))
    return losses.decoded_image(logits, likelihood)


def reconstruct(state: ModelState, images, *, model: AutoEncoder,
                likelihood: str) -> jnp.ndarray:
    """decode(encode(images)): the reconstructions (a VAE decodes its posterior mean)."""
    return decode(state, encode(state, images, model=model), model=model,
                  likelihood=likelihood)


def interpolate(state: ModelState, a, b, num: int = 10, *, model: AutoEncoder,
                likelihood: str) -> jnp.ndarray:
    """Images decoded along the straight line between the codes of images a and b
    ([H, W, C] each or [P, H, W, C] pairs): [num, H, W, C], or [P, num, H, W, C]. The
    endpoints are the reconstructions of a and b."""
    single = np.ndim(a) == 3
    a, b = (jnp.asarray(v)[None] if single else jnp.asarray(v) for v in (a, b))
    za, zb = encode(state, jnp.concatenate([a, b]), model=model).reshape(2, a.shape[0], -1)
    t = jnp.linspace(0.0, 1.0, num)[None, :, None]
    z = (1.0 - t) * za[:, None] + t * zb[:, None]  # [P, num, n]
    images = decode(state, z.reshape(-1, z.shape[-1]), model=model, likelihood=likelihood)
    images = images.reshape(a.shape[0], num, *images.shape[1:])
    return images[0] if single else images


def traversals(state: ModelState, image, reference, num_dims: int = 8, steps: int = 9, *,
               model: AutoEncoder, likelihood: str) -> tuple[jnp.ndarray, np.ndarray]:
    """(images [D, steps, H, W, C], dims [D]): the code of `image` with one dimension at a
    time swept over ±2.5 standard deviations of the codes of `reference` images (which
    also centre the sweep), for the D = num_dims dimensions whose codes vary most over
    `reference` (a VAE's unused dimensions vary little)."""
    codes = np.asarray(encode(state, reference, model=model))
    std = codes.std(0)
    dims = np.argsort(-std)[:min(num_dims, codes.shape[1])]
    z0 = np.asarray(encode(state, jnp.asarray(image)[None], model=model))[0]
    offsets = np.linspace(-2.5, 2.5, steps)
    z = np.repeat(z0[None, None], len(dims), 0).repeat(steps, 1)  # [D, steps, n]
    for row, d in enumerate(dims):
        z[row, :, d] = codes[:, d].mean() + offsets * std[d]
    images = decode(state, z.reshape(-1, z.shape[-1]), model=model, likelihood=likelihood)
    return images.reshape(len(dims), steps, *images.shape[1:]), dims


def sample(state: ModelState, key: jax.Array, num: int, *, model: AutoEncoder,
           likelihood: str) -> jnp.ndarray:
    """A VAE's images of `num` codes from the prior N(0, I) (the decoder's means)."""
    z = jax.random.normal(key, (num, model.latent_dim))
    return decode(state, z, model=model, likelihood=likelihood)


def log_likelihood_bounds(state: ModelState, images, key: jax.Array, k: int, *,
                          model: AutoEncoder, likelihood: str, decoder_std: float
                          ) -> dict[str, np.ndarray]:
    """Per-image bounds on log p(x) in nats, from k posterior samples z_j ~ q(z|x):

      elbo  = (1/k) sum_j log p(x|z_j) - KL(q(z|x) || p(z))   (the KL in closed form)
      iwae  = log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x)      (Burda et al. 2016)

    with elbo <= iwae <= log p(x) in expectation, iwae tightening as k grows. Returns
    numpy arrays [N] (and the mean reconstruction and KL terms)."""
    mean, log_std = posterior(state, images, model=model)
    decode_logits = _jitted(model, "decode")
    variables = _variables(state)
    out = {"elbo": [], "iwae": [], "reconstruction": [], "kl": []}
    per_chunk = max(1, _CHUNK // k)
    for i in range(0, mean.shape[0], per_chunk):
        x = jnp.asarray(images[i:i + per_chunk])
        m, s = mean[i:i + per_chunk], log_std[i:i + per_chunk]
        eps = jax.random.normal(jax.random.fold_in(key, i), (k, *m.shape))
        z = m + jnp.exp(s) * eps  # [k, B, n]
        logits = decode_logits(variables, z.reshape(-1, z.shape[-1]))
        x_rep = jnp.broadcast_to(x, (k, *x.shape)).reshape(-1, *x.shape[1:])
        log_px = log_likelihood(logits, x_rep, likelihood, decoder_std).reshape(k, -1)
        zf = z.reshape(-1, z.shape[-1])
        log_pz = losses.log_normal(zf, 0.0, 0.0).reshape(k, -1)
        log_qz = losses.log_normal(zf, jnp.tile(m, (k, 1)), jnp.tile(s, (k, 1))).reshape(k, -1)
        kl = losses.gaussian_kl(m, s)
        out["reconstruction"].append(np.asarray(log_px.mean(0)))
        out["kl"].append(np.asarray(kl))
        out["elbo"].append(np.asarray(log_px.mean(0) - kl))
        out["iwae"].append(np.asarray(
            jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - jnp.log(k)))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def visuals(state: ModelState, batch, key: jax.Array, *, model: AutoEncoder, likelihood: str,
            corruption: tuple[str, float] = ("none", 0.0), partner=None, sample_fn=None,
            num_samples: int = 0) -> dict[str, tuple[np.ndarray, int]]:
    """The loop's pictures from its fixed held-out batch: `pictures` of its images, and,
    for a VAE (`sample_fn`), `num_samples` prior samples of fixed noise (written as
    samples/step_<N>.png)."""
    out = {}
    if sample_fn is not None:
        out["samples"] = (np.asarray(sample_fn(state, key, num_samples)), None)
    out.update(pictures(state, batch["image"], key, partner, model=model,
                        likelihood=likelihood, corruption=corruption))
    return out


def pictures(state: ModelState, images, key: jax.Array, partner=None, *, model: AutoEncoder,
             likelihood: str, corruption: tuple[str, float] = ("none", 0.0)
             ) -> dict[str, tuple[np.ndarray, int]]:
    """The pictures drawn during training, from fixed held-out `images` [N >= 16]:
    name -> (images [M, H, W, C] in [-1, 1], columns of the grid).

      reconstructions  rows of 8: inputs (corrupted ones too in denoising mode), then
                       their reconstructions, for 16 images
      interpolations   one row per pair of images: image a, 10 decodings along the line
                       from z_a to z_b, image b (8 pairs; `interpolation_rows`); with
                       `partner` = (task, state) of another autoencoder run, each row is
                       followed by that run's row of the same pair
      traversals       one row per code dimension (the 8 that vary most over `images`):
                       the first image's code with that dimension swept over ±2.5 std
    """
    images = jnp.asarray(images)
    shown = images[:16]
    rows = [shown]
    inputs = corrupt(shown, key, *corruption)
    if corruption[0] != "none":
        rows.append(inputs)
    rows.append(reconstruct(state, inputs, model=model, likelihood=likelihood))
    # Interleave per row of 8: input row, (corrupted row), reconstruction row, ...
    blocks = [r.reshape(2, 8, *r.shape[1:]) for r in rows]
    recon = jnp.stack(blocks, axis=1).reshape(-1, *shown.shape[1:])

    interp = interpolation_rows(
        functools.partial(interpolate, model=model, likelihood=likelihood), state, images)
    columns = INTERPOLATION_STEPS + 2
    if partner is not None:
        theirs = interpolation_rows(partner[0].interpolate, partner[1], images)
        both = np.stack([r.reshape(-1, columns, *images.shape[1:]) for r in (interp, theirs)],
                        axis=1)
        interp = both.reshape(-1, *images.shape[1:])
    sweep, _ = traversals(state, images[0], images, model=model, likelihood=likelihood)
    return {
        "reconstructions": (np.asarray(recon), 8),
        "interpolations": (interp, columns),
        "traversals": (np.asarray(sweep.reshape(-1, *images.shape[1:])), sweep.shape[1]),
    }


INTERPOLATION_STEPS = 10


def interpolation_rows(interpolate_fn, state, images, pairs: int = 8) -> np.ndarray:
    """[pairs, steps + 2, H, W, C] flattened to images: per row, test image a_i, the
    decodings from z(a_i) to z(b_i), then b_i, with a = images[:pairs] and
    b = images[pairs:2·pairs]. Two runs given the same images draw the same pairs."""
    images = jnp.asarray(images)
    pairs = min(pairs, images.shape[0] // 2)
    a, b = images[:pairs], images[pairs:2 * pairs]
    path = interpolate_fn(state, a, b, INTERPOLATION_STEPS)
    rows = jnp.concatenate([a[:, None], path, b[:, None]], axis=1)
    return np.asarray(rows.reshape(-1, *images.shape[1:]))


def load_partner(workdir: str, load_run, image_shape):
    """(task, state) of the run named by eval.compare_workdir, whose interpolations are
    drawn beside this run's; None (with a warning) while it has no checkpoint. A run that
    cannot interpolate, or makes images of another shape, is a ConfigError."""
    try:
        _, task, state = load_run(workdir)
    except CheckpointError as e:
        logging.warning("eval.compare_workdir: %s Drawing this run's interpolations alone.", e)
        return None
    if not {"interpolate", "decode", "latent_dim"} <= set(task.functions):
        raise ConfigError(f"Config field 'eval.compare_workdir' is {str(workdir)!r}, which is "
                          "not an autoencoder or VAE run. Name one, or set it to ''.")
    shape = jax.eval_shape(task.decode, state, jax.ShapeDtypeStruct((1, task.latent_dim),
                                                                    jnp.float32)).shape[1:]
    if tuple(shape) != tuple(image_shape):
        raise ConfigError(f"Config field 'eval.compare_workdir' is {str(workdir)!r}, whose "
                          f"images are {tuple(shape)}, not {tuple(image_shape)} like this "
                          "run's. Name a run on the same dataset and image_size, or set it "
                          "to ''.")
    return task, state


def build(config: ml_collections.ConfigDict, meta, *, variational: bool,
          load_run=None) -> Task:
    """The autoencoder's task (`variational` False) or the VAE's. `load_run` (given by the
    training loop) loads the run that eval.compare_workdir names, for the pictures."""
    channels = meta.image_shape[-1]
    model = build_model(config, channels, variational)
    tx = build_optimizer(config)
    image_shape = (config.image_size, config.image_size, channels)
    likelihood = config.loss
    if variational:
        step_options = dict(beta=config.beta, kl_warmup_steps=config.kl_warmup_steps,
                            decoder_std=config.decoder_std)
        corruption = ("none", 0.0)
    else:
        corruption = (config.corruption.kind, config.corruption.amount)
        step_options = dict(corruption=corruption)
    bound = dict(model=model, likelihood=likelihood)
    settings = config.eval
    partner = None
    if load_run is not None and settings.get("compare_workdir", ""):
        partner = load_partner(settings.compare_workdir, load_run, image_shape)
    functions = {
        "encode": functools.partial(encode, model=model),
        "decode": functools.partial(decode, **bound),
        "reconstruct": functools.partial(reconstruct, **bound),
        "interpolate": functools.partial(interpolate, **bound),
        "traversals": functools.partial(traversals, **bound),
        "pictures": functools.partial(pictures, corruption=corruption, **bound),
        "latent_dim": config.model.latent_dim,
    }
    measured = {"encode": functions["encode"], "decode": functions["decode"]}
    options = {"likelihood": False, "sample_quality": False}
    visual_options = {}
    if variational:
        functions["sample"] = functools.partial(sample, **bound)
        functions["generate"] = functions["decode"]
        functions["log_likelihood"] = functools.partial(
            log_likelihood_bounds, decoder_std=config.decoder_std, **bound)
        measured.update(sample=functions["sample"], log_likelihood=functions["log_likelihood"])
        options = {"likelihood": True, "iw_samples": int(settings.get("iw_samples", 1)),
                   "sample_quality": True, "decoder": likelihood}
        visual_options = dict(sample_fn=functions["sample"],
                              num_samples=config.num_sample_images)
    return Task(
        name=config.task,
        init=functools.partial(init, model=model, tx=tx, image_shape=image_shape),
        train_step=functools.partial(train_step, model=model, tx=tx, likelihood=likelihood,
                                     **step_options),
        visuals=functools.partial(visuals, corruption=corruption, partner=partner,
                                  **visual_options, **bound),
        evaluators={"autoencoding": Evaluation("autoencoding", measured, options)},
        held_out=NUM_PICTURE_IMAGES,
        held_out_seed=int(settings.get("seed", 0)),
        functions=functions,
    )


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    return build(config, meta, variational=False, load_run=load_run)
