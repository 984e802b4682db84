"""The pix2pix task (Isola et al. 2017): translate an input image x into its target y from
paired examples, with a U-Net G(x) and a PatchGAN D(x, ·) (`genjax.models.pix2pix`).

One iteration, as junyanz/pytorch-CycleGAN-and-pix2pix `models/pix2pix_model.py`:
  1. D's update, G held fixed: (x, y) is real and (x, G(x)) fake, patch by patch, the
     loss halved (the paper: "we divide the objective by 2 while optimizing D, which
     slows down the rate at which D learns relative to G"):
         L_D = ½·(L_real(D(x, y)) + L_fake(D(x, G(x))))
  2. G's update, D held fixed *after* its update of step 1:
         L_G = gan_weight·L_gen(D(x, G(x))) + l1_weight·mean|G(x) - y|
with L_real, L_fake, L_gen the GAN loss `loss` names (`genjax.losses`; 'non_saturating'
is the reference's 'vanilla' BCE), each a mean over the batch and D's patches; λ =
`l1_weight` = 100 as in the paper. Each update is an explicit optax transition
(`state.update_player`); neither step changes the other player's parameters or
statistics. G's fake in step 1 is G in training mode with the very dropout mask of
step 2, so both steps see the same G(x), as the reference's one forward pass does.

Ablations by config (the paper's Tables 1-2): `gan_weight=0` is 'L1 only': the
discriminator is not trained at all (it stays at its initialisation and no step runs
it); `l1_weight=0` is 'GAN only'; `model.conditional_d=False` lets D see G(x) or y alone
('L1 + GAN', an unconditional D); `model.skips=False` the encoder-decoder without skips.

Learning rate: Adam (2e-4, β1 0.5) for both players with the reference's 'linear'
policy, per step: constant for C = `lr_constant_steps` steps, then linearly to 0 over
D = `lr_decay_steps`: lr_t = lr·(1 - max(0, t + 1 - C)/(D + 1)), floored at 0.

At evaluation (`translate`, the pictures, the 'translation' measurement) G runs with its
BatchNorm running averages (the reference at batch 1 uses the test image's own
statistics, i.e. instance norm: take `model.norm='instance'` for that) and with dropout
only if `model.sample_dropout` (the paper keeps it on at test time, as its noise).
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax import config as config_lib
from genjax import losses, parallel
from genjax.models.pix2pix import (NORMS, PatchDiscriminator, UNetGenerator, dropout_levels,
                                   patch_output_size)
from genjax.state import Player, finish_step, init_player, update_player
from genjax.tasks import Evaluation, Task

GAN_LOSSES = tuple(losses.GAN_LOSSES)
SHAPE_FIELDS = ("model.num_downs", "model.ngf", "model.ndf", "model.n_layers", "model.norm",
                "model.skips", "model.conditional_d", "dataset.direction")


MAX_IMAGE_SIZE = 256  # the reference's 256x256 images (train.py's limit for this task)

def defaults() -> ml_collections.ConfigDict:
    """Defaults of pix2pix: the reference's recipe (U-Net, 70x70 PatchGAN, λ = 100, Adam
    2e-4 β1 0.5, linear decay), sized for a 256x256 paired dataset."""
    c = config_lib.base("pix2pix")
    c.image_size = 128  # Side of input and target (the reference: 256, beyond genjax's 128).
    c.batch_size = 8  # Global batch (the reference: 1; the paper: 1-10).
    c.num_train_steps = 20000  # Iterations (one D and one G update each).
    c.sample_every_steps = 1000  # Input / output / target rows under <workdir>/samples/.
    c.num_sample_images = 8  # Held-out pairs in those pictures (one column each).

    d = c.dataset
    d.name = "folder:data/facades"  # TFDS name or 'folder:PATH' (A|B side by side, or A/ B/).
    d.split = "train"  # The split to train on.
    d.direction = "AtoB"  # 'AtoB': A (left half, folder A) is the input; 'BtoA' the other.
    d.input_feature = "input"  # TFDS only: the input image's feature.
    d.target_feature = "target"  # TFDS only: the target image's feature.
    d.jitter = True  # Resize to load_size, random crop back, mirror half (the paper's jitter).
    d.load_size = 0  # Side before the random crop; 0 = image_size·286/256.
    d.channels = 0  # Folders: 1 or 3 channels for both images; 0 = the first image's.

    c.model = ml_collections.ConfigDict()
    c.model.num_downs = 7  # U-Net levels; 2^num_downs <= image_size (8 = unet_256 at 256).
    c.model.ngf = 64  # G's first level's channels (ngf·min(2^i, 8) at level i).
    c.model.ndf = 64  # D's first layer's channels.
    c.model.n_layers = 3  # PatchGAN's stride-2 layers: 3 = 70x70 patches, 2 = 34, 1 = 16.
    c.model.norm = "batch"  # 'batch' (the reference's pix2pix) or 'instance', G and D.
    c.model.skips = True  # U-Net skip connections; False = the plain encoder-decoder.
    # Decoder blocks after the innermost ending in dropout 0.5 (G's noise); -1 = the
    # reference's num_downs - 5 (3 for unet_256, none at 5 levels or fewer).
    c.model.dropout_blocks = -1
    c.model.sample_dropout = False  # Dropout also when translating (the paper: on).
    c.model.conditional_d = True  # D sees (input, image); False: the image alone.
    # Strided (transposed) convolutions: 'phase' (stride-1 per-phase convolutions), 'lax'
    # (plain XLA ops) or 'auto': the one measured faster on the backend the run starts on
    # (genjax.config.auto_conv_impl); config.json records the choice.
    c.model.conv_impl = "auto"
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    c.loss = "non_saturating"  # GAN loss (genjax.losses); 'non_saturating' = the reference's BCE.
    c.gan_weight = 1.0  # Weight of G's adversarial term; 0 = 'L1 only' (D is not trained).
    c.l1_weight = 100.0  # λ of G's L1 term; 0 = 'GAN only'.
    c.learning_rate = 2e-4  # Adam's learning rate, both players.
    c.adam_b1 = 0.5  # Adam's beta1 (0.5 as the paper).
    c.adam_b2 = 0.999  # Adam's beta2.
    # Steps at the full rate; -1 = num_train_steps // 2 (so a run resumed with another
    # num_train_steps changes its schedule; give both lengths to keep it).
    c.lr_constant_steps = -1
    # Steps of linear decay to 0 after them; -1 = the rest of the run; 0 = no decay.
    c.lr_decay_steps = -1

    c.eval = ml_collections.ConfigDict()  # How genjax.evaluate measures this run.
    c.eval.split = "test"  # Held-out pairs: the pictures' and the measurement's.
    c.eval.num_samples = 0  # Pairs measured; 0 = the whole split.
    c.eval.seed = 0  # Seeds the subset of pairs and the metrics' random draws.
    # A genjax classifier run whose features the measurement uses ('' = its default).
    c.eval.classifier_workdir = ""
    return c


def lr_lengths(config) -> tuple[int, int]:
    """(constant steps C, decay steps D) of the schedule, the -1 defaults resolved."""
    n = config.num_train_steps
    constant = n // 2 if config.lr_constant_steps < 0 else config.lr_constant_steps
    decay = max(0, n - constant) if config.lr_decay_steps < 0 else config.lr_decay_steps
    return constant, decay


def validate(c: ml_collections.ConfigDict) -> None:
    config_lib.require_positive(c, ("sample_every_steps", "num_sample_images", "model.ngf",
                                    "model.ndf", "model.num_downs", "model.n_layers"))
    config_lib.require_choice(c, "loss", GAN_LOSSES)
    config_lib.require_choice(c, "model.norm", NORMS)
    config_lib.require_choice(c, "model.conv_impl", config_lib.CONV_IMPLS)
    config_lib.require_choice(c, "model.dtype", config_lib.DTYPES)
    config_lib.require_choice(c, "dataset.direction", ("AtoB", "BtoA"))
    d, s = c.model.num_downs, c.image_size
    config_lib.require(2 <= d and 2 ** d <= s, (
        f"Config field 'model.num_downs' is {d}, but a U-Net needs at least 2 levels and "
        f"2^num_downs <= image_size ({s}): use at most {max(2, s.bit_length() - 1)} "
        "(e.g. 8 for 256x256, 5 for 32x32, 4 for 16x16)."))
    try:
        dropout_levels(d, c.model.dropout_blocks)
    except ValueError as e:
        raise config_lib.ConfigError(f"Config field 'model.dropout_blocks': {e} Use -1 "
                                     "(the reference's choice) or a smaller number.") from None
    n = c.model.n_layers
    config_lib.require(patch_output_size(s, n) >= 1, (
        f"Config field 'model.n_layers' is {n}, but the PatchGAN's logit map would be empty "
        f"at image_size {s} (it needs image_size >= 3·2^n_layers): use at most "
        f"{max(1, (s // 3).bit_length() - 1)}."))
    config_lib.require(c.gan_weight >= 0 and c.l1_weight >= 0, (
        f"Config fields 'gan_weight' ({c.gan_weight}) and 'l1_weight' ({c.l1_weight}) must "
        "be 0 or positive."))
    config_lib.require(c.gan_weight > 0 or c.l1_weight > 0, (
        "Config fields 'gan_weight' and 'l1_weight' are both 0: the generator would have "
        "no loss. Keep one of them positive."))
    for name in ("learning_rate",):
        config_lib.require(c[name] > 0, f"Config field {name!r} must be positive.")
    for name in ("lr_constant_steps", "lr_decay_steps"):
        config_lib.require(c[name] >= -1, f"Config field {name!r} must be -1 (the default "
                           f"split of the run) or a number of steps, got {c[name]}.")
    config_lib.require(c.eval.num_samples >= 0, "Config field 'eval.num_samples' must be 0 "
                       f"(the whole split) or positive, got {c.eval.num_samples}.")


def data_spec(config: ml_collections.ConfigDict):
    """Pairs {'input', 'target', 'label'} from a TFDS dataset or a folder (A|B)."""
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config, layout="paired")


@flax.struct.dataclass
class Pix2PixState:
    step: jnp.ndarray  # int32: completed iterations (one D and one G update each).
    key: jnp.ndarray  # uint32 key data; per-step keys are fold_in(key, step).
    generator: Player
    discriminator: Player
    skipped: jnp.ndarray  # int32: iterations with a skipped (non-finite) update.
    nonfinite_streak: jnp.ndarray  # int32: consecutive such iterations.


def build_models(config, input_channels: int, target_channels: int):
    dtype = jnp.dtype(config.model.dtype)
    m = config.model
    conv_impl = config_lib.conv_impl(config, jax.default_backend())
    generator = UNetGenerator(channels=target_channels, num_downs=m.num_downs, ngf=m.ngf,
                              norm=m.norm, skips=m.skips, dropout_blocks=m.dropout_blocks,
                              conv_impl=conv_impl, axis_name=parallel.AXIS, dtype=dtype)
    discriminator = PatchDiscriminator(n_layers=m.n_layers, ndf=m.ndf, norm=m.norm,
                                       conditional=m.conditional_d, conv_impl=conv_impl,
                                       axis_name=parallel.AXIS, dtype=dtype)
    return generator, discriminator


def learning_rate_schedule(learning_rate: float, constant_steps: int, decay_steps: int):
    """lr_t = lr·(1 - max(0, t + 1 - C)/(D + 1)) for t < C + D, then 0: the reference's
    'linear' policy (its lambda of the epoch) per step. D = 0: lr throughout."""
    if decay_steps <= 0:
        return optax.constant_schedule(learning_rate)
    return optax.join_schedules(
        [optax.constant_schedule(learning_rate),
         optax.linear_schedule(learning_rate * decay_steps / (decay_steps + 1), 0.0,
                               decay_steps)],
        [constant_steps])


def build_optimizers(config):
    schedule = learning_rate_schedule(config.learning_rate, *lr_lengths(config))
    tx = optax.adam(schedule, b1=config.adam_b1, b2=config.adam_b2)
    return tx, tx


def init(seed: int, *, generator, discriminator, g_tx, d_tx, image_size: int,
         input_channels: int, target_channels: int) -> Pix2PixState:
    g_key, d_key, train_key = jax.random.split(jax.random.key(seed), 3)
    x = jnp.zeros((2, image_size, image_size, input_channels))
    y = jnp.zeros((2, image_size, image_size, target_channels))
    # train=False: BatchNorm creates its statistics without needing the device axis.
    g_vars = generator.init(g_key, x, train=False)
    d_vars = discriminator.init(d_key, x, y, train=False)
    return Pix2PixState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(train_key),
                        generator=init_player(g_vars, g_tx),
                        discriminator=init_player(d_vars, d_tx),
                        skipped=jnp.zeros((), jnp.int32),
                        nonfinite_streak=jnp.zeros((), jnp.int32))


def _variables(player: Player) -> dict:
    return {"params": player.params, "batch_stats": player.batch_stats}


# Purposes of the per-step key. G's dropout key is the same in both steps (one G(x) per
# iteration); D has no dropout.
_G_DROPOUT = 0


def _generate_for_training(generator, g_vars, inputs, key):
    """G(x) in training mode (batch statistics, dropout from `key`, the same key on every
    device: the masks are global) and G's statistics' update."""
    return generator.apply(g_vars, inputs, train=True, mutable=["batch_stats"],
                           rngs={"dropout": key})


def discriminator_step(state: Pix2PixState, inputs, targets, key, *, generator,
                       discriminator, d_tx, loss: losses.GANLoss):
    fake, _ = _generate_for_training(generator, _variables(state.generator), inputs,
                                     jax.random.fold_in(key, _G_DROPOUT))
    fake = jax.lax.stop_gradient(fake)  # G's statistics' update is dropped too

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.discriminator.batch_stats}
        # Fake first, then real, as the reference (the order of the running averages).
        fake_logits, upd = discriminator.apply(variables, inputs, fake, train=True,
                                               mutable=["batch_stats"])
        real_logits, upd = discriminator.apply({"params": params, **upd}, inputs, targets,
                                               train=True, mutable=["batch_stats"])
        total, on_real, on_fake = loss.discriminator(real_logits, fake_logits)
        aux = {"d/loss_real": on_real, "d/loss_fake": on_fake,
               "d/real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
               "d/fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits))}
        return 0.5 * total, (upd["batch_stats"], aux)

    player, d_loss, aux, finite = update_player(state.discriminator, d_tx, loss_fn)
    return state.replace(discriminator=player), {"d/loss": d_loss, **aux}, finite


def generator_step(state: Pix2PixState, inputs, targets, key, *, generator, discriminator,
                   g_tx, loss: losses.GANLoss, gan_weight: float, l1_weight: float):
    d_vars = _variables(state.discriminator)

    def loss_fn(params):
        fake, upd = _generate_for_training(
            generator, {"params": params, "batch_stats": state.generator.batch_stats},
            inputs, jax.random.fold_in(key, _G_DROPOUT))
        l1 = jnp.mean(jnp.abs(fake - targets))
        aux = {"g/l1": l1}
        total = l1_weight * l1
        if gan_weight > 0:
            # D judges in training mode with its parameters held fixed and its
            # statistics' update dropped: only G is differentiated and changed.
            logits, _ = discriminator.apply(d_vars, inputs, fake, train=True,
                                            mutable=["batch_stats"])
            adversarial = loss.generator(logits)
            total = total + gan_weight * adversarial
            aux["g/adversarial"] = adversarial
            aux["g/fake_prob"] = jnp.mean(jax.nn.sigmoid(logits))
        return total, (upd["batch_stats"], aux)

    player, g_loss, aux, finite = update_player(state.generator, g_tx, loss_fn)
    return state.replace(generator=player), {"g/loss": g_loss, **aux}, finite


def train_step(state: Pix2PixState, batch: dict, *, d_step, g_step, train_d: bool
               ) -> tuple[Pix2PixState, dict]:
    """One iteration on this device's share of the global batch: D's update (unless
    `train_d` is False, 'L1 only'), then G's against the updated D, with one key."""
    inputs, targets = batch["input"], batch["target"]
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    finite, metrics = jnp.array(True), {}
    if train_d:
        state, metrics, finite = d_step(state, inputs, targets, key)
    state, g_metrics, g_finite = g_step(state, inputs, targets, key)
    return finish_step(state, finite & g_finite, {**metrics, **g_metrics})


@functools.cache
def _translate_fn(generator, dropout: bool):
    return jax.jit(lambda variables, x, key: generator.apply(
        variables, x, train=False, dropout=dropout, rngs={"dropout": key}))


def translate(state: Pix2PixState, images, key: jax.Array | None = None, *, generator,
              image_size: int, input_channels: int, sample_dropout: bool, chunk: int = 64):
    """G(images) in evaluation mode: images [N, S, S, Ci] in [-1, 1] at the model's size
    and input channels -> [N, S, S, Ct] in [-1, 1]. BatchNorm uses its running averages,
    so each output depends on its own input only; with `sample_dropout` dropout is on,
    drawn from `key` (default jax.random.key(0)) per chunk of `chunk` images."""
    images = jnp.asarray(images, jnp.float32)
    want = (image_size, image_size, input_channels)
    if images.ndim != 4 or images.shape[1:] != want:
        raise ValueError(f"translate takes images [N, {image_size}, {image_size}, "
                         f"{input_channels}] in [-1, 1], got shape {images.shape}; "
                         "python -m genjax.translate converts other sizes and channels.")
    key = jax.random.key(0) if key is None else key
    apply, variables = _translate_fn(generator, sample_dropout), _variables(state.generator)
    return jnp.concatenate([apply(variables, images[i:i + chunk], jax.random.fold_in(key, i))
                            for i in range(0, images.shape[0], chunk)])


def as_channels(images, channels: int):
    """Images with `channels` channels for a picture: grey repeated to RGB, RGB to its
    mean (only for drawing; never fed to a model)."""
    images = np.asarray(images)
    if images.shape[-1] == channels:
        return images
    if images.shape[-1] == 1:
        return np.repeat(images, channels, axis=-1)
    return images.mean(axis=-1, keepdims=True)


def visuals(state: Pix2PixState, batch, key: jax.Array, *, translate_fn) -> dict:
    """Three rows from the fixed held-out batch: inputs, G's outputs, targets
    (samples/translations_step_<N>.png), one pair per column."""
    inputs, targets = batch["input"], batch["target"]
    outputs = np.asarray(translate_fn(state, inputs, key))
    channels = max(inputs.shape[-1], targets.shape[-1])
    rows = [as_channels(x, channels) for x in (inputs, outputs, targets)]
    return {"translations": (np.concatenate(rows), inputs.shape[0])}


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    del load_run  # draws on no other run
    channels = meta.image_channels or {}
    if "input" not in channels or "target" not in channels:
        raise config_lib.ConfigError(
            f"pix2pix needs paired data (input and target images), but dataset "
            f"{meta.name!r} was not read as pairs. Use a folder of A|B images "
            "('folder:PATH') or a TFDS dataset with two image features "
            "(dataset.input_feature, dataset.target_feature).")
    input_channels, target_channels = channels["input"], channels["target"]
    generator, discriminator = build_models(config, input_channels, target_channels)
    g_tx, d_tx = build_optimizers(config)
    loss = losses.get(config.loss)
    translate_fn = functools.partial(translate, generator=generator,
                                     image_size=config.image_size,
                                     input_channels=input_channels,
                                     sample_dropout=config.model.sample_dropout)
    return Task(
        name="pix2pix",
        init=functools.partial(init, generator=generator, discriminator=discriminator,
                               g_tx=g_tx, d_tx=d_tx, image_size=config.image_size,
                               input_channels=input_channels,
                               target_channels=target_channels),
        train_step=functools.partial(
            train_step, train_d=config.gan_weight > 0,
            d_step=functools.partial(discriminator_step, generator=generator,
                                     discriminator=discriminator, d_tx=d_tx, loss=loss),
            g_step=functools.partial(generator_step, generator=generator,
                                     discriminator=discriminator, g_tx=g_tx, loss=loss,
                                     gan_weight=config.gan_weight,
                                     l1_weight=config.l1_weight)),
        visuals=functools.partial(visuals, translate_fn=translate_fn),
        held_out=config.num_sample_images,
        held_out_seed=config.seed,
        # genjax.evaluate's 'translation' measurement: L1/PSNR/SSIM to the targets and
        # realism of G's outputs on the held-out pairs (eval.split).
        evaluators={"translation": Evaluation("translation", {"translate": translate_fn},
                                              {})},
        functions={"translate": translate_fn,
                   # The directions `python -m genjax.translate --direction` accepts: one,
                   # the dataset's (pix2pix learns a single mapping).
                   "translation_directions": (config.dataset.direction,),
                   "image_size": config.image_size,
                   "input_channels": input_channels,
                   "target_channels": target_channels},
    )
