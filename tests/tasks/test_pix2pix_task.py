"""The pix2pix game, checked against independent recomputations: the losses by hand, which
player each step changes and in which order, the learning-rate schedule, 8 devices
against 1."""

import functools
from types import SimpleNamespace

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import losses, parallel, tasks
from genjax.errors import ConfigError
from genjax.models.pix2pix import PatchDiscriminator, UNetGenerator
from genjax.tasks import pix2pix
from taskutil import assert_same_on_every_device, run, tiny

B, S, CI, CO = 16, 16, 1, 3
TINY = {"image_size": S, "batch_size": B, "model.num_downs": 4, "model.ngf": 4,
        "model.ndf": 4, "model.n_layers": 2, "model.dropout_blocks": 2}


def _pairs(n, seed=0, ci=CI, co=CO):
    rng = np.random.default_rng(seed)
    return [{"input": rng.uniform(-1, 1, (B, S, S, ci)).astype(np.float32),
             "target": rng.uniform(-1, 1, (B, S, S, co)).astype(np.float32),
             "label": np.zeros((B,), np.int32)} for _ in range(n)]


def _setup(norm="batch", loss="non_saturating", gan_weight=1.0, l1_weight=100.0,
           conditional_d=True):
    """The step functions with the task's pmapped networks, and the same networks
    without the device axis for the recomputations."""
    common_g = dict(channels=CO, num_downs=4, ngf=4, norm=norm, dropout_blocks=2)
    common_d = dict(n_layers=2, ndf=4, norm=norm, conditional=conditional_d)
    g, d = UNetGenerator(axis_name=parallel.AXIS, **common_g), \
        PatchDiscriminator(axis_name=parallel.AXIS, **common_d)
    g_plain, d_plain = UNetGenerator(**common_g), PatchDiscriminator(**common_d)
    g_tx, d_tx = optax.adam(2e-4, b1=0.5), optax.adam(2e-4, b1=0.5)
    pair = losses.get(loss)
    d_step = functools.partial(pix2pix.discriminator_step, generator=g, discriminator=d,
                               d_tx=d_tx, loss=pair)
    g_step = functools.partial(pix2pix.generator_step, generator=g, discriminator=d,
                               g_tx=g_tx, loss=pair, gan_weight=gan_weight,
                               l1_weight=l1_weight)
    step = functools.partial(pix2pix.train_step, d_step=d_step, g_step=g_step,
                             train_d=gan_weight > 0)
    state = pix2pix.init(0, generator=g, discriminator=d, g_tx=g_tx, d_tx=d_tx,
                         image_size=S, input_channels=CI, target_channels=CO)
    return g_plain, d_plain, d_step, g_step, step, state


def _vars(player):
    return {"params": player.params, "batch_stats": player.batch_stats}


def _fake(g, player, x, key):
    """G(x) in training mode with the dropout key the step uses."""
    out, _ = g.apply(_vars(player), x, train=True, mutable=["batch_stats"],
                     rngs={"dropout": jax.random.fold_in(key, pix2pix._G_DROPOUT)})
    return np.asarray(out, np.float64)


def _logits(d, player, x, y):
    out, _ = d.apply(_vars(player), x, y, train=True, mutable=["batch_stats"])
    return np.asarray(out, np.float64)


def _softplus(t):
    return np.logaddexp(0.0, t)


# The discriminator's loss on (real, fake) logits and the generator's adversarial term,
# per loss, written from the papers' formulas in numpy.
_D_LOSS = {"non_saturating": lambda r, f: np.mean(_softplus(-r)) + np.mean(_softplus(f)),
           "least_squares": lambda r, f: np.mean(0.5 * (r - 1) ** 2) + np.mean(0.5 * f ** 2),
           "hinge": lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f))}
_G_LOSS = {"non_saturating": lambda f: np.mean(_softplus(-f)),
           "least_squares": lambda f: np.mean(0.5 * (f - 1) ** 2),
           "hinge": lambda f: -np.mean(f)}


@pytest.mark.parametrize("loss,norm", [("non_saturating", "batch"),
                                       ("least_squares", "instance"), ("hinge", "batch")])
def test_discriminator_loss_is_half_the_sum_by_hand(loss, norm):
    """d/loss = ½·(L_real(D(x, y)) + L_fake(D(x, G(x)))) over every patch, with D's
    logits recomputed outside the step from the pre-update D and G's fake from the same
    dropout key."""
    g, d, d_step, _, _, s0 = _setup(norm, loss)
    batch = _pairs(1)[0]
    key = jax.random.key(7)
    _, metrics = run(lambda s, b: d_step(s, b["input"], b["target"], key)[:2], s0, [batch], 1)
    x, y = batch["input"], batch["target"]
    fake = _fake(g, s0.generator, x, key)
    real_l = _logits(d, s0.discriminator, x, y)
    fake_l = _logits(d, s0.discriminator, x, fake.astype(np.float32))
    assert real_l.shape == (B, 2, 2)  # a map of patches, all of them in the mean
    np.testing.assert_allclose(metrics["d/loss"][0], 0.5 * _D_LOSS[loss](real_l, fake_l),
                               rtol=1e-4)


@pytest.mark.parametrize("loss,gan_weight,l1_weight", [
    ("non_saturating", 1.0, 100.0), ("least_squares", 0.5, 0.0), ("hinge", 1.0, 7.0)])
def test_generator_loss_is_adversarial_plus_lambda_l1_by_hand(loss, gan_weight, l1_weight):
    g, d, _, g_step, _, s0 = _setup(loss=loss, gan_weight=gan_weight, l1_weight=l1_weight)
    batch = _pairs(1, seed=1)[0]
    key = jax.random.key(5)
    _, metrics = run(lambda s, b: g_step(s, b["input"], b["target"], key)[:2], s0, [batch], 1)
    x, y = batch["input"], batch["target"]
    fake = _fake(g, s0.generator, x, key)
    adversarial = _G_LOSS[loss](_logits(d, s0.discriminator, x, fake.astype(np.float32)))
    l1 = np.mean(np.abs(fake - y))
    np.testing.assert_allclose(metrics["g/l1"][0], l1, rtol=1e-5)
    np.testing.assert_allclose(metrics["g/loss"][0], gan_weight * adversarial + l1_weight * l1,
                               rtol=1e-4)


def test_unconditional_discriminator_sees_the_image_alone():
    """conditional_d=False: D(G(x)) and D(y), the input not joined (the 'L1 + GAN' row)."""
    g, d, d_step, _, _, s0 = _setup(conditional_d=False)
    batch = _pairs(1)[0]
    key = jax.random.key(7)
    _, metrics = run(lambda s, b: d_step(s, b["input"], b["target"], key)[:2], s0, [batch], 1)
    x, y = batch["input"], batch["target"]
    fake = _fake(g, s0.generator, x, key).astype(np.float32)
    other_x = -x  # D's logits do not depend on the input at all
    want = 0.5 * _D_LOSS["non_saturating"](_logits(d, s0.discriminator, other_x, y),
                                           _logits(d, s0.discriminator, other_x, fake))
    np.testing.assert_allclose(metrics["d/loss"][0], want, rtol=1e-4)


def test_steps_change_only_their_player_and_generator_sees_the_updated_discriminator():
    g, d, d_step, g_step, step, s0 = _setup()
    batch = _pairs(1)[0]
    key = jax.random.key(3)
    s_d, _ = run(lambda s, b: d_step(s, b["input"], b["target"], key)[:2], s0, [batch], 1)
    chex.assert_trees_all_equal(s_d.generator, s0.generator)
    assert not np.allclose(jax.tree.leaves(s_d.discriminator.params)[0],
                           jax.tree.leaves(s0.discriminator.params)[0])
    s_g, _ = run(lambda s, b: g_step(s, b["input"], b["target"], key)[:2], s0, [batch], 1)
    chex.assert_trees_all_equal(s_g.discriminator, s0.discriminator)

    # The whole iteration: g/loss is G's loss under D *after* its update, on the G(x)
    # of G before its update (alternating, not simultaneous).
    s1, metrics = run(step, s0, [batch], 1)
    step_key = jax.random.fold_in(jax.random.wrap_key_data(s0.key), 0)
    x, y = batch["input"], batch["target"]
    fake = _fake(g, s0.generator, x, step_key)
    after = _logits(d, s1.discriminator, x, fake.astype(np.float32))
    before = _logits(d, s0.discriminator, x, fake.astype(np.float32))
    l1 = np.mean(np.abs(fake - y))
    np.testing.assert_allclose(metrics["g/loss"][0], np.mean(_softplus(-after)) + 100 * l1,
                               rtol=1e-5)
    assert abs(np.mean(_softplus(-before)) - np.mean(_softplus(-after))) > 1e-4
    # And D's update saw that same G(x) (one G(x) per iteration, as the reference).
    d_fake = _logits(d, s0.discriminator, x, fake.astype(np.float32))
    want = 0.5 * _D_LOSS["non_saturating"](_logits(d, s0.discriminator, x, y), d_fake)
    np.testing.assert_allclose(metrics["d/loss"][0], want, rtol=1e-4)


def test_l1_only_never_trains_the_discriminator():
    """gan_weight = 0 (the task as `make` builds it): D stays at its initialisation and no
    D metric is reported; G's loss is λ·L1 alone."""
    c = tiny(pix2pix.defaults(), TINY, {"gan_weight": 0.0})
    task = tasks.make(c, SimpleNamespace(name="x", image_channels={"input": CI, "target": CO}))
    s0 = task.init(0)
    s2, metrics = run(task.train_step, s0, _pairs(2), 1)
    chex.assert_trees_all_equal(s2.discriminator, s0.discriminator)
    assert "d/loss" not in metrics and "g/adversarial" not in metrics
    np.testing.assert_allclose(metrics["g/loss"][0], 100 * metrics["g/l1"][0], rtol=1e-6)
    assert int(s2.step) == 2


def _hand_lr(t, lr, constant, decay):
    """The reference's lambda rule: lr·(1 - max(0, t + 1 - C)/(D + 1)), floored at 0;
    D = 0: no decay."""
    if decay == 0:
        return lr
    return max(0.0, lr * (1 - max(0, t + 1 - constant) / (decay + 1)))


@pytest.mark.parametrize("steps,constant,decay", [(10, -1, -1), (9, -1, -1), (12, 3, 5),
                                                  (8, 0, 8), (6, 6, 0)])
def test_learning_rate_schedule_against_the_hand_formula(steps, constant, decay):
    c = tiny(pix2pix.defaults(), TINY, {"num_train_steps": steps,
                                        "lr_constant_steps": constant,
                                        "lr_decay_steps": decay})
    C, D = pix2pix.lr_lengths(c)
    assert (C, D) == ((steps // 2 if constant < 0 else constant),
                      (steps - steps // 2 if constant < 0 and decay < 0
                       else (steps - C if decay < 0 else decay)))
    schedule = pix2pix.learning_rate_schedule(2e-4, C, D)
    for t in range(steps + 3):
        np.testing.assert_allclose(float(schedule(t)), _hand_lr(t, 2e-4, C, D), rtol=1e-6,
                                   atol=1e-12, err_msg=f"step {t}")
    # The optimisers use it: Adam's first update is -lr_0 (times sign(gradient)).
    g_tx, _ = pix2pix.build_optimizers(c)
    update, _ = g_tx.update({"w": jnp.ones(3)}, g_tx.init({"w": jnp.zeros(3)}))
    np.testing.assert_allclose(update["w"], -_hand_lr(0, 2e-4, C, D), rtol=1e-4)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_eight_devices_match_one_device(norm):
    """Dropout masks, BatchNorm statistics, gradients and losses are global: 3 steps on 8
    devices give 1 device's state, the same on every device."""
    *_, step, s0 = _setup(norm)
    data = _pairs(3, seed=4)
    one, m1 = run(step, s0, data, 1)
    every, m8 = run(step, s0, data, 8, every_device=True)
    assert_same_on_every_device(every)
    eight = jax.tree.map(lambda x: x[0], every)
    chex.assert_trees_all_close(one, eight, atol=2e-5, rtol=2e-4)
    for name in ("d/loss", "g/loss", "g/l1"):
        np.testing.assert_allclose(m1[name][0], m8[name][0], rtol=1e-4)


def test_translate_and_visuals():
    c = tiny(pix2pix.defaults(), TINY, {"model.sample_dropout": True, "num_sample_images": 4})
    task = tasks.make(c, SimpleNamespace(name="x", image_channels={"input": 1, "target": 3}))
    state = task.init(0)
    x = _pairs(1)[0]["input"][:5]
    a = task.translate(state, x, chunk=2)
    assert a.shape == (5, S, S, 3) and float(jnp.abs(a).max()) <= 1.0
    # Dropout on at sample time: another key, another output; the same key, the same.
    np.testing.assert_array_equal(a, task.translate(state, x, chunk=2))
    assert not np.allclose(a, task.translate(state, x, jax.random.key(1), chunk=2))
    with pytest.raises(ValueError, match="translate takes images"):
        task.translate(state, np.zeros((1, S, S, 3), np.float32))
    batch = {k: v[:4] for k, v in _pairs(1)[0].items()}
    (images, columns), = task.visuals(state, batch, jax.random.key(0)).values()
    assert columns == 4 and images.shape == (12, S, S, 3)
    np.testing.assert_allclose(images[:4], np.repeat(batch["input"], 3, -1))
    np.testing.assert_allclose(images[8:], batch["target"])
    np.testing.assert_allclose(images[4:8], task.translate(state, batch["input"],
                                                            jax.random.key(0)), atol=1e-6)


@pytest.mark.parametrize("field,value,pattern", [
    ("model.num_downs", 5, "2\\^num_downs <= image_size"),
    ("model.n_layers", 3, "logit map would be empty"),
    ("model.dropout_blocks", 3, "dropout_blocks"),
    ("gan_weight", -1.0, "must\\s+be 0 or positive"),
    ("model.norm", "layer", "batch, instance"),
    ("lr_decay_steps", -2, "lr_decay_steps"),
])
def test_bad_fields_are_named(field, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        tiny(pix2pix.defaults(), TINY, {field: value})


def test_both_weights_zero_is_refused():
    with pytest.raises(ConfigError, match="both 0"):
        tiny(pix2pix.defaults(), TINY, {"gan_weight": 0.0, "l1_weight": 0.0})


def test_unpaired_data_is_refused():
    c = tiny(pix2pix.defaults(), TINY, {})
    with pytest.raises(ConfigError, match="needs paired data"):
        tasks.make(c, SimpleNamespace(name="digits", image_channels=None))
