"""The GAN task: the alternating game, the optimisers, the EMA, BatchNorm across devices.

Everything runs at 16x16, where both networks have BatchNorm layers (at 8x8 the
discriminator has none), so the BatchNorm invariants are checked on real statistics.
The independent oracle for a step is `_game_by_hand`: the noise drawn as the README
states, the two networks applied directly (no pmap, no task code), and the losses
written out in numpy.
"""

import functools
from types import SimpleNamespace

import chex
import jax
import numpy as np
import pytest

from genjax import losses, parallel, tasks
from genjax import tasks as tasks_lib
from genjax.models.dcgan import Discriminator, Generator
from genjax.tasks import gan
from taskutil import (assert_one_device_matches_eight, assert_same_on_every_device, batches,
                      run, tiny)

SIZE = 16
META = SimpleNamespace(image_shape=(SIZE, SIZE, 1), num_classes=10)


def tiny_config(**overrides):
    fields = {"image_size": SIZE, "batch_size": 16, "model.latent_dim": 8, "model.g_width": 4,
              "model.d_width": 4}
    return tiny(tasks_lib.defaults("gan"), fields, overrides)


def images(n=1, seed=0):
    return batches(n, seed=seed, size=SIZE)


def _differs(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _leaves(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


# ------------------------------------------------------------------ the oracle


def _softplus(t):
    return np.logaddexp(0.0, t)


# The losses by name, written out again here (real = 1, fake = 0; logits in, batch means).
D_LOSS = {
    "non_saturating": lambda r, f: np.mean(_softplus(-r)) + np.mean(_softplus(f)),
    "minimax": lambda r, f: np.mean(_softplus(-r)) + np.mean(_softplus(f)),
    "hinge": lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
    "least_squares": lambda r, f: np.mean(0.5 * (r - 1) ** 2) + np.mean(0.5 * f ** 2),
}
G_LOSS = {
    "non_saturating": lambda f: np.mean(-np.log(1 / (1 + np.exp(-f)))),  # -log D(G(z))
    "minimax": lambda f: np.mean(np.log(1 - 1 / (1 + np.exp(-f)))),     # log(1 - D(G(z)))
    "hinge": lambda f: -np.mean(f),
    "least_squares": lambda f: np.mean(0.5 * (f - 1) ** 2),
}


def _networks(config):
    """The two networks outside pmap (no device axis: one device's statistics)."""
    g = Generator(image_size=SIZE, channels=1, width=config.model.g_width)
    d = Discriminator(image_size=SIZE, width=config.model.d_width)
    return g, d


def _noise(state, purpose_index, batch, latent_dim):
    """The noise of one update as the README states it: the step key is fold_in(key, step);
    update i (D updates 0..d_steps-1, then G) folds in i, then the noise stream."""
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    key = jax.random.fold_in(jax.random.fold_in(step_key, purpose_index), gan._NOISE)
    return jax.random.normal(key, (batch, latent_dim))


def _fake(g, g_player, z):
    out, _ = g.apply({"params": g_player.params, "batch_stats": g_player.batch_stats}, z,
                     train=True, mutable=["batch_stats"])
    return out


def _logits(d, d_params, d_stats, x):
    out, _ = d.apply({"params": d_params, "batch_stats": d_stats}, x, train=True,
                     mutable=["batch_stats"])
    return np.asarray(out, np.float64)


def _d_loss_by_hand(config, state, d_params, real, update):
    g, d = _networks(config)
    z = _noise(state, update, real.shape[0], config.model.latent_dim)
    fake = _fake(g, state.generator, z)
    stats = state.discriminator.batch_stats
    return D_LOSS[config.loss](_logits(d, d_params, stats, real),
                               _logits(d, d_params, stats, fake))


def _g_loss_by_hand(config, state, d_params, batch, update):
    g, d = _networks(config)
    z = _noise(state, update, batch, config.model.latent_dim)
    fake = _fake(g, state.generator, z)
    return G_LOSS[config.loss](_logits(d, d_params, state.discriminator.batch_stats, fake))


# ------------------------------------------------------------------- the game


@pytest.mark.parametrize("loss", ["non_saturating", "minimax", "hinge", "least_squares"])
def test_step_plays_the_alternating_game_with_the_named_loss(loss):
    """One train step of each loss: the reported d/loss is the named D loss at D's old
    parameters, and g/loss the named G loss through the discriminator *after* its update
    (an alternating game, not a simultaneous one), both recomputed by hand."""
    config = tiny_config(loss=loss, d_learning_rate=1e-2)
    task = tasks.make(config, META)
    s0 = task.init(0)
    real = images()[0]["image"]
    s1, metrics = run(task.train_step, s0, [{"image": real}], 1)
    d_loss = _d_loss_by_hand(config, s0, s0.discriminator.params, real, 0)
    np.testing.assert_allclose(metrics["d/loss"][0], d_loss, rtol=1e-5, atol=1e-6)
    after = _g_loss_by_hand(config, s0, s1.discriminator.params, 16, 1)
    before = _g_loss_by_hand(config, s0, s0.discriminator.params, 16, 1)
    assert abs(after - before) > 100 * 1e-6 * max(1.0, abs(after))  # the check can tell
    np.testing.assert_allclose(metrics["g/loss"][0], after, rtol=1e-5, atol=1e-6)


def test_loss_names_map_to_their_functions():
    expected = {
        "non_saturating": (losses.bce_discriminator, losses.non_saturating_generator),
        "minimax": (losses.bce_discriminator, losses.minimax_generator),
        "hinge": (losses.hinge_discriminator, losses.hinge_generator),
        "least_squares": (losses.least_squares_discriminator, losses.least_squares_generator),
    }
    assert set(losses.GAN_LOSSES) == set(expected)
    logits = np.array([-3.0, -0.5, 0.0, 0.7, 4.0], np.float32)
    for name, (d_fn, g_fn) in expected.items():
        pair = losses.get(name)
        assert pair.discriminator is d_fn and pair.generator is g_fn, name
        np.testing.assert_allclose(pair.generator(logits), G_LOSS[name](logits.astype(float)),
                                   rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(pair.discriminator(logits, logits[::-1])[0],
                                   D_LOSS[name](logits.astype(float),
                                                logits[::-1].astype(float)),
                                   rtol=1e-6, err_msg=name)


def test_two_discriminator_updates_per_generator_update():
    """d_steps_per_g_step=2: D is updated twice (its Adam count is 2, G's 1), on the same
    real batch and fresh noise each time; the d/* metrics reported are those of the
    second update (at D's parameters after the first), and G plays the twice-updated D."""
    config = tiny_config(d_steps_per_g_step=2, d_learning_rate=1e-2)
    real = images()[0]["image"]
    s0 = tasks.make(config, META).init(0)
    s1, metrics = run(tasks.make(config, META).train_step, s0, [{"image": real}], 1)
    assert int(s1.discriminator.opt_state[0].count) == 2
    assert int(s1.generator.opt_state[0].count) == 1
    # D after its first update = D after the one update of a d_steps_per_g_step=1 step.
    one = tiny_config(d_learning_rate=1e-2)
    s_one, _ = run(tasks.make(one, META).train_step, s0, [{"image": real}], 1)
    d_second = _d_loss_by_hand(config, s0, s_one.discriminator.params, real, 1)
    np.testing.assert_allclose(metrics["d/loss"][0], d_second, rtol=1e-5, atol=1e-6)
    assert _differs(s_one.discriminator.params, s1.discriminator.params)
    g_after = _g_loss_by_hand(config, s0, s1.discriminator.params, 16, 2)
    np.testing.assert_allclose(metrics["g/loss"][0], g_after, rtol=1e-5, atol=1e-6)


def test_each_player_moves_by_its_own_learning_rate():
    """Adam's first step moves each parameter by lr·g/(|g| + eps) ≈ lr·sign(g): with the
    rates 10x apart, the sizes of the steps tell which rate each player got."""
    g_lr, d_lr = 1e-3, 1e-4
    config = tiny_config(g_learning_rate=g_lr, d_learning_rate=d_lr)
    task = tasks.make(config, META)
    s0 = task.init(0)
    s1, _ = run(task.train_step, s0, images(), 1)
    for name, lr in (("generator", g_lr), ("discriminator", d_lr)):
        moved = np.abs(_leaves(getattr(s1, name).params) - _leaves(getattr(s0, name).params))
        assert np.median(moved) == pytest.approx(lr, rel=0.02), name
        assert moved.max() <= lr * 1.01, name


def _ema_by_hand(ema, params, decay):
    return jax.tree.map(lambda e, p: decay * np.asarray(e, np.float64)
                        + (1 - decay) * np.asarray(p, np.float64), ema, params)


def test_ema_follows_its_formula_with_warm_up():
    """ema <- d·ema + (1 - d)·new, d = min(ema_decay, (1 + step) / (10 + step)), over the
    generator's parameters and BatchNorm statistics: after one and two steps from
    initialisation (warm-up: d = 1/10, then 2/11), and late in training (d = ema_decay)."""
    config = tiny_config(ema_decay=0.9, g_learning_rate=1e-2)
    task = tasks.make(config, META)
    s0 = task.init(0)
    gen = lambda s: {"params": s.generator.params, "batch_stats": s.generator.batch_stats}
    s1, _ = run(task.train_step, s0, images(), 1)
    chex.assert_trees_all_close(s1.ema, _ema_by_hand(s0.ema, gen(s1), 1 / 10), atol=1e-6)
    s2, _ = run(task.train_step, s1, images(seed=1), 1)
    chex.assert_trees_all_close(s2.ema, _ema_by_hand(s1.ema, gen(s2), 2 / 11), atol=1e-6)
    late = s1.replace(step=np.int32(100))  # (1 + 100) / (10 + 100) > 0.9
    s_late, _ = run(task.train_step, late, images(seed=2), 1)
    chex.assert_trees_all_close(s_late.ema, _ema_by_hand(late.ema, gen(s_late), 0.9),
                                atol=1e-6)


# ------------------------------------------------------------ the players apart


def test_train_step_moves_both_players_and_ema():
    task = tasks.make(tiny_config(), META)
    s0 = task.init(0)
    s1, metrics = run(task.train_step, s0, images(), 1)
    assert int(s1.step) == 1
    assert _differs(s0.generator.params, s1.generator.params)
    assert _differs(s0.discriminator.params, s1.discriminator.params)
    assert _differs(s0.discriminator.batch_stats, s1.discriminator.batch_stats)
    assert _differs(s0.ema["params"], s1.ema["params"])
    for name in ("d/loss", "g/loss", "d/real_prob", "d/fake_prob"):
        assert np.isfinite(metrics[name][0])


def _bound(fn, config):
    """A gan step function with the task's static pieces bound, as `gan.make` does."""
    generator, discriminator = gan.build_models(config, 1)
    g_tx, d_tx = gan.build_optimizers(config)
    kw = dict(generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
              loss=gan.losses.get(config.loss), latent_dim=config.model.latent_dim,
              ema_decay=config.ema_decay)
    names = fn.__code__.co_varnames[fn.__code__.co_argcount:fn.__code__.co_argcount
                                    + fn.__code__.co_kwonlyargcount]
    return functools.partial(fn, **{k: kw[k] for k in names if k in kw})


def test_generator_step_leaves_discriminator_untouched_and_vice_versa():
    """Including D's BatchNorm statistics, which exist at this size."""
    config = tiny_config(**{"model.d_dropout": 0.3})
    task = tasks.make(config, META)
    s0 = task.init(0)
    assert jax.tree.leaves(s0.discriminator.batch_stats)  # D has BatchNorm here
    key = jax.random.key(1)

    g_step = _bound(gan.generator_step, config)
    s_g, _ = run(lambda s, b: g_step(s, key, b["image"].shape[0])[:2], s0, images(), 2)
    chex.assert_trees_all_equal(s_g.discriminator, s0.discriminator)
    assert _differs(s0.generator.params, s_g.generator.params)
    assert _differs(s0.generator.batch_stats, s_g.generator.batch_stats)

    d_step = _bound(gan.discriminator_step, config)
    s_d, _ = run(lambda s, b: d_step(s, b["image"], key)[:2], s0, images(), 2)
    chex.assert_trees_all_equal(s_d.generator, s0.generator)
    chex.assert_trees_all_equal(s_d.ema, s0.ema)
    assert _differs(s0.discriminator.params, s_d.discriminator.params)
    assert _differs(s0.discriminator.batch_stats, s_d.discriminator.batch_stats)


@pytest.mark.parametrize("loss", ["non_saturating", "hinge"])
def test_eight_devices_match_one_device(loss):
    """BatchNorm statistics (both networks'), gradients and noise are global: 8 x 2
    behaves as 1 x 16, and every device holds the same state."""
    task = tasks.make(tiny_config(loss=loss), META)
    assert_one_device_matches_eight(task, "g/loss", size=SIZE)


def test_step_compiles_once():
    """The loop's own path (replicate, shard, pmap with donation) traces the step once."""
    task = tasks.make(tiny_config(), META)
    step = parallel.pmap(chex.assert_max_traces(lambda s, b: task.train_step(s, b), n=1))
    state = parallel.replicate(task.init(0))
    for b in images(3):
        laid_out = jax.tree.map(lambda x: x.reshape(8, -1, *x.shape[1:]), b)
        state, _ = step(state, parallel.shard(laid_out))
    assert int(parallel.unreplicate(state).step) == 3


def test_nonfinite_batch_skips_update_and_counts():
    task = tasks.make(tiny_config(), META)
    s0 = task.init(0)
    bad = images()[0]
    bad["image"][0, 0, 0, 0] = np.nan
    s1, metrics = run(task.train_step, s0, [bad], 2)
    chex.assert_trees_all_equal(s1.discriminator, s0.discriminator)
    assert int(s1.skipped) == 1 and int(s1.nonfinite_streak) == 1
    assert int(metrics["train/skipped_updates"][0]) == 1
    floats = [x for x in jax.tree.leaves(s1) if np.issubdtype(np.asarray(x).dtype, np.floating)]
    assert floats and all(np.all(np.isfinite(x)) for x in floats)
    s2, _ = run(task.train_step, s1, images(), 2)
    assert int(s2.nonfinite_streak) == 0 and int(s2.skipped) == 1


# ------------------------------------------------------- other numerics, sampling


def test_lax_convolutions_give_the_same_step():
    """conv_impl='lax' (plain XLA ops) through a whole step equals 'phase'."""
    phase = tasks.make(tiny_config(**{"model.conv_impl": "phase"}), META)
    lax = tasks.make(tiny_config(**{"model.conv_impl": "lax"}), META)
    s0 = phase.init(0)
    chex.assert_trees_all_equal(s0, lax.init(0))
    s_phase, m_phase = run(phase.train_step, s0, images(2), 2)
    s_lax, m_lax = run(lax.train_step, s0, images(2), 2)
    chex.assert_trees_all_close(s_lax, s_phase, atol=1e-5, rtol=1e-4)
    for name in ("d/loss", "g/loss"):
        np.testing.assert_allclose(m_lax[name], m_phase[name], rtol=1e-4)


def test_bfloat16_step_trains_in_float32_parameters():
    """model.dtype='bfloat16' through a whole step on 2 devices: parameters and optimiser
    states stay float32 and finite, both players move, and the losses are the float32
    ones to bfloat16 precision."""
    f32 = tasks.make(tiny_config(), META)
    bf16 = tasks.make(tiny_config(**{"model.dtype": "bfloat16"}), META)
    s0 = bf16.init(0)
    s1, m_bf16 = run(bf16.train_step, s0, images(), 2)
    _, m_f32 = run(f32.train_step, f32.init(0), images(), 2)
    for leaf in jax.tree.leaves((s1.generator, s1.discriminator, s1.ema)):
        assert leaf.dtype in (np.float32, np.int32), leaf.dtype
        assert np.all(np.isfinite(leaf))
    assert _differs(s0.generator.params, s1.generator.params)
    assert _differs(s0.discriminator.params, s1.discriminator.params)
    assert int(s1.skipped) == 0
    for name in ("d/loss", "g/loss"):
        np.testing.assert_allclose(m_bf16[name][0], m_f32[name][0], rtol=0.05)


def test_discriminator_statistics_are_the_same_on_every_device():
    """D's (and G's) BatchNorm statistics are averaged over the device axis, so after
    steps on 8 devices of 2 images each they are identical everywhere."""
    task = tasks.make(tiny_config(), META)
    stacked, _ = run(task.train_step, task.init(0), images(2), 8, every_device=True)
    assert jax.tree.leaves(stacked.discriminator.batch_stats)
    assert_same_on_every_device(stacked)


def test_sample_is_deterministic_and_in_range():
    task = tasks.make(tiny_config(), META)
    state = task.init(0)
    # Large weights, so that the generator's last layer saturates: the images must
    # still lie in [-1, 1].
    state = state.replace(ema={"params": jax.tree.map(lambda p: 30 * p, state.ema["params"]),
                               "batch_stats": state.ema["batch_stats"]})
    a = task.sample(state, jax.random.key(3), 5)
    b = task.sample(state, jax.random.key(3), 5)
    assert a.shape == (5, SIZE, SIZE, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.all(np.asarray(a) >= -1.0) and np.all(np.asarray(a) <= 1.0)
    assert np.abs(np.asarray(a)).max() > 0.99  # the range check is exercised
    # Chunking does not change the images: each depends on its own noise only.
    c = gan.sample(state, jax.random.key(3), 5,
                   generator=gan.build_models(tiny_config(), 1)[0], latent_dim=8, chunk=2)
    np.testing.assert_allclose(a, c, atol=1e-6)
    # Another key gives other images.
    assert not np.array_equal(a, task.sample(state, jax.random.key(4), 5))


# ------------------------------------------------- remedies for small data


def test_augmentation_reaches_every_image_the_discriminator_sees(monkeypatch):
    """With the transformation replaced by one that blanks its images, D must judge
    blank images on both sides of its update (so real and fake look alike to it) and in
    the generator's update: augmenting only the real images, or only in D's update,
    breaks the equalities."""
    import jax.numpy as jnp

    from genjax import augment

    calls = []

    def blank(x, key, policy):
        calls.append(policy)
        return jnp.zeros_like(x)

    monkeypatch.setattr(augment, "augment", blank)
    config = tiny_config(augment="translation,cutout", d_learning_rate=1e-2)
    task = tasks.make(config, META)
    s0 = task.init(0)
    s1, metrics = run(task.train_step, s0, images(), 1)
    assert calls and all(p == ("translation", "cutout") for p in calls)
    np.testing.assert_array_equal(metrics["d/real_prob"], metrics["d/fake_prob"])
    _, d = _networks(config)
    zeros = np.zeros((16, SIZE, SIZE, 1), np.float32)
    after = _logits(d, s1.discriminator.params, s0.discriminator.batch_stats, zeros)
    np.testing.assert_allclose(metrics["g/fake_prob"][0], np.mean(1 / (1 + np.exp(-after))),
                               rtol=1e-5)


def test_r1_penalty_is_the_squared_input_gradient_of_d_on_real_images():
    """d/r1 against central finite differences of D's summed real logits (train mode,
    as in the step), and d/loss = the named loss + r1_weight / 2 · d/r1."""
    gamma = 3.0
    config = tiny_config(r1_weight=gamma)
    task = tasks.make(config, META)
    s0 = task.init(0)
    real = images()[0]["image"][:4]
    _, metrics = run(task.train_step, s0, [{"image": real}], 1)

    _, d = _networks(config)
    variables = {"params": s0.discriminator.params, "batch_stats": s0.discriminator.batch_stats}
    total = jax.jit(jax.vmap(lambda x: d.apply(variables, x, train=True,
                                               mutable=["batch_stats"])[0].sum()))
    eps = 1e-2
    basis = np.eye(real.size, dtype=np.float32).reshape(-1, *real.shape) * eps
    diffs = []
    for chunk in range(0, len(basis), 256):
        b = basis[chunk:chunk + 256]
        diffs.append((np.asarray(total(real + b), np.float64)
                      - np.asarray(total(real - b), np.float64)) / (2 * eps))
    grad = np.concatenate(diffs).reshape(real.shape)
    r1 = np.mean(np.sum(grad ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(metrics["d/r1"][0], r1, rtol=2e-2)
    by_hand = _d_loss_by_hand(config, s0, s0.discriminator.params, real, 0)
    np.testing.assert_allclose(metrics["d/loss"][0], by_hand + gamma / 2 * r1, rtol=2e-3)


def test_spectral_discriminator_is_the_plain_one_with_kernels_over_their_top_singular_value():
    """After enough power iterations (one per training-mode call), D with d_norm='spectral'
    computes exactly D without normalisation whose every kernel, as the matrix
    [kh·kw·Cin, Cout], is divided by its largest singular value (numpy's SVD)."""
    spectral = Discriminator(image_size=SIZE, width=4, norm="spectral")
    plain = Discriminator(image_size=SIZE, width=4, norm="none")
    x = images()[0]["image"]
    variables = spectral.init(jax.random.key(0), x, train=False)
    params = variables["params"]
    step = jax.jit(lambda v: spectral.apply(v, x, train=True, mutable=["batch_stats"])[1])
    for _ in range(100):
        variables = {"params": params, **step(variables)}
    scaled = jax.tree.map(lambda k: k / np.linalg.svd(np.asarray(k, np.float64).reshape(
        -1, k.shape[-1]), compute_uv=False)[0] if k.ndim > 1 else k, params)
    np.testing.assert_allclose(spectral.apply(variables, x, train=False),
                               plain.apply({"params": scaled}, x, train=False),
                               rtol=1e-4, atol=1e-6)
    sigmas = {k: v for layer in variables["batch_stats"].values() for k, v in layer.items()
              if k.endswith("sigma")}
    assert len(sigmas) == 3  # two convolutions and the head


@pytest.mark.parametrize("overrides", [
    {"augment": "translation,cutout,color"},
    {"model.d_norm": "spectral", "r1_weight": 1.0},
])
def test_eight_devices_match_one_device_with_the_remedies(overrides):
    """Augmentation draws differ per device, so 8 x 2 matches 1 x 16 only in what is
    global; with a spectral D (no batch statistics) and R1, the step is exact."""
    task = tasks.make(tiny_config(**overrides), META)
    if "augment" in overrides:
        assert_same_on_every_device(run(task.train_step, task.init(0), images(2), 8,
                                        every_device=True)[0])
    else:
        assert_one_device_matches_eight(task, "d/r1", size=SIZE)


@pytest.mark.parametrize("field,value,match", [
    ("model.d_norm", "layer", "valid choices: batch, spectral, none"),
    ("augment", "flip", "comma-separated subset"),
    ("r1_weight", -1.0, "r1_weight"),
])
def test_bad_remedy_settings_are_config_errors(field, value, match):
    from genjax.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        tiny_config(**{field: value})
