"""The class-conditional GAN task: G(z, y) and D(x, y), trained alternately.

One iteration = `d_steps_per_g_step` discriminator updates, then one generator update
with the discriminator held fixed, each an explicit optax transition
(`state.update_player`), as in the unconditional task (`genjax.tasks.gan`). The
generator makes images of the batch's own labels, so its classes follow the data's.

The discriminator's loss (`losses.matching_aware_discriminator`, weight w =
`matching_weight`): genuine images with their labels are real; generated images with
their labels are fake; with w > 0, genuine images with a *wrong* label y' (drawn
uniformly from the other classes, `losses.mismatched_labels`) are fake too:

    L_D = L_real(D(x, y)) + w·L_fake(D(x, y')) + (1 - w)·L_fake(D(G(z, y), y))
        [+ λ_ac·(CE(c(x), y) + CE(c(G(z, y)), y))                for 'acgan']
    L_G = L_gen(D(G(z, y), y))  [+ λ_ac·CE(c(G(z, y)), y)       for 'acgan']

For 'acgan' (an adversarial head a(x) that does not see the label, plus a class head
c(x)) the weight decides the game:
  * w = 0 is the vanilla AC-GAN of Odena et al. 2017: the adversarial terms use a(x)
    alone, L_real(a(x)) + L_fake(a(G(z, y))) for D and L_gen(a(G(z, y))) for G, and the
    auxiliary class loss λ_ac·CE(c(·), y) is added on real and fake for D and on fake
    for G (the brackets above).
  * w > 0 is the matching-aware extension: every adversarial term scores the *pair*,
    s(x, y) = a(x) + log p_c(y | x) + log K (the adversarial logit plus the class head's
    log-probability of the label relative to a uniform guess), so that D can call a
    genuine image with a wrong label fake; the class losses stay as in vanilla AC-GAN.
    A class head that cannot tell classes leaves a(x) unchanged; one sure of another
    class makes the pair look fake.
For 'concat' and 'projection' D's logit already scores the pair. The generator never
sees a wrong label. `pair_score` (D's score of pairs in evaluation mode, what the
'conditional' evaluation's matched-vs-mismatched AUC measures) is s(x, y) for 'acgan'
at any w: the adversarial logit alone cannot tell labels.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from genjax import config as config_lib
from genjax import losses, parallel
from genjax.models.conditional import (CONDITIONINGS, ConditionalDiscriminator,
                                       ConditionalGenerator)
from genjax.state import Player, finish_step, init_player, update_player
from genjax.tasks import Evaluation, Task
from genjax.tasks import gan
from genjax.tasks.gan import GANState, ema_update

SHAPE_FIELDS = (*gan.SHAPE_FIELDS, "model.embed_dim", "model.conditional_bn",
                "model.conditioning")


def defaults() -> ml_collections.ConfigDict:
    """Defaults of the class-conditional GAN: the GAN's fields plus the conditioning."""
    c = gan.defaults()
    c.task = "cgan"  # Which module of genjax/tasks/ trains this config.
    c.model.embed_dim = 16  # Size of the learned label embedding (G's input; D's 'concat').
    c.model.conditional_bn = False  # G's BatchNorm with a per-class scale and shift.
    # How D sees the label: 'concat' (input channels), 'projection' (Miyato & Koyama
    # 2018) or 'acgan' (an auxiliary classifier head, Odena et al. 2017).
    c.model.conditioning = "projection"
    # Weight w of the matching-aware term: genuine images with a wrong label count as
    # fake with weight w, generated ones with 1 - w (0 = off; 0.5 = GAN-CLS).
    c.matching_weight = 0.5
    c.ac_weight = 1.0  # Weight of the AC-GAN class loss ('acgan' only).
    c.num_sample_images = 10  # Columns of the class-by-noise grid (one row per class).
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    """The GAN's checks and the conditioning's."""
    gan.validate(c)
    config_lib.require_positive(c, ("model.embed_dim",))
    config_lib.require_choice(c, "model.conditioning", CONDITIONINGS)
    config_lib.require(0.0 <= c.matching_weight <= 1.0, "Config field 'matching_weight' "
                       f"must be in [0, 1] (0 = off, 0.5 = GAN-CLS), got {c.matching_weight}.")
    config_lib.require(c.ac_weight >= 0, "Config field 'ac_weight' must be 0 or positive, "
                       f"got {c.ac_weight}.")
    for name, off in (("augment", ""), ("r1_weight", 0.0), ("model.d_norm", "batch")):
        config_lib.require(config_lib.value(c, name) == off, (
            f"Config field {name!r} is {config_lib.value(c, name)!r}, but the conditional "
            f"GAN does not apply it yet; leave it at {off!r} (the unconditional GAN, "
            "configs/dcgan.py, has it)."))


def data_spec(config: ml_collections.ConfigDict):
    """Labelled images: a dataset without class labels is an error before training."""
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config, needs_labels=True)

# Purposes of the per-step key, folded in so that each draw has its own stream.
_NOISE, _DROPOUT, _WRONG = 0, 1, 2


def build_models(config: ml_collections.ConfigDict, channels: int, num_classes: int):
    dtype = jnp.dtype(config.model.dtype)
    common = dict(image_size=config.image_size, num_classes=num_classes,
                  embed_dim=config.model.embed_dim,
                  conv_impl=config_lib.conv_impl(config, jax.default_backend()),
                  bn_axis_name=parallel.AXIS, dtype=dtype)
    generator = ConditionalGenerator(channels=channels, width=config.model.g_width,
                                     conditional_bn=config.model.conditional_bn, **common)
    discriminator = ConditionalDiscriminator(
        conditioning=config.model.conditioning, width=config.model.d_width,
        dropout=config.model.d_dropout, **common)
    return generator, discriminator


def init(seed: int, *, generator, discriminator, g_tx, d_tx, latent_dim: int,
         channels: int) -> GANState:
    g_key, d_key, train_key = jax.random.split(jax.random.key(seed), 3)
    size = generator.image_size
    labels = jnp.zeros((2,), jnp.int32)
    g_vars = generator.init(g_key, jnp.zeros((2, latent_dim)), labels, train=False)
    d_vars = discriminator.init(d_key, jnp.zeros((2, size, size, channels)), labels,
                                train=False)
    g_player = init_player(g_vars, g_tx)
    return GANState(
        step=jnp.zeros((), jnp.int32), key=jax.random.key_data(train_key),
        generator=g_player, discriminator=init_player(d_vars, d_tx),
        ema={"params": g_player.params, "batch_stats": g_player.batch_stats},
        skipped=jnp.zeros((), jnp.int32), nonfinite_streak=jnp.zeros((), jnp.int32))


def _variables(player: Player) -> dict:
    return {"params": player.params, "batch_stats": player.batch_stats}


def pair_scores(logits, class_logits, labels, num_classes: int):
    """D's score of (image, label) pairs: its logit, or for AC-GAN (class logits given)
    the logit plus log p_c(label | image) + log K (see the module docstring)."""
    if class_logits is None:
        return logits
    log_p = jnp.take_along_axis(jax.nn.log_softmax(class_logits), labels[:, None], axis=1)
    return logits + log_p[:, 0] + math.log(num_classes)


def adversarial_scores(logits, class_logits, labels, num_classes: int,
                       matching_weight: float):
    """What the adversarial loss terms see: the pair score with the matching-aware term
    on, and for vanilla AC-GAN (w = 0) the adversarial logit alone (module docstring)."""
    if matching_weight > 0:
        return pair_scores(logits, class_logits, labels, num_classes)
    return logits


def _class_loss(class_logits, labels):
    if class_logits is None:
        return jnp.zeros(())
    return optax.softmax_cross_entropy_with_integer_labels(class_logits, labels).mean()


def discriminator_step(state: GANState, real, labels, key: jax.Array, *, generator,
                       discriminator, d_tx, loss: losses.GANLoss, latent_dim: int,
                       num_classes: int, matching_weight: float, ac_weight: float):
    z = parallel.global_normal(jax.random.fold_in(key, _NOISE), (real.shape[0], latent_dim))
    # Training-mode generator as in its own step; its statistics' update is discarded.
    fake, _ = generator.apply(_variables(state.generator), z, labels, train=True,
                              mutable=["batch_stats"])
    fake = jax.lax.stop_gradient(fake)
    wrong = losses.mismatched_labels(jax.random.fold_in(key, _WRONG), labels, num_classes,
                                     randint=parallel.global_randint)
    keys = jax.random.split(parallel.device_key(jax.random.fold_in(key, _DROPOUT)), 3)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.discriminator.batch_stats}

        def judge(images, pair_labels, dropout_key):
            nonlocal variables
            (logits, class_logits), upd = discriminator.apply(
                variables, images, pair_labels, train=True, mutable=["batch_stats"],
                rngs={"dropout": dropout_key})
            variables = {"params": params, **upd}
            return logits, class_logits

        real_logits, real_classes = judge(real, labels, keys[0])
        fake_logits, fake_classes = judge(fake, labels, keys[1])
        scores = functools.partial(adversarial_scores, num_classes=num_classes,
                                   matching_weight=matching_weight)
        real_scores = scores(real_logits, real_classes, labels)
        fake_scores = scores(fake_logits, fake_classes, labels)
        if matching_weight > 0:
            wrong_logits, wrong_classes = judge(real, wrong, keys[2])
            wrong_scores = scores(wrong_logits, wrong_classes, wrong)
        else:  # the term is off: no third pass
            wrong_scores = real_scores
        total, on_real, on_wrong, on_fake = losses.matching_aware_discriminator(
            loss, real_scores, wrong_scores, fake_scores, matching_weight)
        class_loss = _class_loss(real_classes, labels) + _class_loss(fake_classes, labels)
        aux = {"d/loss_real": on_real, "d/loss_fake": on_fake,
               "d/real_prob": jnp.mean(jax.nn.sigmoid(real_scores)),
               "d/fake_prob": jnp.mean(jax.nn.sigmoid(fake_scores))}
        if matching_weight > 0:
            aux["d/loss_wrong"] = on_wrong
            aux["d/wrong_prob"] = jnp.mean(jax.nn.sigmoid(wrong_scores))
        if real_classes is not None:
            aux["d/class_loss"] = class_loss
            aux["d/real_class_accuracy"] = jnp.mean(jnp.argmax(real_classes, -1) == labels)
        return total + ac_weight * class_loss, (variables["batch_stats"], aux)

    player, d_loss, aux, finite = update_player(state.discriminator, d_tx, loss_fn)
    return state.replace(discriminator=player), {"d/loss": d_loss, **aux}, finite


def generator_step(state: GANState, labels, key: jax.Array, *, generator, discriminator,
                   g_tx, loss: losses.GANLoss, latent_dim: int, num_classes: int,
                   ac_weight: float, ema_decay: float, matching_weight: float):
    z = parallel.global_normal(jax.random.fold_in(key, _NOISE), (labels.shape[0], latent_dim))
    dropout_key = parallel.device_key(jax.random.fold_in(key, _DROPOUT))
    d_vars = _variables(state.discriminator)

    def loss_fn(params):
        fake, upd = generator.apply(
            {"params": params, "batch_stats": state.generator.batch_stats}, z, labels,
            train=True, mutable=["batch_stats"])
        # D judges in training mode with its parameters held fixed and its statistics'
        # update dropped: only the generator is differentiated and changed.
        (logits, class_logits), _ = discriminator.apply(
            d_vars, fake, labels, train=True, mutable=["batch_stats"],
            rngs={"dropout": dropout_key})
        scores = adversarial_scores(logits, class_logits, labels, num_classes,
                                    matching_weight)
        class_loss = _class_loss(class_logits, labels)
        aux = {"g/fake_prob": jnp.mean(jax.nn.sigmoid(scores))}
        if class_logits is not None:
            aux["g/class_loss"] = class_loss
        return loss.generator(scores) + ac_weight * class_loss, (upd["batch_stats"], aux)

    player, g_loss, aux, finite = update_player(state.generator, g_tx, loss_fn)
    ema = ema_update(state.ema, player, state.step, ema_decay, finite)
    return state.replace(generator=player, ema=ema), {"g/loss": g_loss, **aux}, finite


def train_step(state: GANState, batch: dict, *, d_steps: int, d_step, g_step
               ) -> tuple[GANState, dict]:
    """One iteration on this device's share of the global batch (`d_step`, `g_step`:
    the step functions above with the models, optimisers and settings bound)."""
    return conditioned_train_step(state, batch["image"], batch["label"], d_steps=d_steps,
                                  d_step=d_step, g_step=g_step)


def conditioned_train_step(state, real, condition, *, d_steps: int, d_step, g_step):
    """The alternation of a conditional game: `d_steps` updates `d_step(state, real,
    condition, key)`, then `g_step(state, condition, key)`, keys folded from the state's
    key and step (the condition: class labels here, caption tokens in text2image)."""
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    all_finite = jnp.array(True)
    for i in range(d_steps):
        state, d_metrics, finite = d_step(state, real, condition,
                                          jax.random.fold_in(step_key, i))
        all_finite &= finite
    state, g_metrics, finite = g_step(state, condition, jax.random.fold_in(step_key, d_steps))
    return finish_step(state, all_finite & finite, {**d_metrics, **g_metrics})


@functools.cache
def _generate(generator):
    return jax.jit(lambda variables, z, labels: generator.apply(variables, z, labels,
                                                                train=False))


def generate(state: GANState, z, labels, *, generator, chunk: int = 256, which: str = "ema"):
    """Images of latent codes `z` [N, latent_dim] and classes `labels` [N] from the EMA
    generator (or `which='raw'`) in evaluation mode (each image depends on its own code
    and label only). `labels` may also be class weights [N, K] (floats), which mix the
    classes' embeddings (`class_interpolation`)."""
    labels = jnp.asarray(labels)
    labels = labels.astype(jnp.float32 if labels.ndim == 2 else jnp.int32)
    apply, variables = _generate(generator), gan.generator_variables(state, which)
    return jnp.concatenate([apply(variables, z[i:i + chunk], labels[i:i + chunk])
                            for i in range(0, z.shape[0], chunk)])


def sample_classes(state: GANState, key: jax.Array, labels, *, generator, latent_dim: int,
                   chunk: int = 256, which: str = "ema"):
    """One image of each requested class in `labels` [N]; the noise is drawn at once from
    `key`, so the result depends on (key, labels) only."""
    labels = jnp.asarray(labels, jnp.int32)
    z = jax.random.normal(key, (labels.shape[0], latent_dim))
    return generate(state, z, labels, generator=generator, chunk=chunk, which=which)


@functools.cache
def _judge(discriminator):
    return jax.jit(lambda variables, x, labels: discriminator.apply(variables, x, labels,
                                                                    train=False))


def pair_score(state: GANState, images, labels, *, discriminator, num_classes: int,
               chunk: int = 256):
    """D's score of (image, label) pairs [N] in evaluation mode (running BatchNorm
    averages, no dropout): its logit, for 'acgan' s(x, y) (`pair_scores`)."""
    labels = jnp.asarray(labels, jnp.int32)
    apply, variables = _judge(discriminator), _variables(state.discriminator)
    out = []
    for i in range(0, labels.shape[0], chunk):
        logits, class_logits = apply(variables, images[i:i + chunk], labels[i:i + chunk])
        out.append(pair_scores(logits, class_logits, labels[i:i + chunk], num_classes))
    return jnp.concatenate(out)


def class_interpolation(state: GANState, z, start: int, end: int, steps: int, *,
                        generator, num_classes: int, which: str = "ema"):
    """For each code in `z` [M, latent_dim], `steps` images from class `start` to class
    `end` at that fixed code: the label embedding (and conditional-BN scale and shift)
    moves linearly, (1 - t)·e(start) + t·e(end) for t = 0, 1/(steps-1), ..., 1. Images
    [M * steps], row by row; t = 0 and t = 1 are exactly `generate` of the two classes."""
    t = jnp.linspace(0.0, 1.0, steps)[:, None]
    eye = jnp.eye(num_classes)
    weights = jnp.tile((1.0 - t) * eye[start] + t * eye[end], (z.shape[0], 1))
    return generate(state, jnp.repeat(jnp.asarray(z), steps, axis=0), weights,
                    generator=generator, which=which)


def balanced_labels(num: int, num_classes: int):
    """0, 1, ..., K-1, 0, 1, ...: `num` labels with every class as often as possible."""
    return jnp.arange(num, dtype=jnp.int32) % num_classes


def sample(state: GANState, key: jax.Array, num: int, *, generator, latent_dim: int,
           num_classes: int, which: str = "ema"):
    """`num` images of classes 0, 1, ..., K-1, 0, ... (`balanced_labels`): what
    `python -m genjax.sample` and the generative evaluation draw."""
    return sample_classes(state, key, balanced_labels(num, num_classes), generator=generator,
                          latent_dim=latent_dim, which=which)


def visuals(state: GANState, batch, key: jax.Array, *, generator, latent_dim: int,
            num_classes: int, columns: int) -> dict:
    """The class-by-noise grid: row k shows class k; each column keeps one noise vector,
    so a column shows one style through every class (samples/step_<N>.png)."""
    del batch  # drawn from noise and labels only
    z = jnp.tile(jax.random.normal(key, (columns, latent_dim)), (num_classes, 1))
    labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), columns)
    return {"samples": (generate(state, z, labels, generator=generator), columns)}


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    del load_run  # draws on no other run
    channels, num_classes = meta.image_shape[-1], meta.num_classes
    if not num_classes:
        raise config_lib.ConfigError(
            f"The conditional GAN needs class labels, but dataset {meta.name!r} has none. "
            "Use a labelled dataset (e.g. 'digits', 'mnist', 'cifar10').")
    generator, discriminator = build_models(config, channels, num_classes)
    g_tx, d_tx = gan.build_optimizers(config)
    latent_dim = config.model.latent_dim
    loss = losses.get(config.loss)
    game = dict(generator=generator, discriminator=discriminator, loss=loss,
                latent_dim=latent_dim, num_classes=num_classes, ac_weight=config.ac_weight,
                matching_weight=config.matching_weight)
    sample_fn = functools.partial(sample, generator=generator, latent_dim=latent_dim,
                                  num_classes=num_classes)
    classes_fn = functools.partial(sample_classes, generator=generator, latent_dim=latent_dim)
    score_fn = functools.partial(pair_score, discriminator=discriminator,
                                 num_classes=num_classes)
    return Task(
        name="cgan",
        init=functools.partial(init, generator=generator, discriminator=discriminator,
                               g_tx=g_tx, d_tx=d_tx, latent_dim=latent_dim, channels=channels),
        train_step=functools.partial(
            train_step, d_steps=config.d_steps_per_g_step,
            d_step=functools.partial(discriminator_step, d_tx=d_tx, **game),
            g_step=functools.partial(generator_step, g_tx=g_tx, ema_decay=config.ema_decay,
                                     **game)),
        visuals=functools.partial(visuals, generator=generator, latent_dim=latent_dim,
                                  num_classes=num_classes,
                                  columns=config.num_sample_images),
        # The generative measurement plus label accuracy, intra-class FD, diversity
        # within each class and D's matched-vs-mismatched AUC, in one eval/step_N.json.
        evaluators={"conditional": Evaluation(
            "conditional", {"sample_conditioned": classes_fn, "pair_score": score_fn},
            {"generator": "ema"})},
        functions={"sample": sample_fn,
                   "sample_classes": classes_fn,
                   # What `python -m genjax.sample --labels/--per_class` calls.
                   "sample_conditioned": classes_fn,
                   "pair_score": score_fn,
                   "class_interpolation": functools.partial(
                       class_interpolation, generator=generator, num_classes=num_classes),
                   "generate": functools.partial(generate, generator=generator),
                   "latent_dim": latent_dim, "num_classes": num_classes},
    )
