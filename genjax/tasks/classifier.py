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

from genjax import config as config_lib
from genjax import parallel
from genjax.errors import ConfigError
from genjax.models.classifier import Classifier
from genjax.state import ModelState, finish_step, init_player, update_player
from genjax.tasks import Evaluation, Task

# Fields whose change changes the state's shapes (besides config.SHARED_SHAPE_FIELDS).
SHAPE_FIELDS = ("model.width", "model.num_stages", "model.feature_dim")


def defaults() -> ml_collections.ConfigDict:
    """Defaults of the classifier task (genjax.evaluate's feature extractor)."""
    c = config_lib.base("classifier")
    c.seed = 0  # Seeds parameters, dropout and the data order.
    c.num_train_steps = 1000  # Parameter updates in the whole run.
    c.eval_every_steps = 500  # Accuracy on eval.split (and at the end, to eval/classifier.json).
    c.dataset.name = "digits"  # Any labelled TFDS image dataset ('mnist', 'cifar10', ...).

    c.eval = ml_collections.ConfigDict()
    c.eval.split = "test"  # Held-out split whose accuracy is reported.

    c.model = ml_collections.ConfigDict()
    c.model.width = 32  # Channels of the first stage (doubling per stage).
    c.model.num_stages = 2  # Conv-conv-maxpool stages; image_size must divide by 2^stages.
    c.model.feature_dim = 128  # Units of the penultimate layer: the evaluation features.
    c.model.dropout = 0.3  # Dropout rate before the last layer (training only).
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    config_lib.add_adamw_fields(c, learning_rate=2e-3, weight_decay=1e-4)
    return c


def evaluation_recipe() -> ml_collections.ConfigDict:
    """The evaluation classifier of the embedded digits (`configs/classifier.py`): 1,000
    steps of batch 64 at 16x16, about 40 s on 2 CPU cores, 99-100% test accuracy. Also
    what `genjax.evaluate` trains by itself where the default classifier is missing
    (`genjax.evaluate.extractors.classifier_config`)."""
    recipe = defaults()
    recipe.dataset.name = "digits"
    recipe.image_size = 16
    recipe.num_train_steps = 1000
    recipe.batch_size = 64
    recipe.eval_every_steps = 500
    recipe.checkpoint_every_steps = 500
    recipe.model.width = 32
    recipe.model.feature_dim = 128
    recipe.model.dropout = 0.3
    recipe.learning_rate = 2e-3
    return recipe


def validate(c: ml_collections.ConfigDict) -> None:
    """The classifier's own checks (after the generic ones)."""
    config_lib.require_positive(c, ("model.width", "model.num_stages", "model.feature_dim"))
    config_lib.require_choice(c, "model.dtype", config_lib.DTYPES)
    config_lib.require(c.image_size % 2 ** c.model.num_stages == 0,
                       f"Config field 'image_size' ({c.image_size}) must be divisible by "
                       f"2^model.num_stages = {2 ** c.model.num_stages}: each stage halves "
                       "the image.")
    config_lib.require_rate(c, "model.dropout")
    config_lib.check_adamw(c)


def data_spec(config: ml_collections.ConfigDict):
    """Labelled images; a dataset without labels is an error before any JAX work."""
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config, needs_labels=True)


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


def weights(state: ModelState) -> dict:
    """{'params', 'batch_stats'}: everything that determines the outputs (for checksums)."""
    return {"params": state.model.params, "batch_stats": state.model.batch_stats}


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    del load_run  # a classifier draws on no other run
    if not meta.num_classes:
        raise ConfigError(
            f"The classifier task needs class labels, but dataset {config.dataset.name!r} has "
            "no ClassLabel feature 'label'. Train the classifier on a labelled dataset.")
    model = build_model(config, meta.num_classes)
    tx = build_optimizer(config)
    image_shape = (config.image_size, config.image_size, meta.image_shape[-1])
    classify_fn = functools.partial(classify, model=model)
    return Task(
        name="classifier",
        init=functools.partial(init, model=model, tx=tx, image_shape=image_shape),
        train_step=functools.partial(train_step, model=model, tx=tx),
        evaluators={"classification": Evaluation(
            "classification", {"classify": classify_fn, "weights": weights},
            {"final": "classifier.json"})},
        functions={"classify": classify_fn, "weights": weights, "input_shape": image_shape},
    )
