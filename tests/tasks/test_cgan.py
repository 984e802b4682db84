"""The class-conditional GAN's game, checked against independent recomputations."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import losses, parallel
from genjax.models.conditional import CONDITIONINGS, ConditionalDiscriminator, ConditionalGenerator
from genjax.tasks import cgan
from taskutil import batches, run

K, LATENT, B = 10, 8, 16


def _setup(conditioning="projection", matching_weight=0.5, ac_weight=1.0, loss="non_saturating",
           g_lr=2e-4, d_lr=2e-4, generator_cls=ConditionalGenerator,
           discriminator_cls=ConditionalDiscriminator, image_size=8):
    # The step's networks average BatchNorm statistics over the device axis; the returned
    # ones (same parameters) run outside pmap, on one device, for the recomputations.
    g, d = (functools.partial(generator_cls, image_size=image_size, channels=1, num_classes=K,
                              width=4, embed_dim=4),
            functools.partial(discriminator_cls, image_size=image_size, num_classes=K,
                              conditioning=conditioning, width=4, embed_dim=4))
    g_plain, d_plain = g(), d()
    g, d = g(bn_axis_name=parallel.AXIS), d(bn_axis_name=parallel.AXIS)
    g_tx, d_tx = optax.adam(g_lr, b1=0.5), optax.adam(d_lr, b1=0.5)
    pair = losses.get(loss)
    d_step = functools.partial(cgan.discriminator_step, generator=g, discriminator=d, d_tx=d_tx,
                               loss=pair, latent_dim=LATENT, num_classes=K,
                               matching_weight=matching_weight, ac_weight=ac_weight)
    g_step = functools.partial(cgan.generator_step, generator=g, discriminator=d, g_tx=g_tx,
                               loss=pair, latent_dim=LATENT, num_classes=K, ac_weight=ac_weight,
                               ema_decay=0.999, matching_weight=matching_weight)
    step = functools.partial(cgan.train_step, d_steps=1, d_step=d_step, g_step=g_step)
    state = cgan.init(0, generator=g, discriminator=d, g_tx=g_tx, d_tx=d_tx, latent_dim=LATENT,
                      channels=1)
    return g_plain, d_plain, d_step, g_step, step, state


def _sharpen(state):
    """At initialisation the class head's logits are near 0, so log p_c(y|x) + log K is
    near 0 and the pair score equals the adversarial logit; a class head 100 times
    larger makes them differ, so that a test can tell which one a loss uses."""
    if "classifier" not in state.discriminator.params:
        return state
    params = dict(state.discriminator.params)
    params["classifier"] = jax.tree.map(lambda w: w * 1000.0, params["classifier"])
    return state.replace(discriminator=state.discriminator.replace(params=params))


def _judge(d, player, images, labels):
    (logits, classes), _ = d.apply({"params": player.params, "batch_stats": player.batch_stats},
                                   images, labels, train=True, mutable=["batch_stats"])
    return np.asarray(logits, np.float64), None if classes is None else np.asarray(classes)


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def _scores(logits, classes, labels, weight=0.5):
    """What the adversarial terms see: D's logit; for AC-GAN with the matching-aware term
    the pair score a(x) + log p_c(y|x) + log K, and without it (vanilla AC-GAN) a(x)."""
    if classes is None or weight == 0:
        return logits
    return logits + _log_softmax(classes)[np.arange(len(labels)), labels] + np.log(K)


def _softplus(x):
    return np.logaddexp(0.0, x)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_discriminator_loss_recomputed_by_hand(conditioning, weight):
    """d/loss = softplus(-s(x,y)) + w·softplus(s(x,y')) + (1-w)·softplus(s(G(z,y),y))
    [+ CE terms for AC-GAN], with every score recomputed outside the step from the
    pre-update discriminator, the same noise and the same wrong labels. AC-GAN at w = 0
    is Odena et al.'s: s = a(x), the unconditional adversarial logit, in every term."""
    g, d, d_step, _, _, s0 = _setup(conditioning, weight)
    s0 = _sharpen(s0)
    batch = batches(1, global_batch=B)[0]
    key = jax.random.key(7)
    _, metrics = run(lambda s, b: d_step(s, b["image"], b["label"], key)[:2], s0, [batch], 1)
    x, y = batch["image"], batch["label"]
    z = jax.random.normal(jax.random.fold_in(key, cgan._NOISE), (B, LATENT))
    fake, _ = g.apply({"params": s0.generator.params, "batch_stats": s0.generator.batch_stats},
                      z, y, train=True, mutable=["batch_stats"])
    shift = jax.random.randint(jax.random.fold_in(key, cgan._WRONG), (B,), 1, K, dtype=y.dtype)
    wrong = (y + np.asarray(shift)) % K
    assert not np.any(wrong == y)
    real_s = _scores(*_judge(d, s0.discriminator, x, y), y, weight)
    fake_l, fake_c = _judge(d, s0.discriminator, fake, y)
    fake_s = _scores(fake_l, fake_c, y, weight)
    wrong_s = _scores(*_judge(d, s0.discriminator, x, wrong), wrong, weight)
    want = (np.mean(_softplus(-real_s)) + weight * np.mean(_softplus(wrong_s))
            + (1 - weight) * np.mean(_softplus(fake_s)))
    if conditioning == "acgan":
        _, real_c = _judge(d, s0.discriminator, x, y)
        ce = lambda c: -np.mean(_log_softmax(c)[np.arange(B), y])  # noqa: E731
        want += ce(real_c) + ce(fake_c)
        np.testing.assert_allclose(metrics["d/class_loss"][0], ce(real_c) + ce(fake_c), rtol=1e-4)
    np.testing.assert_allclose(metrics["d/loss"][0], want, rtol=1e-4)
    assert ("d/loss_wrong" in metrics) == (weight > 0)


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_acgan_generator_loss_recomputed_by_hand(weight):
    """AC-GAN's g/loss: vanilla (w = 0) softplus(-a(G(z,y))) + CE(c(G(z,y)), y), the
    adversarial logit not seeing the label; matching-aware (w > 0) softplus(-s(G(z,y), y))
    with s = a + log p_c(y|x) + log K, plus the same CE."""
    g, d, _, g_step, _, s0 = _setup("acgan", weight, ac_weight=0.7)
    s0 = _sharpen(s0)
    batch = batches(1, global_batch=B)[0]
    key = jax.random.key(5)
    _, metrics = run(lambda s, b: g_step(s, b["label"], key)[:2], s0, [batch], 1)
    y = batch["label"]
    z = jax.random.normal(jax.random.fold_in(key, cgan._NOISE), (B, LATENT))
    fake, _ = g.apply({"params": s0.generator.params, "batch_stats": s0.generator.batch_stats},
                      z, y, train=True, mutable=["batch_stats"])
    a, c = _judge(d, s0.discriminator, fake, y)
    log_p = _log_softmax(c)[np.arange(B), y]
    assert np.abs(log_p + np.log(K)).mean() > 0.1  # the two scores differ
    adversarial = a if weight == 0 else a + log_p + np.log(K)
    want = np.mean(_softplus(-adversarial)) + 0.7 * -np.mean(log_p)
    np.testing.assert_allclose(metrics["g/loss"][0], want, rtol=1e-4)
    np.testing.assert_allclose(metrics["g/class_loss"][0], -np.mean(log_p), rtol=1e-4)


class _SpyGenerator(ConditionalGenerator):
    def __call__(self, z, labels, train=True):
        jax.debug.callback(lambda l: _SEEN["g"].append(np.asarray(l)), labels)
        return super().__call__(z, labels, train)


class _SpyDiscriminator(ConditionalDiscriminator):
    def __call__(self, x, labels, train=True):
        jax.debug.callback(lambda i, l: _SEEN["d"].append((np.asarray(i), np.asarray(l))),
                           x, labels)
        return super().__call__(x, labels, train)


_SEEN = {"g": [], "d": []}


def test_generator_sees_only_right_labels_and_discriminator_sees_each_pair_kind():
    *_, step, s0 = _setup("concat", 0.5, generator_cls=_SpyGenerator,
                          discriminator_cls=_SpyDiscriminator)
    jax.effects_barrier()
    _SEEN["g"].clear()  # what init saw
    _SEEN["d"].clear()
    batch = batches(1, global_batch=B)[0]
    run(step, s0, [batch], 1)
    jax.effects_barrier()
    y = batch["label"]
    assert len(_SEEN["g"]) == 2  # once in the D step (fakes), once in the G step
    for labels in _SEEN["g"]:
        np.testing.assert_array_equal(labels, y)
    reals = [l for images, l in _SEEN["d"] if np.array_equal(images, batch["image"])]
    assert len(reals) == 2  # (x, y) and (x, y')
    right = [l for l in reals if np.array_equal(l, y)]
    wrong = [l for l in reals if not np.array_equal(l, y)]
    assert len(right) == 1 and len(wrong) == 1 and not np.any(wrong[0] == y)
    assert len(_SEEN["d"]) == 4  # plus (G(z, y), y) in the D step and in the G step


def test_steps_change_only_their_player_and_generator_sees_the_updated_discriminator():
    g, d, d_step, g_step, step, s0 = _setup("projection", 0.5)
    batch = batches(1, global_batch=B)[0]
    key = jax.random.key(3)
    s_d, _ = run(lambda s, b: d_step(s, b["image"], b["label"], key)[:2], s0, [batch], 1)
    chex.assert_trees_all_equal(s_d.generator, s0.generator)
    chex.assert_trees_all_equal(s_d.ema, s0.ema)
    s_g, _ = run(lambda s, b: g_step(s, b["label"], key)[:2], s0, [batch], 1)
    chex.assert_trees_all_equal(s_g.discriminator, s0.discriminator)

    # The whole iteration: g/loss equals the generator loss under the discriminator
    # *after* its update (alternating, not simultaneous).
    s1, metrics = run(step, s0, [batch], 1)
    step_key = jax.random.fold_in(jax.random.wrap_key_data(s0.key), 0)
    z = jax.random.normal(jax.random.fold_in(jax.random.fold_in(step_key, 1), cgan._NOISE),
                          (B, LATENT))
    fake, _ = g.apply({"params": s0.generator.params, "batch_stats": s0.generator.batch_stats},
                      z, batch["label"], train=True, mutable=["batch_stats"])
    after = _judge(d, s1.discriminator, fake, batch["label"])[0]
    before = _judge(d, s0.discriminator, fake, batch["label"])[0]
    np.testing.assert_allclose(metrics["g/loss"][0], np.mean(_softplus(-after)), rtol=1e-4)
    assert abs(np.mean(_softplus(-before)) - np.mean(_softplus(-after))) > 1e-4


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_eight_devices_match_one_device(conditioning):
    """Noise, wrong labels, BatchNorm statistics and gradients are global."""
    *_, step, s0 = _setup(conditioning, 0.5, image_size=16)
    data = [{"image": np.repeat(np.repeat(b["image"], 2, 1), 2, 2), "label": b["label"]}
            for b in batches(2, global_batch=B)]  # 16x16: both networks have BatchNorm
    one, m1 = run(step, s0, data, 1)
    eight, m8 = run(step, s0, data, 8)
    chex.assert_trees_all_close(one, eight, atol=2e-5, rtol=2e-4)
    np.testing.assert_allclose(m1["d/loss"][0], m8["d/loss"][0], rtol=1e-4)


def test_sample_makes_the_requested_classes_deterministically():
    g, *_, s0 = _setup()
    labels = np.array([3, 3, 7, 0])
    a = cgan.sample_classes(s0, jax.random.key(1), labels, generator=g, latent_dim=LATENT)
    b = cgan.sample_classes(s0, jax.random.key(1), labels, generator=g, latent_dim=LATENT,
                             chunk=3)
    assert a.shape == (4, 8, 8, 1) and float(jnp.abs(a).max()) <= 1.0
    np.testing.assert_allclose(a, b, atol=1e-6)
    z = jax.random.normal(jax.random.key(1), (4, LATENT))
    other = cgan.generate(s0, z, (labels + 1) % K, generator=g)
    assert not np.allclose(a, other)


@pytest.mark.parametrize("conditional_bn", [False, True])
def test_class_interpolation_mixes_the_label_embeddings(conditional_bn):
    """Its ends are exactly the two classes' images; its middle is G with the averaged
    embedding (and conditional-BN scale and shift), recomputed by swapping that average
    into the tables of a class the interpolation does not use."""
    g = ConditionalGenerator(image_size=8, channels=1, num_classes=K, width=4, embed_dim=4,
                             conditional_bn=conditional_bn)
    v = g.init(jax.random.key(0), jnp.zeros((2, LATENT)), jnp.zeros((2,), jnp.int32),
               train=False)
    v = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape), v)
    state = type("S", (), {"ema": v})()
    z = jax.random.normal(jax.random.key(2), (2, LATENT))
    out = cgan.class_interpolation(state, z, 3, 7, 3, generator=g, num_classes=K)
    assert out.shape == (6, 8, 8, 1)
    np.testing.assert_allclose(out[0::3], cgan.generate(state, z, [3, 3], generator=g),
                               atol=1e-5)
    np.testing.assert_allclose(out[2::3], cgan.generate(state, z, [7, 7], generator=g),
                               atol=1e-5)

    def averaged(tree):  # row 0 of every class table := mean of rows 3 and 7
        return jax.tree.map(lambda x: x.at[0].set((x[3] + x[7]) / 2)
                            if x.ndim == 2 and x.shape[0] == K else x, tree)
    v_mid = {"params": averaged(v["params"]), "batch_stats": v["batch_stats"]}
    mid = cgan.generate(type("S", (), {"ema": v_mid})(), z, [0, 0], generator=g)
    np.testing.assert_allclose(out[1::3], mid, atol=1e-5)
    assert not np.allclose(out[1::3], out[0::3], atol=1e-3)
