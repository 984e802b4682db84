"""The classifier task: one player trained with cross-entropy on labelled images.

genjax trains its own evaluation networks with it, through the same loop as the
generative models: `python train.py --config=configs/classifier.py`. Its penultimate
layer is the feature space of `genjax.evaluate` (Fréchet distance, KID, precision and
recall) and its softmax gives the Inception-Score-style score.

The update is the same explicit optax transition as every other player's
(`state.update_player`); BatchNorm statistics are averaged over the device axis, and
dropout draws a different mask on every device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from genjax import parallel
from genjax.errors import ConfigError
from genjax.models.classifier import Classifier
from genjax.state import ModelState, finish_step, init_player, update_player
from genjax.tasks import Task


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> Classifier:
    return Classifier(num_classes=num_classes, width=config.model.width,
                      num_stages=config.model.num_stages, feature_dim=config.model.feature_dim,
                      dropout=config.model.dropout, bn_axis_name=parallel.AXIS,
                      dtype=jnp.dtype(config.model.dtype))


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    # Cosine decay to zero over the run: the last steps average out the batch noise.
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_train_steps)
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def init(seed: int, *, model: Classifier, tx, image_shape) -> ModelState:
    params_key, train_key = jax.random.split(jax.random.key(seed))
    # train=False: BatchNorm creates its statistics without needing the device axis.
    variables = model.init(params_key, jnp.zeros((2, *image_shape)), train=False)
    return ModelState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(train_key),
                           model=init_player(variables, tx),
                           skipped=jnp.zeros((), jnp.int32),
                           nonfinite_streak=jnp.zeros((), jnp.int32))


def train_step(state: ModelState, batch: dict, *, model: Classifier,
               tx) -> tuple[ModelState, dict]:
    """One cross-entropy update on this device's share of the global batch."""
    images, labels = batch["image"], batch["label"]
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    dropout_key = parallel.device_key(step_key)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.model.batch_stats}
        logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"],
                                      rngs={"dropout": dropout_key})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
        return loss, (updates["batch_stats"], {"clf/train_accuracy": accuracy})

    player, loss, aux, finite = update_player(state.model, tx, loss_fn)
    return finish_step(state.replace(model=player), finite, {"clf/loss": loss, **aux})


def classify(state: ModelState, images: jnp.ndarray, *, model: Classifier,
             chunk: int = 512) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(logits [N, K], features [N, feature_dim]) of images [N, H, W, C] in [-1, 1], in
    evaluation mode (running BatchNorm averages, no dropout): each image's outputs depend
    on that image only, so chunking changes nothing."""
    apply = _classify(model)
    variables = {"params": state.model.params, "batch_stats": state.model.batch_stats}
    pieces = [apply(variables, images[i:i + chunk]) for i in range(0, images.shape[0], chunk)]
    return tuple(jnp.concatenate(parts) for parts in zip(*pieces))


@functools.cache
def _classify(model: Classifier):
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False,
                                                    return_features=True))


def make(config: ml_collections.ConfigDict, meta) -> Task:
    if not meta.num_classes:
        raise ConfigError(
            f"The classifier task needs class labels, but dataset {config.dataset.name!r} has "
            "no ClassLabel feature 'label'. Train the classifier on a labelled dataset.")
    model = build_model(config, meta.num_classes)
    tx = build_optimizer(config)
    image_shape = (config.image_size, config.image_size, meta.image_shape[-1])
    return Task(
        init=functools.partial(init, model=model, tx=tx, image_shape=image_shape),
        train_step=functools.partial(train_step, model=model, tx=tx),
        classify=functools.partial(classify, model=model),
    )
