"""The text encoder task: a joint image-text embedding, trained contrastively.

A word-level text encoder φ and an image encoder f (`genjax.models.text`) map a caption
and an image to unit vectors of one space; each update is one explicit optax transition
of both (one player) on the symmetric contrastive loss (`losses.contrastive`) of the
global batch: the embeddings of every device are gathered, so every image is scored
against every caption of the global batch and 8 devices compute what 1 does. Captions
that happen to be identical within a batch count as negatives of each other, as in
CLIP. Trained once, φ is loaded frozen by the text-to-image GAN
(`genjax.tasks.text2image`, config field `text_encoder_workdir`), as in Reed et al.
2016, whose φ was trained first with a joint embedding objective too.

Its evaluator is the 'retrieval' measurement (caption -> image and image -> caption
recall on the held-out split) over `embed_text` and `embed_image`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from genjax import config as config_lib
from genjax import losses, parallel
from genjax.errors import ConfigError
from genjax.models.text import JointEmbedding, TextEncoder
from genjax.state import ModelState, finish_step, init_player, update_player
from genjax.tasks import Evaluation, Task

SHAPE_FIELDS = ("model.text_width", "model.image_width", "model.embed_dim",
                "dataset.max_tokens", "dataset.vocabulary_file")


def captioned_dataset_fields(c: ml_collections.ConfigDict) -> None:
    """The captioned data fields shared by the text encoder and the text-to-image GAN."""
    c.dataset.name = "captioned_digits"  # Embedded captioned digits, 'folder:PATH' or 'coco_captions'.
    c.dataset.max_tokens = 16  # Captions are cut or zero-padded to this many words.
    # A JSON vocabulary file: used if it exists, else built from the training captions and
    # written there; '' = built and kept with the run only.
    c.dataset.vocabulary_file = ""
    # Random resize-crop and mirroring of training images. Off for the digits: a mirrored
    # digit leans the other way, and its caption would then be wrong.
    c.dataset.jitter = False


def defaults() -> ml_collections.ConfigDict:
    """Defaults of the text encoder task."""
    c = config_lib.base("text_encoder")
    c.seed = 0  # Seeds parameters and the data order.
    c.num_train_steps = 1000  # Updates in the whole run.
    c.batch_size = 128  # Global batch: each image is contrasted with this many captions.
    c.image_size = 32  # The captioned digits are 32x32 in colour.
    captioned_dataset_fields(c)

    c.model = ml_collections.ConfigDict()
    c.model.text_width = 64  # Word embedding and 1D convolution channels.
    c.model.image_width = 32  # Channels of the image encoder's first layer (doubling).
    c.model.embed_dim = 64  # Size of the joint embedding φ(t).

    c.learning_rate = 1e-3  # Adam learning rate (cosine decay to 0 over the run).

    c.eval = ml_collections.ConfigDict()
    c.eval.split = "test"  # Held-out split of the retrieval measurement.
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    config_lib.require_positive(c, ("model.text_width", "model.image_width",
                                    "model.embed_dim", "dataset.max_tokens"))
    config_lib.require(c.learning_rate > 0, "Config field 'learning_rate' must be positive.")
    config_lib.require(c.batch_size >= 2, "Config field 'batch_size' must be at least 2: "
                       "the contrastive loss needs other captions in the batch.")


def data_spec(config: ml_collections.ConfigDict):
    """Captioned images: {'image', 'tokens', 'label'}."""
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config, layout="captioned")


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> JointEmbedding:
    return JointEmbedding(vocab_size=vocab_size, text_width=config.model.text_width,
                          image_width=config.model.image_width,
                          embed_dim=config.model.embed_dim)


def text_model(model: JointEmbedding) -> TextEncoder:
    """φ alone: applied to {'params': params['text']} it is `model.embed_text`."""
    return TextEncoder(model.vocab_size, model.text_width, model.embed_dim)


def init(seed: int, *, model: JointEmbedding, tx, image_shape, max_tokens: int) -> ModelState:
    params_key, train_key = jax.random.split(jax.random.key(seed))
    variables = model.init(params_key, jnp.zeros((2, *image_shape)),
                           jnp.ones((2, max_tokens), jnp.int32))
    return ModelState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(train_key),
                      model=init_player(variables, tx), skipped=jnp.zeros((), jnp.int32),
                      nonfinite_streak=jnp.zeros((), jnp.int32))


def gather(x: jnp.ndarray) -> jnp.ndarray:
    """The global batch of a per-device array, in device order (inside a mapped step).
    Its gradient sums every device's cotangents back to the owner's rows."""
    return jax.lax.all_gather(x, parallel.AXIS, tiled=True)


def train_step(state: ModelState, batch: dict, *, model: JointEmbedding, tx):
    """One contrastive update on the global batch (see the module docstring)."""
    images, tokens = batch["image"], batch["tokens"]

    def loss_fn(params):
        image_emb, text_emb, scale = model.apply({"params": params}, images, tokens)
        # Every device computes the same global loss; the gather's transpose sums the
        # devices' gradients onto each device's own rows and update_player's pmean
        # divides by the device count: the gradient of the global loss, as on 1 device.
        loss, i2t, t2i = losses.contrastive(gather(image_emb), gather(text_emb), scale)
        return loss, ({}, {"retrieval/train_image_to_text": i2t,
                           "retrieval/train_text_to_image": t2i,
                           "retrieval/logit_scale": scale})

    player, loss, aux, finite = update_player(state.model, tx, loss_fn)
    return finish_step(state.replace(model=player), finite,
                       {"retrieval/loss": loss, **aux})


@functools.cache
def _embed(model: JointEmbedding, method: str):
    return jax.jit(lambda params, x: model.apply({"params": params}, x,
                                                 method=getattr(JointEmbedding, method)))


def _chunked(state, x, model, method, chunk):
    apply = _embed(model, method)
    return jnp.concatenate([apply(state.model.params, x[i:i + chunk])
                            for i in range(0, x.shape[0], chunk)])


def embed_text(state: ModelState, tokens, *, model: JointEmbedding, chunk: int = 512):
    """φ(t): unit vectors [N, embed_dim] of token sequences int32 [N, T]."""
    return _chunked(state, jnp.asarray(tokens, jnp.int32), model, "embed_text", chunk)


def embed_image(state: ModelState, images, *, model: JointEmbedding, chunk: int = 512):
    """f(x): unit vectors [N, embed_dim] of images [N, S, S, C] in [-1, 1]."""
    return _chunked(state, jnp.asarray(images, jnp.float32), model, "embed_image", chunk)


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    del load_run  # draws on no other run
    if not meta.vocabulary:
        raise ConfigError(
            f"The text encoder needs captions, but dataset {meta.name!r} was read without "
            "a vocabulary. Use a captioned dataset ('captioned_digits', a 'folder:PATH' "
            "with <split>/images and <split>/text, or 'coco_captions').")
    model = build_model(config, len(meta.vocabulary))
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_train_steps)
    tx = optax.adam(schedule)
    image_shape = (config.image_size, config.image_size, meta.image_shape[-1])
    text_fn = functools.partial(embed_text, model=model)
    image_fn = functools.partial(embed_image, model=model)
    return Task(
        name="text_encoder",
        init=functools.partial(init, model=model, tx=tx, image_shape=image_shape,
                               max_tokens=meta.max_tokens),
        train_step=functools.partial(train_step, model=model, tx=tx),
        evaluators={"retrieval": Evaluation(
            "retrieval", {"embed_text": text_fn, "embed_image": image_fn})},
        functions={"embed_text": text_fn, "embed_image": image_fn,
                   "text_model": text_model(model),
                   "text_params": lambda state: state.model.params["text"],
                   "vocabulary": tuple(meta.vocabulary), "max_tokens": meta.max_tokens,
                   "embed_dim": config.model.embed_dim},
    )
