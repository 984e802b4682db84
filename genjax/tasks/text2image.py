"""Text-to-image synthesis: GAN-INT-CLS (Reed et al., ICML 2016).

A frozen text encoder φ (a `text_encoder` run, config field `text_encoder_workdir`)
maps each caption t to an embedding; the generator draws G(z, φ(t)) and the
discriminator scores the pair D(x, φ(t)) (`genjax.models.text`). One iteration =
`d_steps_per_g_step` discriminator updates, then one generator update with D held fixed,
each an explicit optax transition (`state.update_player`), as in the other GAN tasks.

GAN-CLS, the matching-aware discriminator (w = `cls_weight`, Reed's 0.5):

    L_D = L_real(D(x, φ(t))) + w·L_fake(D(x, φ(t'))) + (1 - w)·L_fake(D(G(z, φ(t)), φ(t)))

with t' a *wrong* caption: another example's caption in the global batch that differs
from t. Only token sequences are available to the step, so "differs" means a different
token sequence: for each row i an offset o_i is drawn uniformly from 1..B-1 and t' is
the first caption, going round the batch from row i + o_i, whose tokens differ from
t's (`wrong_rows`). With the captioned digits' templates a different sequence nearly
always describes a different digit or attribute; where every caption of the batch is
the same there is no wrong one and row i + o_i is taken (`d/wrong_distinct` reports the
fraction of rows that found a different caption). Reed pairs the right caption with a
real image of another class; pairing the real image with another caption is the same
mismatch seen from the other side (and what aelnouby's port does with `wrong_image`).

GAN-INT (`int_weight` > 0): the generator is also trained on interpolated embeddings
φ_int = β·φ(t_i) + (1 - β)·φ(t_j), β = ½, of each caption with the caption half a
global batch away (j = i + B/2 mod B), with its own noise; D never sees them in its
own update:

    L_G = L_gen(D(G(z, φ(t)), φ(t))) + int_weight·L_gen(D(G(z', φ_int), φ_int))

Reed et al. add B/2 interpolated rows to B real ones; here every row gets one (its
partner's row gets the same average with other noise). The generator's two batches go
through G and D in one pass, so BatchNorm sees them together, as in Reed's 1.5·B rows.

The text encoder is frozen: its weights are copied into this run's state at
initialisation (`text_encoder`, so a run keeps the encoder it was trained with), belong
to no player, and φ's output is a `stop_gradient` constant of every loss.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import config as config_lib
from genjax import losses, parallel
from genjax.errors import CheckpointError, ConfigError
from genjax.models.text import TextConditionalDiscriminator, TextConditionalGenerator
from genjax.state import Player, init_player, update_player
from genjax.tasks import Evaluation, Task
from genjax.tasks import cgan, gan, text_encoder
from genjax.tasks.gan import ema_update, generator_variables

SHAPE_FIELDS = (*gan.SHAPE_FIELDS, "model.compress_dim", "text_encoder_workdir",
                "dataset.max_tokens", "dataset.vocabulary_file")
ENCODER_COMMAND = ("python train.py --config=configs/text_encoder.py "
                   "--workdir=runs/text_encoder")


def defaults() -> ml_collections.ConfigDict:
    """Defaults of GAN-INT-CLS: the GAN's fields plus the text conditioning."""
    c = gan.defaults()
    c.task = "text2image"  # Which module of genjax/tasks/ trains this config.
    c.image_size = 32  # The captioned digits are 32x32 in colour.
    text_encoder.captioned_dataset_fields(c)
    c.num_train_steps = 2000  # Iterations (one D update and one G update each).
    c.num_sample_images = 8  # Columns of the caption-by-noise grid (one row per caption).
    c.num_sample_captions = 8  # Fixed held-out captions drawn during training (one row each).
    # The text_encoder run whose φ is loaded, frozen (train it first with the command in
    # configs/text_encoder.py). Its weights are copied into this run's checkpoint.
    c.text_encoder_workdir = "runs/text_encoder"
    c.model.compress_dim = 32  # Size of the compressed text embedding (Reed's 128).
    # Weight w of the wrong-caption term: real images with a wrong caption count as fake
    # with weight w, generated images with 1 - w (0 = plain conditional GAN; 0.5 = GAN-CLS).
    c.cls_weight = 0.5
    # Weight of the generator's loss on interpolated captions (GAN-INT); 0 = off.
    c.int_weight = 1.0
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    gan.validate(c)
    config_lib.require_positive(c, ("model.compress_dim", "num_sample_captions", "dataset.max_tokens"))
    config_lib.require(0.0 <= c.cls_weight <= 1.0, "Config field 'cls_weight' must be in "
                       f"[0, 1] (0 = off, 0.5 = GAN-CLS), got {c.cls_weight}.")
    config_lib.require(c.int_weight >= 0, "Config field 'int_weight' must be 0 (no GAN-INT) "
                       f"or positive, got {c.int_weight}.")
    config_lib.require(bool(c.text_encoder_workdir), "Config field 'text_encoder_workdir' "
                       f"must name a text_encoder run; make one with: {ENCODER_COMMAND}")
    for name, off in (("augment", ""), ("r1_weight", 0.0), ("model.d_norm", "batch")):
        config_lib.require(config_lib.value(c, name) == off, (
            f"Config field {name!r} is {config_lib.value(c, name)!r}, but the text-to-image "
            f"GAN does not apply it; leave it at {off!r}."))


def data_spec(config: ml_collections.ConfigDict):
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config, layout="captioned")


@flax.struct.dataclass
class TextGANState:
    step: jnp.ndarray  # int32: completed iterations (one generator update each).
    key: jnp.ndarray  # uint32 key data; per-step keys are fold_in(key, step).
    generator: Player
    discriminator: Player
    ema: Any  # {'params', 'batch_stats'}: exponential moving average of the generator.
    text_encoder: Any  # φ's params, frozen: copied from the text_encoder run, never updated.
    skipped: jnp.ndarray
    nonfinite_streak: jnp.ndarray


# Purposes of the per-step key, folded in so that each draw has its own stream.
_NOISE, _DROPOUT, _WRONG, _INT_NOISE = 0, 1, 2, 3


def build_models(config: ml_collections.ConfigDict, channels: int):
    common = dict(image_size=config.image_size, compress_dim=config.model.compress_dim,
                  conv_impl=config_lib.conv_impl(config, jax.default_backend()),
                  bn_axis_name=parallel.AXIS,
                  dtype=jnp.dtype(config.model.dtype))
    return (TextConditionalGenerator(channels=channels, width=config.model.g_width, **common),
            TextConditionalDiscriminator(width=config.model.d_width,
                                         dropout=config.model.d_dropout, **common))


def init(seed: int, *, generator, discriminator, g_tx, d_tx, latent_dim: int, channels: int,
         embed_dim: int, encoder_params) -> TextGANState:
    g_key, d_key, train_key = jax.random.split(jax.random.key(seed), 3)
    size = generator.image_size
    emb = jnp.zeros((2, embed_dim))
    g_vars = generator.init(g_key, jnp.zeros((2, latent_dim)), emb, train=False)
    d_vars = discriminator.init(d_key, jnp.zeros((2, size, size, channels)), emb, train=False)
    g_player = init_player(g_vars, g_tx)
    return TextGANState(
        step=jnp.zeros((), jnp.int32), key=jax.random.key_data(train_key),
        generator=g_player, discriminator=init_player(d_vars, d_tx),
        ema={"params": g_player.params, "batch_stats": g_player.batch_stats},
        text_encoder=jax.tree.map(jnp.asarray, encoder_params),
        skipped=jnp.zeros((), jnp.int32), nonfinite_streak=jnp.zeros((), jnp.int32))


def _variables(player: Player) -> dict:
    return {"params": player.params, "batch_stats": player.batch_stats}


def condition(encoder_params, tokens, *, text_model):
    """φ(t) as a constant: the frozen encoder's embedding with its gradient stopped, so
    no loss can reach the encoder (which also belongs to no player)."""
    return jax.lax.stop_gradient(text_model.apply({"params": encoder_params}, tokens))


def wrong_rows(key, tokens):
    """For each row i of the global batch's tokens [B, T], the row of a wrong caption:
    the first row, going round the batch from i + o_i (o_i uniform on 1..B-1), whose
    tokens differ from row i's; i + o_i where none does. Returns (rows [B], found [B])."""
    b = tokens.shape[0]
    offsets = jax.random.randint(key, (b,), 1, b)
    differs = jnp.any(tokens[:, None, :] != tokens[None, :, :], axis=-1)  # [B, B]
    k = jnp.arange(b - 1)
    candidates = (jnp.arange(b)[:, None] + offsets[:, None] + k[None, :]) % b  # [B, B-1]
    ok = jnp.take_along_axis(differs, candidates, axis=1)
    first = jnp.argmax(ok, axis=1)  # 0 where none differs: row i + o_i
    return jnp.take_along_axis(candidates, first[:, None], axis=1)[:, 0], ok.any(axis=1)


def _local(x):
    """This device's rows of a global-batch array (inside a mapped step)."""
    b = x.shape[0] // parallel.num_devices_in_step()
    return jax.lax.dynamic_slice_in_dim(x, parallel.device_index() * b, b, axis=0)


def interpolation_partners(b: int):
    """Row j = i + B/2 (mod B) of the global batch, whose caption row i's is averaged with."""
    return (jnp.arange(b) + b // 2) % b


def discriminator_step(state: TextGANState, real, tokens, key, *, generator, discriminator,
                       text_model, d_tx, loss: losses.GANLoss, latent_dim: int,
                       cls_weight: float):
    all_tokens = text_encoder.gather(tokens)
    all_emb = condition(state.text_encoder, all_tokens, text_model=text_model)
    emb = _local(all_emb)
    rows, found = wrong_rows(jax.random.fold_in(key, _WRONG), all_tokens)
    wrong_emb = _local(all_emb[rows])
    z = parallel.global_normal(jax.random.fold_in(key, _NOISE), (real.shape[0], latent_dim))
    # Training-mode generator as in its own step; its statistics' update is discarded.
    fake, _ = generator.apply(_variables(state.generator), z, emb, train=True,
                              mutable=["batch_stats"])
    fake = jax.lax.stop_gradient(fake)
    keys = jax.random.split(parallel.device_key(jax.random.fold_in(key, _DROPOUT)), 3)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.discriminator.batch_stats}

        def judge(images, embedding, dropout_key):
            nonlocal variables
            logits, upd = discriminator.apply(variables, images, embedding, train=True,
                                              mutable=["batch_stats"],
                                              rngs={"dropout": dropout_key})
            variables = {"params": params, **upd}
            return logits

        real_logits = judge(real, emb, keys[0])
        fake_logits = judge(fake, emb, keys[1])
        wrong_logits = judge(real, wrong_emb, keys[2]) if cls_weight > 0 else real_logits
        total, on_real, on_wrong, on_fake = losses.matching_aware_discriminator(
            loss, real_logits, wrong_logits, fake_logits, cls_weight)
        aux = {"d/loss_real": on_real, "d/loss_fake": on_fake,
               "d/real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
               "d/fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits))}
        if cls_weight > 0:
            aux.update({"d/loss_wrong": on_wrong,
                        "d/wrong_prob": jnp.mean(jax.nn.sigmoid(wrong_logits)),
                        "d/wrong_distinct": jnp.mean(found)})
        return total, (variables["batch_stats"], aux)

    player, d_loss, aux, finite = update_player(state.discriminator, d_tx, loss_fn)
    return state.replace(discriminator=player), {"d/loss": d_loss, **aux}, finite


def generator_step(state: TextGANState, tokens, key, *, generator, discriminator, text_model,
                   g_tx, loss: losses.GANLoss, latent_dim: int, ema_decay: float,
                   int_weight: float):
    all_emb = condition(state.text_encoder, text_encoder.gather(tokens), text_model=text_model)
    emb = _local(all_emb)
    b = tokens.shape[0]
    z = parallel.global_normal(jax.random.fold_in(key, _NOISE), (b, latent_dim))
    if int_weight > 0:  # GAN-INT: β = ½ between each caption and its partner's
        mixed = _local(0.5 * (all_emb + all_emb[interpolation_partners(all_emb.shape[0])]))
        z_int = parallel.global_normal(jax.random.fold_in(key, _INT_NOISE), (b, latent_dim))
        z, emb = jnp.concatenate([z, z_int]), jnp.concatenate([emb, mixed])
    dropout_key = parallel.device_key(jax.random.fold_in(key, _DROPOUT))
    d_vars = _variables(state.discriminator)

    def loss_fn(params):
        fake, upd = generator.apply(
            {"params": params, "batch_stats": state.generator.batch_stats}, z, emb,
            train=True, mutable=["batch_stats"])
        # D judges in training mode, its parameters constants and its statistics'
        # update dropped: only the generator is differentiated and changed.
        logits, _ = discriminator.apply(d_vars, fake, emb, train=True,
                                        mutable=["batch_stats"], rngs={"dropout": dropout_key})
        on_right = loss.generator(logits[:b])
        aux = {"g/fake_prob": jnp.mean(jax.nn.sigmoid(logits[:b]))}
        total = on_right
        if int_weight > 0:
            on_int = loss.generator(logits[b:])
            total = on_right + int_weight * on_int
            aux.update({"g/loss_right": on_right, "g/loss_int": on_int,
                        "g/int_prob": jnp.mean(jax.nn.sigmoid(logits[b:]))})
        return total, (upd["batch_stats"], aux)

    player, g_loss, aux, finite = update_player(state.generator, g_tx, loss_fn)
    ema = ema_update(state.ema, player, state.step, ema_decay, finite)
    return state.replace(generator=player, ema=ema), {"g/loss": g_loss, **aux}, finite


def train_step(state: TextGANState, batch: dict, *, d_steps: int, d_step, g_step):
    return cgan.conditioned_train_step(state, batch["image"], batch["tokens"],
                                       d_steps=d_steps, d_step=d_step, g_step=g_step)


# --------------------------------------------------------------------- using a run

@functools.cache
def _embed(text_model):
    return jax.jit(lambda params, tokens: text_model.apply({"params": params}, tokens))


@functools.cache
def _generate(generator):
    return jax.jit(lambda variables, z, emb: generator.apply(variables, z, emb, train=False))


def embed(state: TextGANState, tokens, *, text_model):
    """φ(t) [N, D] of the frozen encoder kept in the run."""
    return _embed(text_model)(state.text_encoder, jnp.asarray(tokens, jnp.int32))


def generate_from_embedding(state, z, embedding, *, generator, chunk: int = 256,
                            which: str = "ema"):
    """Images of codes z [N, latent] and text embeddings [N, D], generator in evaluation
    mode (each image depends on its own row only)."""
    apply, variables = _generate(generator), generator_variables(state, which)
    return jnp.concatenate([apply(variables, z[i:i + chunk], embedding[i:i + chunk])
                            for i in range(0, z.shape[0], chunk)])


def generate(state, z, tokens, *, generator, text_model, which: str = "ema"):
    """Images of codes z [N, latent_dim] and captions' tokens int32 [N, T] (notebooks)."""
    return generate_from_embedding(state, jnp.asarray(z), embed(state, tokens,
                                                                text_model=text_model),
                                   generator=generator, which=which)


def sample_captions(state, tokens, key, *, generator, text_model, latent_dim: int,
                    which: str = "ema"):
    """One image per caption row of `tokens` [N, T], noise drawn at once from `key`
    (row i gets the same noise for the same key, whatever the captions)."""
    tokens = jnp.asarray(tokens, jnp.int32)
    z = jax.random.normal(key, (tokens.shape[0], latent_dim))
    return generate(state, z, tokens, generator=generator, text_model=text_model,
                    which=which)


def interpolate_captions(state, tokens_a, tokens_b, weights, key, *, generator, text_model,
                         latent_dim: int, which: str = "ema"):
    """Images of (1 - w)·φ(a) + w·φ(b) for rows of tokens_a, tokens_b [N, T] and weights
    w float32 [N], with row i's noise that of `sample_captions` for the same key."""
    a = embed(state, tokens_a, text_model=text_model)
    b = embed(state, tokens_b, text_model=text_model)
    w = jnp.asarray(weights, jnp.float32)[:, None]
    z = jax.random.normal(key, (a.shape[0], latent_dim))
    return generate_from_embedding(state, z, (1.0 - w) * a + w * b, generator=generator,
                                   which=which)


def visuals(state, batch, key, *, generator, text_model, latent_dim: int, columns: int):
    """One row per fixed held-out caption: the real image it describes, then `columns`
    images of that caption, column j keeping one noise vector in every row."""
    tokens = jnp.asarray(batch["tokens"])
    rows = tokens.shape[0]
    z = jnp.tile(jax.random.normal(key, (columns, latent_dim)), (rows, 1))
    fakes = generate(state, z, jnp.repeat(tokens, columns, axis=0), generator=generator,
                     text_model=text_model).reshape(rows, columns, *batch["image"].shape[1:])
    grid = jnp.concatenate([jnp.asarray(batch["image"])[:, None], fakes], axis=1)
    return {"samples": (grid.reshape(-1, *grid.shape[2:]), columns + 1)}


# --------------------------------------------------------------- the frozen encoder

def _encoder_error(workdir, why: str) -> ConfigError:
    return ConfigError(
        f"Config field 'text_encoder_workdir' is {str(workdir)!r}, {why} The text-to-image "
        f"GAN loads a trained text encoder, frozen. Train one first: {ENCODER_COMMAND} "
        "(or point text_encoder_workdir at yours).")


def load_encoder(workdir, meta, load_run):
    """(φ's module, its params or None, embed_dim) of the text_encoder run `workdir`.

    With `load_run` (the training loop), its newest checkpoint is loaded and checked: a
    text_encoder run on the same vocabulary. Without (restoring this run, whose state
    holds its own copy of φ), only its config.json is read, for φ's shapes."""
    workdir = Path(workdir)
    if not (workdir / "config.json").exists():
        raise _encoder_error(workdir, "which holds no run (no config.json).")
    saved = json.loads((workdir / "config.json").read_text())
    if saved.get("task") != "text_encoder":
        raise _encoder_error(workdir, f"which is a {saved.get('task')!r} run, not a "
                             "'text_encoder' one.")
    if load_run is None:
        config = text_encoder.defaults()
        config.update_from_flattened_dict(config_lib.flatten(saved))
        model = text_encoder.build_model(config, len(meta.vocabulary))
        return text_encoder.text_model(model), None, config.model.embed_dim
    try:
        _, task, state = load_run(workdir)
    except CheckpointError as e:
        raise _encoder_error(workdir, f"which has no checkpoint yet ({e})") from None
    if tuple(task.vocabulary) != tuple(meta.vocabulary):
        raise _encoder_error(workdir, "whose vocabulary differs from this dataset's (it was "
                             "trained on other captions or another vocabulary_file).")
    return task.text_model, jax.device_get(task.text_params(state)), task.embed_dim


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    if not meta.vocabulary:
        raise ConfigError(
            f"The text-to-image GAN needs captions, but dataset {meta.name!r} was read "
            "without a vocabulary. Use a captioned dataset ('captioned_digits', a "
            "'folder:PATH' with <split>/images and <split>/text, or 'coco_captions').")
    text_model, encoder_params, embed_dim = load_encoder(config.text_encoder_workdir, meta,
                                                         load_run)
    if encoder_params is None:
        # Restoring: the checkpoint holds φ's params; these are only their shapes.
        encoder_params = jax.eval_shape(
            text_model.init, jax.random.key(0),
            jnp.ones((1, meta.max_tokens), jnp.int32))["params"]
        encoder_params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), encoder_params)
    channels = meta.image_shape[-1]
    generator, discriminator = build_models(config, channels)
    g_tx, d_tx = gan.build_optimizers(config)
    latent_dim = config.model.latent_dim
    loss = losses.get(config.loss)
    game = dict(generator=generator, discriminator=discriminator, text_model=text_model,
                loss=loss, latent_dim=latent_dim)
    bound = dict(generator=generator, text_model=text_model)
    captions_fn = functools.partial(sample_captions, latent_dim=latent_dim, **bound)
    interpolate_fn = functools.partial(interpolate_captions, latent_dim=latent_dim, **bound)
    from genjax.data.text import Tokenizer  # the tokenizer of the run's vocabulary

    return Task(
        name="text2image",
        init=functools.partial(init, generator=generator, discriminator=discriminator,
                               g_tx=g_tx, d_tx=d_tx, latent_dim=latent_dim, channels=channels,
                               embed_dim=embed_dim, encoder_params=encoder_params),
        train_step=functools.partial(
            train_step, d_steps=config.d_steps_per_g_step,
            d_step=functools.partial(discriminator_step, d_tx=d_tx,
                                     cls_weight=config.cls_weight, **game),
            g_step=functools.partial(generator_step, g_tx=g_tx, ema_decay=config.ema_decay,
                                     int_weight=config.int_weight, **game)),
        visuals=functools.partial(visuals, latent_dim=latent_dim,
                                  columns=config.num_sample_images, **bound),
        held_out=config.num_sample_captions,
        held_out_seed=config.seed,
        evaluators={"captions": Evaluation(
            "captions", {"generate": captions_fn, "interpolate": interpolate_fn},
            {"generator": "ema"})},
        functions={"generate": functools.partial(generate, **bound),
                   "generate_from_embedding": functools.partial(generate_from_embedding,
                                                                generator=generator),
                   "embed": functools.partial(embed, text_model=text_model),
                   "sample_captions": captions_fn,
                   "interpolate_captions": interpolate_fn,
                   "tokenizer": Tokenizer.from_meta(meta),
                   "latent_dim": latent_dim, "embed_dim": embed_dim},
    )
