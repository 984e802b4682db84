"""The CycleGAN task (Zhu et al. 2017): unpaired translation between domains A and B.

Four networks: G: A -> B and F: B -> A (`g_ab`, `g_ba`), and two discriminators, `d_b`
judging images of domain B (real b against G(a); the reference's D_A, the paper's D_Y)
and `d_a` judging images of A (real a against F(b)). They form two players, as the
reference (junyanz/pytorch-CycleGAN-and-pix2pix `models/cycle_gan_model.py`) groups them
under two Adam optimisers: the generators together and the discriminators together. The
generators share one loss (the cycle terms couple G and F), and Adam acts on each
coordinate alone, so one transition over the pair is exactly two transitions, one per
network; grouping keeps the game's two explicit optax transitions per iteration.

One iteration on a batch (a, b), in the reference's order:
  1. generators, discriminators held fixed (`generator_step`):
       L_G = s·L_gen(D_b(G(a))) + s·L_gen(D_a(F(b)))                        adversarial
           + λ·|F(G(a)) - a|_1 + λ·|G(F(b)) - b|_1                          cycle
           + λ·μ·(|G(b) - b|_1 + |F(a) - a|_1)                              identity
     |·|_1 a mean over pixels; λ = `cycle_weight` (10), μ = `identity_weight` (0.5, the
     reference's lambda_identity; 0 = off); `cycle` 'forward' keeps only the A -> B -> A
     term, 'backward' only B -> A -> B (the paper's GAN + forward / backward ablations).
     s = 2 for 'least_squares' so that s·L_gen = mean (D - 1)^2, the reference's
     nn.MSELoss (genjax's LSGAN losses carry a ½), else 1.
  2. the fakes G(a), F(b) of that same forward pass (the generators before their update,
     as the reference) go through the image history pools (`pool_query`), one per domain;
  3. discriminators (`discriminator_step`):
       L_D = L_disc(D_b(b), D_b(pool(G(a)))) + L_disc(D_a(a), D_a(pool(F(b))))
     (each D's parameters only see their own term; the reference's factor ½ on each term
     changes nothing under Adam, which is invariant to the scale of a loss).

The image pool (`pool_query`, util/image_pool.py of the reference): `pool_size` images
and a count per domain, kept in the state. For each image of the batch in order: while
the pool is not full it is stored and used as is; once full, with probability ½
(u > 0.5) a uniformly chosen stored image is used instead and the new one takes its
slot, otherwise the new one is used. The pool must be the same on every device, so each
step gathers the global batch's fakes over the device axis, runs the rule on the global
batch with global draws, and each device keeps its slice of the answer.
`pool_size=0` turns the pool off (the discriminators see the current fakes).

Learning rate: `learning_rate` for the first `lr_constant_fraction` of the run, then
linearly to 0 at `num_train_steps` (the reference's 100 + 100 epochs: 0.5).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from genjax import config as config_lib
from genjax import losses, parallel
from genjax.models.cyclegan import GENERATORS, PatchDiscriminator, ResnetGenerator, UNetGenerator
from genjax.state import Player, finish_step, init_player, update_player
from genjax.tasks import Evaluation, Task

GAN_LOSSES = tuple(losses.GAN_LOSSES)
CYCLES = ("both", "forward", "backward")
DIRECTIONS = ("a2b", "b2a")
DOMAINS = ("a", "b")
SHAPE_FIELDS = ("model.generator", "model.ngf", "model.num_blocks", "model.unet_num_downs",
                "model.ndf", "model.d_layers", "pool_size")


MAX_IMAGE_SIZE = 256  # the reference's 256x256 images (train.py's limit for this task)

def defaults() -> ml_collections.ConfigDict:
    """Defaults of the CycleGAN task: the reference's game, sized for the embedded data."""
    c = config_lib.base("cyclegan")
    c.dataset.name = "digits_style"  # An unpaired dataset: TFDS cycle_gan/*, digits_style, folder:PATH.
    c.dataset.jitter = False  # Resize to load_size, random crop and mirror (True for photos).
    c.dataset.load_size = 0  # Side before the random crop; 0 = round(image_size * 286/256).
    c.dataset.channels = 0  # Folder images converted to 1 or 3 channels; 0 = the first image's.
    c.batch_size = 16  # The reference trains with 1; the digits train faster with 16.
    c.num_train_steps = 2000  # Iterations (one update of each player).
    c.sample_every_steps = 500  # The a, G(a), F(G(a)) / b, F(b), G(F(b)) pictures.
    c.num_sample_images = 8  # Held-out images per domain in the pictures (the columns).

    c.model = ml_collections.ConfigDict()
    c.model.generator = "resnet"  # 'resnet' (ResNet blocks) or 'unet' (pix2pix's U-Net).
    c.model.ngf = 64  # Channels of the generators' first layer.
    c.model.num_blocks = 9  # Residual blocks of the ResNet generator (9 or 6 in the paper).
    c.model.unet_num_downs = 8  # Levels of the U-Net generator (2^levels <= image_size).
    c.model.ndf = 64  # Channels of the discriminators' first layer.
    # Stride-2 layers of the PatchGAN: 3 = the paper's 70x70 patches (images of 24 pixels
    # or more, e.g. 256x256); 2 = 34x34, which fits the default 16x16.
    c.model.d_layers = 2
    c.model.dtype = "float32"  # Compute dtype ('bfloat16' on GPU/TPU); params stay float32.

    c.loss = "least_squares"  # The adversarial loss: one of genjax.losses.GAN_LOSSES.
    c.cycle_weight = 10.0  # λ of the cycle terms (the reference's lambda_A = lambda_B); 0 = off.
    c.identity_weight = 0.5  # μ: the identity terms weigh λ·μ (0 = off).
    c.cycle = "both"  # Cycle terms kept: 'both', 'forward' (A->B->A) or 'backward' (B->A->B).
    c.pool_size = 50  # Image history pool per domain; 0 = off.
    c.learning_rate = 2e-4  # Adam learning rate of both players.
    c.adam_b1 = 0.5  # Adam beta1.
    c.adam_b2 = 0.999  # Adam beta2.
    c.lr_constant_fraction = 0.5  # Constant learning rate for this part of the run, then linear to 0.

    c.eval = ml_collections.ConfigDict()  # How genjax.evaluate measures this run ('unpaired').
    c.eval.split = "test"  # Held-out split: its domains testA and testB.
    c.eval.num_samples = 0  # Images per domain; 0 = all (always all with exact translations).
    c.eval.seed = 0  # Seeds the subset.
    # The feature extractor of FD and the classifier of the translated digits' accuracy:
    # a genjax classifier run; '' = the default one where one applies (digits_style: the
    # digits' runs/classifier_digits, trained first when missing), else none.
    c.eval.classifier_workdir = ""
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    config_lib.require_positive(c, ("sample_every_steps", "num_sample_images", "model.ngf",
                                    "model.ndf", "model.d_layers", "learning_rate"))
    config_lib.require_choice(c, "loss", GAN_LOSSES)
    config_lib.require_choice(c, "cycle", CYCLES)
    config_lib.require_choice(c, "model.generator", GENERATORS)
    config_lib.require_choice(c, "model.dtype", config_lib.DTYPES)
    for name in ("cycle_weight", "identity_weight", "pool_size", "model.num_blocks"):
        config_lib.require(config_lib.value(c, name) >= 0,
                           f"Config field {name!r} must be 0 (off) or positive, got "
                           f"{config_lib.value(c, name)}.")
    config_lib.require(0.0 <= c.lr_constant_fraction <= 1.0, "Config field "
                       f"'lr_constant_fraction' must be in [0, 1], got {c.lr_constant_fraction}.")
    size = c.image_size
    config_lib.require(size >= 3 * 2 ** c.model.d_layers, (
        f"A PatchGAN of model.d_layers={c.model.d_layers} needs images of side at least "
        f"{3 * 2 ** c.model.d_layers}, but image_size is {size}; use "
        f"--config.model.d_layers={max(1, (size // 3).bit_length() - 1)} (3 is the 70x70 "
        "PatchGAN for 256x256 images)."))
    if c.model.generator == "unet":
        config_lib.require(2 <= c.model.unet_num_downs and size % 2 ** c.model.unet_num_downs == 0,
                           f"A U-Net of model.unet_num_downs={c.model.unet_num_downs} needs "
                           f"image_size divisible by 2^levels, got {size}; use "
                           f"--config.model.unet_num_downs={size.bit_length() - 1}.")


def data_spec(config: ml_collections.ConfigDict):
    """Two domains: batches {'a', 'b', 'a_label', 'b_label'}, each domain on its own."""
    from genjax.data.spec import from_config  # lazily: the input pipeline imports grain

    return from_config(config, layout="unpaired")


@flax.struct.dataclass
class CycleGANState:
    step: jnp.ndarray  # int32: completed iterations.
    key: jnp.ndarray  # uint32 key data; per-step keys are fold_in(key, step).
    generators: Player  # params {'g_ab', 'g_ba'}: G: A -> B and F: B -> A.
    discriminators: Player  # params {'d_a', 'd_b'}: judges of domain A and of domain B.
    pool: Any  # {'a', 'b'}: images [pool_size, S, S, C] of the fakes of each domain ({} without pools).
    pool_count: Any  # {'a', 'b'}: int32, how many slots of each pool are filled ({} without).
    skipped: jnp.ndarray  # int32: iterations whose update was skipped (not finite).
    nonfinite_streak: jnp.ndarray  # int32: consecutive skipped iterations.


# --------------------------------------------------------------------- the image pool


def pool_draws(key: jax.Array, num: int, pool_size: int):
    """The random numbers `pool_query` consumes for `num` images: uniforms in [0, 1) (a
    stored image is used when u > 0.5) and slots in [0, pool_size)."""
    u_key, slot_key = jax.random.split(key)
    return (jax.random.uniform(u_key, (num,)),
            jax.random.randint(slot_key, (num,), 0, max(pool_size, 1)))


def pool_query(images: jnp.ndarray, count: jnp.ndarray, fakes: jnp.ndarray, uniforms,
               slots):
    """The reference's ImagePool.query as a pure function: (pool images [P, ...], filled
    count, fakes [N, ...], the draws of `pool_draws`) -> (images the discriminator sees
    [N, ...], new pool images, new count), the fakes taken in order (module docstring)."""
    pool_size = images.shape[0]
    if pool_size == 0:
        return fakes, images, count

    def one(carry, inputs):
        pool, filled = carry
        fake, u, slot = inputs
        not_full = filled < pool_size
        swap = (~not_full) & (u > 0.5)
        write = jnp.where(not_full, filled, slot)
        stored = pool[write]
        out = jnp.where(swap, stored, fake)
        pool = jnp.where(not_full | swap, pool.at[write].set(fake), pool)
        return (pool, filled + not_full.astype(filled.dtype)), out

    (images, count), out = jax.lax.scan(one, (images, count), (fakes, uniforms, slots))
    return out, images, count


def _global_pool_query(images, count, fakes, key):
    """`pool_query` on the global batch (the fakes gathered over devices, draws from the
    device-independent key), so every device updates its pool identically; returns this
    device's slice of what the discriminator sees."""
    everyone = jax.lax.all_gather(fakes, parallel.AXIS, tiled=True)
    uniforms, slots = pool_draws(key, everyone.shape[0], images.shape[0])
    out, images, count = pool_query(images, count, everyone, uniforms, slots)
    n = fakes.shape[0]
    mine = jax.lax.dynamic_slice_in_dim(out, parallel.device_index() * n, n, axis=0)
    return mine, images, count


# ------------------------------------------------------------------------- the game


def build_models(config: ml_collections.ConfigDict, channels: dict):
    dtype = jnp.dtype(config.model.dtype)
    m = config.model

    def generator(out_channels):
        if m.generator == "unet":
            return UNetGenerator(channels=out_channels, num_downs=m.unet_num_downs, ngf=m.ngf,
                                 norm="instance", dropout_blocks=0, dtype=dtype)
        return ResnetGenerator(channels=out_channels, ngf=m.ngf, num_blocks=m.num_blocks,
                               dtype=dtype)

    discriminator = PatchDiscriminator(n_layers=m.d_layers, ndf=m.ndf, norm="instance",
                                       conditional=False, dtype=dtype)
    return {"g_ab": generator(channels["b"]), "g_ba": generator(channels["a"]),
            "d": discriminator}


def learning_rate_schedule(config: ml_collections.ConfigDict):
    """Constant, then linear to 0 at the end of the run."""
    constant = int(round(config.lr_constant_fraction * config.num_train_steps))
    return optax.linear_schedule(config.learning_rate, 0.0,
                                 transition_steps=max(config.num_train_steps - constant, 1),
                                 transition_begin=constant)


def build_optimizer(config: ml_collections.ConfigDict):
    return optax.adam(learning_rate_schedule(config), b1=config.adam_b1, b2=config.adam_b2)


def init(seed: int, *, models, tx, channels: dict, image_size: int,
         pool_size: int) -> CycleGANState:
    keys = jax.random.split(jax.random.key(seed), 5)
    shape = {d: (1, image_size, image_size, channels[d]) for d in DOMAINS}
    g = {"g_ab": models["g_ab"].init(keys[0], jnp.zeros(shape["a"]), train=False)["params"],
         "g_ba": models["g_ba"].init(keys[1], jnp.zeros(shape["b"]), train=False)["params"]}
    d = {f"d_{x}": models["d"].init(k, jnp.zeros(shape[x]), jnp.zeros(shape[x]),
                                    train=False)["params"]
         for x, k in zip(DOMAINS, keys[2:4])}
    return CycleGANState(
        step=jnp.zeros((), jnp.int32), key=jax.random.key_data(keys[4]),
        generators=init_player({"params": g}, tx), discriminators=init_player({"params": d}, tx),
        # No pool (pool_size 0) is no entry: a checkpoint cannot hold zero-size arrays.
        pool={x: jnp.zeros((pool_size, *shape[x][1:]), jnp.float32)
              for x in DOMAINS if pool_size},
        pool_count={x: jnp.zeros((), jnp.int32) for x in DOMAINS if pool_size},
        skipped=jnp.zeros((), jnp.int32), nonfinite_streak=jnp.zeros((), jnp.int32))


def _l1(x, y):
    return jnp.mean(jnp.abs(x - y))


def adversarial_scale(loss_name: str) -> float:
    """s of the module docstring: genjax's LSGAN generator loss is ½(D - 1)^2, the
    reference's is (D - 1)^2."""
    return 2.0 if loss_name == "least_squares" else 1.0


def generator_step(state: CycleGANState, a, b, *, models, tx, loss: losses.GANLoss,
                   scale: float, cycle_weight: float, identity_weight: float, cycle: str):
    d_params = state.discriminators.params

    def judge(domain, images):
        return models["d"].apply({"params": d_params[f"d_{domain}"]}, images, images)

    def loss_fn(params):
        g_ab = functools.partial(models["g_ab"].apply, {"params": params["g_ab"]})
        g_ba = functools.partial(models["g_ba"].apply, {"params": params["g_ba"]})
        fake_b, fake_a = g_ab(a), g_ba(b)
        adv_b = scale * loss.generator(judge("b", fake_b))
        adv_a = scale * loss.generator(judge("a", fake_a))
        total = adv_a + adv_b
        aux = {"g/adversarial_a": adv_a, "g/adversarial_b": adv_b}
        if cycle_weight > 0:
            if cycle in ("both", "forward"):
                aux["cycle/a"] = _l1(g_ba(fake_b), a)  # A -> B -> A
                total += cycle_weight * aux["cycle/a"]
            if cycle in ("both", "backward"):
                aux["cycle/b"] = _l1(g_ab(fake_a), b)  # B -> A -> B
                total += cycle_weight * aux["cycle/b"]
        if identity_weight > 0 and cycle_weight > 0:
            aux["identity/b"] = _l1(g_ab(b), b)  # G leaves B images alone
            aux["identity/a"] = _l1(g_ba(a), a)  # F leaves A images alone
            total += cycle_weight * identity_weight * (aux["identity/a"] + aux["identity/b"])
        aux["_fakes"] = {"a": jax.lax.stop_gradient(fake_a), "b": jax.lax.stop_gradient(fake_b)}
        return total, ({}, aux)

    player, g_loss, aux, finite = update_player(state.generators, tx, loss_fn)
    fakes = aux.pop("_fakes")
    return state.replace(generators=player), {"g/loss": g_loss, **aux}, finite, fakes


def discriminator_step(state: CycleGANState, real: dict, fake: dict, *, models, tx,
                       loss: losses.GANLoss):
    def loss_fn(params):
        total, aux = 0.0, {}
        for x in DOMAINS:
            def judge(images):
                return models["d"].apply({"params": params[f"d_{x}"]}, images, images)
            d_loss, on_real, on_fake = loss.discriminator(judge(real[x]), judge(fake[x]))
            total += d_loss
            aux.update({f"d_{x}/loss": d_loss, f"d_{x}/loss_real": on_real,
                        f"d_{x}/loss_fake": on_fake})
        return total, ({}, aux)

    player, d_loss, aux, finite = update_player(state.discriminators, tx, loss_fn)
    return state.replace(discriminators=player), {"d/loss": d_loss, **aux}, finite


_POOL = 0  # Purpose of the per-step key: the pools' draws (folded with the domain).


def train_step(state: CycleGANState, batch: dict, *, g_step, d_step) -> tuple[Any, dict]:
    """One iteration on this device's share of the global batch (module docstring)."""
    real = {"a": batch["a"], "b": batch["b"]}
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    state, g_metrics, g_finite, fakes = g_step(state, real["a"], real["b"])
    if not state.pool:  # pool_size 0: the discriminators see the current fakes
        state, d_metrics, d_finite = d_step(state, real, fakes)
        return finish_step(state, g_finite & d_finite, {**g_metrics, **d_metrics})
    seen, pool, count = {}, {}, {}
    for i, x in enumerate(DOMAINS):
        key = jax.random.fold_in(jax.random.fold_in(step_key, _POOL), i)
        seen[x], pool[x], count[x] = _global_pool_query(state.pool[x], state.pool_count[x],
                                                        fakes[x], key)
    # A skipped generator update leaves the pools as they were, too.
    keep = lambda new, old: jnp.where(g_finite, new, old)  # noqa: E731
    state = state.replace(pool=jax.tree.map(keep, pool, state.pool),
                          pool_count=jax.tree.map(keep, count, state.pool_count))
    state, d_metrics, d_finite = d_step(state, real, seen)
    return finish_step(state, g_finite & d_finite, {**g_metrics, **d_metrics})


# ------------------------------------------------------------------- using a model


@functools.cache
def _apply(model):
    return jax.jit(lambda params, x: model.apply({"params": params}, x, train=False))


def translate(state: CycleGANState, images, direction: str = "a2b", key=None, *, models,
              chunk: int = 256):
    """Images [N, S, S, C] in [-1, 1] of domain A ('a2b', through G) or B ('b2a', F).
    `key` is unused (the generators have no noise); it is accepted as every translating
    task's `translate` accepts it (`python -m genjax.translate`)."""
    del key
    if direction not in DIRECTIONS:
        raise config_lib.ConfigError(f"direction must be 'a2b' (A -> B, the generator G) or "
                                     f"'b2a' (B -> A, F), got {direction!r}.")
    name = "g_ab" if direction == "a2b" else "g_ba"
    apply, params = _apply(models[name]), state.generators.params[name]
    images = jnp.asarray(images, jnp.float32)
    return jnp.concatenate([apply(params, images[i:i + chunk])
                            for i in range(0, images.shape[0], chunk)])


def cycle(state: CycleGANState, images, direction: str = "a2b", *, models):
    """(translation, reconstruction): G(a), F(G(a)) for 'a2b'; F(b), G(F(b)) for 'b2a'."""
    there = translate(state, images, direction, models=models)
    back = translate(state, there, "b2a" if direction == "a2b" else "a2b", models=models)
    return there, back


def visuals(state: CycleGANState, batch, key, *, models) -> dict:
    """Rows a, G(a), F(G(a)) ('a2b') and b, F(b), G(F(b)) ('b2a') of the fixed held-out
    images, one column per image."""
    del key
    out = {}
    for direction, x in (("a2b", "a"), ("b2a", "b")):
        images = jnp.asarray(batch[x])
        there, back = cycle(state, images, direction, models=models)
        out[direction] = (jnp.concatenate([images, there, back]), images.shape[0])
    return out


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    del load_run  # draws on no other run
    channels = dict(meta.image_channels or {"a": meta.image_shape[-1],
                                            "b": meta.image_shape[-1]})
    if config.identity_weight > 0 and config.cycle_weight > 0 and channels["a"] != channels["b"]:
        raise config_lib.ConfigError(
            f"The identity loss feeds B images to G: A -> B, so both domains need the same "
            f"channels, but A has {channels['a']} and B {channels['b']}. Set "
            "--config.identity_weight=0 (the reference requires input_nc == output_nc too).")
    models = build_models(config, channels)
    tx = build_optimizer(config)
    loss = losses.get(config.loss)
    translate_fn = functools.partial(translate, models=models)
    return Task(
        name="cyclegan",
        init=functools.partial(init, models=models, tx=tx, channels=channels,
                               image_size=config.image_size, pool_size=config.pool_size),
        train_step=functools.partial(
            train_step,
            g_step=functools.partial(generator_step, models=models, tx=tx, loss=loss,
                                     scale=adversarial_scale(config.loss),
                                     cycle_weight=config.cycle_weight,
                                     identity_weight=config.identity_weight,
                                     cycle=config.cycle),
            d_step=functools.partial(discriminator_step, models=models, tx=tx, loss=loss)),
        visuals=functools.partial(visuals, models=models),
        # Both directions' cycle error; on digits_style L1 / SSIM against the exact
        # translations and the measured slant and ink (genjax/evaluate/unpaired.py).
        evaluators={"unpaired": Evaluation("unpaired", {"translate": translate_fn})},
        held_out=config.num_sample_images,
        held_out_seed=config.seed,
        functions={"translate": translate_fn,
                   # What `python -m genjax.translate` reads: its --direction choices, the
                   # model's image side and the channels each direction takes.
                   "translation_directions": DIRECTIONS,
                   "image_size": config.image_size,
                   "input_channels": {"a2b": channels["a"], "b2a": channels["b"]},
                   "cycle": functools.partial(cycle, models=models)},
    )
