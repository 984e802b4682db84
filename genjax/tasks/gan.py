"""The unconditional GAN task: a two-player min-max game, trained alternately.

One iteration = `d_steps_per_g_step` discriminator updates on real and generated
images, then one generator update with the discriminator held fixed (its parameters
and BatchNorm statistics untouched). Each update is an explicit optax transition
(`state.update_player`). The generator's EMA is updated after each generator step
and is what `sample` draws from (`generator='raw'`: the trained weights themselves).

This module is the whole family's story besides the model (`genjax.models.dcgan`): its
config schema (`defaults`, `validate`), its state (`GANState`), its batches
(`data_spec`: labelled images, the labels unused), its step, its pictures (`visuals`:
the fixed-noise sample grid) and its evaluator (the generative protocol of
`genjax.evaluate` on `sample`).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from genjax import augment
from genjax import config as config_lib
from genjax import losses, parallel
from genjax.models.dcgan import D_NORMS, Discriminator, Generator
from genjax.state import Player, finish_step, init_player, update_player
from genjax.tasks import Evaluation, Task

GAN_LOSSES = tuple(losses.GAN_LOSSES)
GENERATORS = ("ema", "raw")  # which generator weights `sample` and `generate` use
# Fields whose change changes the state's shapes (besides config.SHARED_SHAPE_FIELDS).
SHAPE_FIELDS = ("model.latent_dim", "model.g_width", "model.d_width", "model.d_norm")


def defaults() -> ml_collections.ConfigDict:
    """Defaults of the unconditional GAN task (DCGAN architecture)."""
    c = config_lib.base("gan")
    c.seed = 0  # Seeds parameters, noise, dropout and the data order.
    c.num_train_steps = 3000  # Generator updates in the whole run.
    c.sample_every_steps = 500  # Fixed-noise sample grid under <workdir>/samples/.
    c.num_sample_images = 100  # Images in each sample grid (a square number reads best).

    c.model = ml_collections.ConfigDict()
    c.model.latent_dim = 64  # Size of the generator's noise vector z.
    c.model.g_width = 32  # Channels of the generator's last hidden layer (doubling inwards).
    c.model.d_width = 32  # Channels of the discriminator's first layer (doubling inwards).
    c.model.d_dropout = 0.0  # Dropout rate after each discriminator block (training only).
    # The discriminator's normalisation: 'batch' (DCGAN), 'spectral' (every layer
    # spectrally normalised, no BatchNorm: SNGAN) or 'none'.
    c.model.d_norm = "batch"
    # Strided (transposed) convolutions: 'phase' (stride-1 per-phase convolutions), 'lax'
    # (plain XLA ops) or 'auto': the one measured faster on the backend the run starts on
    # (genjax.config.auto_conv_impl); config.json records the choice.
    c.model.conv_impl = "auto"
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    c.loss = "non_saturating"  # One of genjax.tasks.gan.GAN_LOSSES.
    c.d_steps_per_g_step = 1  # Discriminator updates before each generator update.
    c.g_learning_rate = 2e-4  # Adam learning rate of the generator.
    c.d_learning_rate = 2e-4  # Adam learning rate of the discriminator.
    c.adam_b1 = 0.5  # Adam beta1 (0.5 as in DCGAN).
    c.adam_b2 = 0.999  # Adam beta2.
    c.ema_decay = 0.999  # EMA of the generator's weights; samples come from the EMA copy.
    # DiffAugment (Zhao et al. 2020) of every image the discriminator sees, real and
    # generated, in both players' updates: a comma-separated subset of 'color',
    # 'translation', 'cutout' (genjax.augment); '' = none.
    c.augment = ""
    # R1 penalty (Mescheder et al. 2018) on real images: r1_weight/2 · E||grad_x D(x)||^2
    # added to the discriminator's loss; 0 = off.
    c.r1_weight = 0.0

    c.eval = ml_collections.ConfigDict()  # How genjax.evaluate measures this run.
    c.eval.split = "test"  # Real images the generated ones are compared with.
    c.eval.num_samples = 0  # Generated images; 0 = as many as dataset.split has (<= 10,000).
    c.eval.seed = 0  # Seeds the generated images' noise and the metrics' random subsets.
    # A genjax classifier run whose features the metrics use; '' = runs/classifier_<dataset>,
    # trained there first (configs/classifier.py's recipe) if missing. A named one must exist.
    c.eval.classifier_workdir = ""
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    """The GAN's own checks (`genjax.tasks.validate` runs them after the generic ones)."""
    config_lib.require_positive(c, ("sample_every_steps", "num_sample_images",
                                    "d_steps_per_g_step", "model.latent_dim",
                                    "model.g_width", "model.d_width"))
    config_lib.require_choice(c, "loss", GAN_LOSSES)
    config_lib.require_choice(c, "model.conv_impl", config_lib.CONV_IMPLS)
    config_lib.require_choice(c, "model.dtype", config_lib.DTYPES)
    config_lib.require_rate(c, "model.d_dropout")
    config_lib.require_choice(c, "model.d_norm", D_NORMS)
    try:
        augment.parse(c.augment)
    except ValueError as error:
        raise config_lib.ConfigError(f"Config field 'augment': {error}") from None
    config_lib.require(c.r1_weight >= 0, "Config field 'r1_weight' must be 0 (off) or "
                       f"positive, got {c.r1_weight}.")
    config_lib.require(0.0 <= c.ema_decay < 1.0,
                       f"Config field 'ema_decay' must be in [0, 1), got {c.ema_decay}.")
    for name in ("g_learning_rate", "d_learning_rate"):
        config_lib.require(config_lib.value(c, name) > 0,
                           f"Config field {name!r} must be positive.")
    num = config_lib.flatten(c).get("eval.num_samples", 0)  # absent in older configs
    config_lib.require(num >= 0, "Config field 'eval.num_samples' must be 0 (as many as the "
                       f"training split has) or positive, got {num}.")


def data_spec(config: ml_collections.ConfigDict):
    """Labelled images (the GAN ignores the labels; the evaluation's classifier uses the
    same dataset's)."""
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config)


@flax.struct.dataclass
class GANState:
    step: jnp.ndarray  # int32: completed iterations (one generator update each).
    key: jnp.ndarray  # uint32 key data; per-step keys are fold_in(key, step).
    generator: Player
    discriminator: Player
    ema: Any  # {'params', 'batch_stats'}: exponential moving average of the generator.
    skipped: jnp.ndarray  # int32: updates skipped because a loss or gradient was not finite.
    nonfinite_streak: jnp.ndarray  # int32: consecutive iterations with a skipped update.

# Purposes of the per-step key, folded in so that each draw has its own stream.
_NOISE, _DROPOUT, _AUGMENT = 0, 1, 2


def build_models(config: ml_collections.ConfigDict, channels: int):
    dtype = jnp.dtype(config.model.dtype)
    conv_impl = config_lib.conv_impl(config, jax.default_backend())
    generator = Generator(image_size=config.image_size, channels=channels,
                          width=config.model.g_width, conv_impl=conv_impl,
                          bn_axis_name=parallel.AXIS, dtype=dtype)
    discriminator = Discriminator(image_size=config.image_size, width=config.model.d_width,
                                  dropout=config.model.d_dropout,
                                  conv_impl=conv_impl,
                                  bn_axis_name=parallel.AXIS, dtype=dtype,
                                  norm=config.model.d_norm)
    return generator, discriminator


def build_optimizers(config: ml_collections.ConfigDict):
    g_tx = optax.adam(config.g_learning_rate, b1=config.adam_b1, b2=config.adam_b2)
    d_tx = optax.adam(config.d_learning_rate, b1=config.adam_b1, b2=config.adam_b2)
    return g_tx, d_tx


def init(seed: int, *, generator, discriminator, g_tx, d_tx, latent_dim: int,
         channels: int) -> GANState:
    g_key, d_key, train_key = jax.random.split(jax.random.key(seed), 3)
    size = generator.image_size
    # train=False: BatchNorm creates its statistics without needing the device axis.
    g_vars = generator.init(g_key, jnp.zeros((2, latent_dim)), train=False)
    d_vars = discriminator.init(d_key, jnp.zeros((2, size, size, channels)), train=False)
    g_player = init_player(g_vars, g_tx)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        key=jax.random.key_data(train_key),
        generator=g_player,
        discriminator=init_player(d_vars, d_tx),
        ema={"params": g_player.params, "batch_stats": g_player.batch_stats},
        skipped=jnp.zeros((), jnp.int32),
        nonfinite_streak=jnp.zeros((), jnp.int32),
    )


def _variables(player: Player) -> dict:
    return {"params": player.params, "batch_stats": player.batch_stats}


def discriminator_step(state: GANState, real: jnp.ndarray, key: jax.Array, *,
                       generator, discriminator, d_tx, loss: losses.GANLoss,
                       latent_dim: int, policy: tuple[str, ...] = (), r1_weight: float = 0.0):
    z = parallel.global_normal(jax.random.fold_in(key, _NOISE), (real.shape[0], latent_dim))
    # The generator runs in training mode (batch statistics), as in the generator step,
    # but its updated statistics are discarded: this step changes the discriminator only.
    fake, _ = generator.apply(_variables(state.generator), z, train=True,
                              mutable=["batch_stats"])
    fake = jax.lax.stop_gradient(fake)
    real_key, fake_key = jax.random.split(parallel.device_key(jax.random.fold_in(key, _DROPOUT)))
    if policy:  # the same transformations for real and fake, each image its own draw
        aug_real, aug_fake = jax.random.split(
            parallel.device_key(jax.random.fold_in(key, _AUGMENT)))
        real = augment.augment(real, aug_real, policy)
        fake = augment.augment(fake, aug_fake, policy)

    def loss_fn(params):
        stats = state.discriminator.batch_stats

        def judge_real(images):
            logits, upd = discriminator.apply({"params": params, "batch_stats": stats}, images,
                                              train=True, mutable=["batch_stats"],
                                              rngs={"dropout": real_key})
            return logits.sum(), (logits, upd)

        if r1_weight:
            # The gradient of D's real logits with respect to the images it saw (through
            # this device's batch statistics when D has BatchNorm).
            (_, (real_logits, upd)), grad = jax.value_and_grad(judge_real, has_aux=True)(real)
            r1 = jnp.mean(jnp.sum(jnp.square(grad), axis=(1, 2, 3)))
        else:
            _, (real_logits, upd) = judge_real(real)
            r1 = jnp.zeros(())
        fake_logits, upd = discriminator.apply({"params": params, **upd}, fake, train=True,
                                               mutable=["batch_stats"],
                                               rngs={"dropout": fake_key})
        total, on_real, on_fake = loss.discriminator(real_logits, fake_logits)
        aux = {"d/loss_real": on_real, "d/loss_fake": on_fake,
               "d/real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
               "d/fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits))}
        if r1_weight:
            aux["d/r1"] = r1
        return total + 0.5 * r1_weight * r1, (upd["batch_stats"], aux)

    player, d_loss, aux, finite = update_player(state.discriminator, d_tx, loss_fn)
    return state.replace(discriminator=player), {"d/loss": d_loss, **aux}, finite


def generator_step(state: GANState, key: jax.Array, per_device_batch: int, *,
                   generator, discriminator, g_tx, loss: losses.GANLoss, latent_dim: int,
                   ema_decay: float, policy: tuple[str, ...] = ()):
    z = parallel.global_normal(jax.random.fold_in(key, _NOISE), (per_device_batch, latent_dim))
    dropout_key = parallel.device_key(jax.random.fold_in(key, _DROPOUT))
    augment_key = parallel.device_key(jax.random.fold_in(key, _AUGMENT))
    d_vars = _variables(state.discriminator)

    def loss_fn(params):
        fake, upd = generator.apply({"params": params, "batch_stats": state.generator.batch_stats},
                                    z, train=True, mutable=["batch_stats"])
        if policy:  # differentiable: the generator learns through the transformations
            fake = augment.augment(fake, augment_key, policy)
        # The discriminator judges in training mode; its statistics' update is dropped
        # and its parameters are constants here, so only the generator is differentiated.
        logits, _ = discriminator.apply(d_vars, fake, train=True, mutable=["batch_stats"],
                                        rngs={"dropout": dropout_key})
        return loss.generator(logits), (upd["batch_stats"], {
            "g/fake_prob": jnp.mean(jax.nn.sigmoid(logits))})

    player, g_loss, aux, finite = update_player(state.generator, g_tx, loss_fn)
    ema = ema_update(state.ema, player, state.step, ema_decay, finite)
    return state.replace(generator=player, ema=ema), {"g/loss": g_loss, **aux}, finite


def ema_update(ema: dict, generator: Player, step, ema_decay: float, finite) -> dict:
    """The generator's exponential moving average after the update of iteration `step`
    (0-based): ema + (1 - d)·(new - ema) with d = min(ema_decay, (1 + step)/(10 + step)),
    a warm-up of the decay (as in tf.train.ExponentialMovingAverage's num_updates) so that
    early samples are not dominated by the random initialisation. Unchanged when the
    update was skipped (`finite` False)."""
    step = step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    new = optax.incremental_update(_variables(generator), ema, step_size=1.0 - decay)
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, ema)


def train_step(state: GANState, batch: dict, *, d_steps: int, d_step, g_step
               ) -> tuple[GANState, dict]:
    """One iteration of the game on this device's share of the global batch.

    With `d_steps` > 1 every discriminator update sees the same real batch and fresh
    noise, each after the previous one; the `d/*` metrics reported are those of the last
    discriminator update (its loss at the parameters before that update).
    `d_step` and `g_step` are `discriminator_step` and `generator_step` with the models,
    optimisers and loss bound (see `make`).
    """
    real = batch["image"]
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    all_finite = jnp.array(True)
    for i in range(d_steps):
        state, d_metrics, finite = d_step(state, real, jax.random.fold_in(step_key, i))
        all_finite &= finite
    state, g_metrics, finite = g_step(state, jax.random.fold_in(step_key, d_steps), real.shape[0])
    return finish_step(state, all_finite & finite, {**d_metrics, **g_metrics})


def generator_variables(state: GANState, which: str = "ema") -> dict:
    """The generator's {'params', 'batch_stats'}: the EMA copy, or 'raw', the trained
    weights themselves."""
    if which not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {which!r}.")
    return state.ema if which == "ema" else _variables(state.generator)


def generate(state: GANState, z: jnp.ndarray, *, generator, chunk: int = 256,
             which: str = "ema") -> jnp.ndarray:
    """Images of the latent codes `z` from the EMA generator (or `which='raw'`) in
    evaluation mode (running BatchNorm averages), so each image depends on its own code
    only."""
    apply = _generate(generator)
    variables = generator_variables(state, which)
    pieces = [apply(variables, z[i:i + chunk]) for i in range(0, z.shape[0], chunk)]
    return jnp.concatenate(pieces)


def sample(state: GANState, key: jax.Array, num: int, *, generator, latent_dim: int,
           chunk: int = 256, which: str = "ema") -> jnp.ndarray:
    """`num` images; the noise is drawn at once from `key`, so the result depends on
    (key, num) only and not on the chunking. `which`: 'ema' or 'raw' generator."""
    z = jax.random.normal(key, (num, latent_dim))
    return generate(state, z, generator=generator, chunk=chunk, which=which)


def visuals(state: GANState, batch, key: jax.Array, *, sample_fn, num: int) -> dict:
    """The sample grid: `num` images of fixed noise (the loop passes the same key at every
    step), written as samples/step_<N>.png."""
    del batch  # drawn from noise only
    return {"samples": (sample_fn(state, key, num), None)}


@functools.cache
def _generate(generator):
    return jax.jit(lambda variables, z: generator.apply(variables, z, train=False))


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    del load_run  # a GAN draws on no other run
    channels = meta.image_shape[-1]
    generator, discriminator = build_models(config, channels)
    g_tx, d_tx = build_optimizers(config)
    latent_dim = config.model.latent_dim
    loss = losses.get(config.loss)
    policy = augment.parse(config.augment)
    sample_fn = functools.partial(sample, generator=generator, latent_dim=latent_dim)
    return Task(
        name="gan",
        init=functools.partial(init, generator=generator, discriminator=discriminator,
                               g_tx=g_tx, d_tx=d_tx, latent_dim=latent_dim, channels=channels),
        train_step=functools.partial(
            train_step, d_steps=config.d_steps_per_g_step,
            d_step=functools.partial(discriminator_step, generator=generator,
                                     discriminator=discriminator, d_tx=d_tx, loss=loss,
                                     latent_dim=latent_dim, policy=policy,
                                     r1_weight=config.r1_weight),
            g_step=functools.partial(generator_step, generator=generator,
                                     discriminator=discriminator, g_tx=g_tx, loss=loss,
                                     latent_dim=latent_dim, ema_decay=config.ema_decay,
                                     policy=policy)),
        visuals=functools.partial(visuals, sample_fn=sample_fn, num=config.num_sample_images),
        evaluators={"generative": Evaluation("generative", {"sample": sample_fn},
                                             {"generator": "ema"})},
        functions={"sample": sample_fn,
                   "generate": functools.partial(generate, generator=generator),
                   "generator_variables": generator_variables,
                   "latent_dim": latent_dim},
    )
