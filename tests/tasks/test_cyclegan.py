"""The CycleGAN task: the image pool against a re-implementation of the reference's rule,
the pool and the state identical on 8 devices and equal to 1 device, the losses
recomputed by hand, each step changing only its player, the ablation switches, and the
ResNet generator's shapes."""

import functools
import random

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from types import SimpleNamespace

from genjax import losses, tasks
from genjax.models.cyclegan import ResnetGenerator, reflect
from genjax.tasks import cyclegan
from tests.tasks.taskutil import assert_same_on_every_device, run, tiny

S = 8
META = SimpleNamespace(image_shape=(None, None, 1), image_channels={"a": 1, "b": 1},
                       num_classes=10, name="digits_style")
TINY = {"image_size": S, "batch_size": 8, "num_train_steps": 10, "model.ngf": 2,
        "model.ndf": 2, "model.num_blocks": 1, "model.d_layers": 1, "pool_size": 5,
        "num_sample_images": 2}


def _task(**overrides):
    config = tiny(tasks.defaults("cyclegan"), TINY, overrides)
    return config, cyclegan.make(config, META)


def _batches(n, global_batch=8, seed=0):
    rng = np.random.default_rng(seed)
    return [{"a": rng.uniform(-1, 1, (global_batch, S, S, 1)).astype(np.float32),
             "b": rng.uniform(-1, 1, (global_batch, S, S, 1)).astype(np.float32),
             "a_label": rng.integers(0, 10, (global_batch,)).astype(np.int32),
             "b_label": rng.integers(0, 10, (global_batch,)).astype(np.int32)}
            for _ in range(n)]


# ------------------------------------------------------------------------ the pool


class ReferencePool:
    """util/image_pool.py's ImagePool.query, line for line, with its two random calls
    (random.uniform(0, 1) and random.randint(0, pool_size - 1)) answered from given
    sequences instead of Python's generator."""

    def __init__(self, pool_size):
        self.pool_size, self.num_imgs, self.images = pool_size, 0, []

    def query(self, images, uniforms, slots):
        if self.pool_size == 0:
            return images
        out = []
        for image, u, slot in zip(images, uniforms, slots):
            if self.num_imgs < self.pool_size:
                self.num_imgs += 1
                self.images.append(image.copy())
                out.append(image)
            else:
                if u > 0.5:
                    tmp = self.images[slot].copy()
                    self.images[slot] = image.copy()
                    out.append(tmp)
                else:
                    out.append(image)
        return np.stack(out)


@pytest.mark.parametrize("pool_size,batch", [(5, 3), (4, 4), (1, 2), (0, 3)])
def test_pool_follows_the_reference_rule_with_the_same_draws(pool_size, batch):
    query = jax.jit(cyclegan.pool_query)
    images = jnp.zeros((pool_size, 2, 2, 1))
    count = jnp.zeros((), jnp.int32)
    reference = ReferencePool(pool_size)
    rng = np.random.default_rng(pool_size)
    swapped = 0
    for step in range(8):
        fakes = rng.normal(size=(batch, 2, 2, 1)).astype(np.float32)
        uniforms, slots = cyclegan.pool_draws(jax.random.key(step), batch, pool_size)
        got, images, count = query(images, count, jnp.asarray(fakes), uniforms, slots)
        want = reference.query(list(fakes), np.asarray(uniforms), np.asarray(slots))
        np.testing.assert_array_equal(np.asarray(got), want)
        assert int(count) == reference.num_imgs
        if pool_size:
            np.testing.assert_array_equal(np.asarray(images)[:reference.num_imgs],
                                          np.stack(reference.images))
        swapped += int(np.sum(np.any(np.asarray(got) != fakes, axis=(1, 2, 3))))
    if pool_size:
        assert swapped > 0  # the replacement branch was exercised


def test_pool_draws_are_fair_and_cover_every_slot():
    uniforms, slots = cyclegan.pool_draws(jax.random.key(0), 20000, 50)
    assert abs(float(np.mean(np.asarray(uniforms) > 0.5)) - 0.5) < 0.02
    assert set(np.asarray(slots).tolist()) == set(range(50))


def test_reference_pool_reimplementation_matches_pythons_random_version():
    """The re-implementation above against the reference's own use of `random`: the same
    answers when fed the numbers Python's generator would have drawn."""
    random.seed(0)
    draws_u, draws_slot = [], []
    pool = ReferencePool(3)
    images = [np.full((1,), i, np.float32) for i in range(10)]
    outs = []
    state = random.getstate()
    # The reference consumes randint only when u > 0.5; replay that pattern.
    for i, image in enumerate(images):
        if i < 3:
            draws_u.append(0.0)
            draws_slot.append(0)
            continue
        u = random.uniform(0, 1)
        draws_u.append(u)
        draws_slot.append(random.randint(0, 2) if u > 0.5 else 0)
    outs = pool.query(images, draws_u, draws_slot)
    random.setstate(state)
    buffer, want = [], []
    for image in images:  # the reference's loop with the real `random`
        if len(buffer) < 3:
            buffer.append(image)
            want.append(image)
        elif random.uniform(0, 1) > 0.5:
            slot = random.randint(0, 2)
            want.append(buffer[slot])
            buffer[slot] = image
        else:
            want.append(image)
    np.testing.assert_array_equal(outs, np.stack(want))


# ------------------------------------------------------------------------ the game


def _apply(task_models, name, params, x):
    return task_models[name].apply({"params": params}, x)


def test_generator_loss_recomputed_by_hand():
    """L_G = mean (D_b(G(a)) - 1)^2 + mean (D_a(F(b)) - 1)^2 + 10 (|F(G(a)) - a| + |G(F(b))
    - b|) + 10·0.5 (|G(b) - b| + |F(a) - a|), in numpy from the networks' outputs."""
    config, task = _task()
    models = cyclegan.build_models(config, META.image_channels)
    state = task.init(0)
    batch = _batches(1)[0]
    _, metrics = run(task.train_step, state, [batch], 1)
    g, d = state.generators.params, state.discriminators.params
    a, b = batch["a"], batch["b"]
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    fake_b = _apply(models, "g_ab", g["g_ab"], a)
    fake_a = _apply(models, "g_ba", g["g_ba"], b)
    d_b = f64(models["d"].apply({"params": d["d_b"]}, fake_b, fake_b))
    d_a = f64(models["d"].apply({"params": d["d_a"]}, fake_a, fake_a))
    rec_a = f64(_apply(models, "g_ba", g["g_ba"], fake_b))
    rec_b = f64(_apply(models, "g_ab", g["g_ab"], fake_a))
    idt_b = f64(_apply(models, "g_ab", g["g_ab"], b))
    idt_a = f64(_apply(models, "g_ba", g["g_ba"], a))
    want = (np.mean((d_b - 1) ** 2) + np.mean((d_a - 1) ** 2)
            + 10 * (np.mean(np.abs(rec_a - a)) + np.mean(np.abs(rec_b - b)))
            + 5 * (np.mean(np.abs(idt_b - b)) + np.mean(np.abs(idt_a - a))))
    np.testing.assert_allclose(metrics["g/loss"][0], want, rtol=1e-5)
    np.testing.assert_allclose(metrics["cycle/a"][0], np.mean(np.abs(rec_a - a)), rtol=1e-5)
    np.testing.assert_allclose(metrics["identity/b"][0], np.mean(np.abs(idt_b - b)), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("overrides,terms", [
    ({"cycle": "forward", "identity_weight": 0.0}, ("adv", "cycle_a")),
    ({"cycle": "backward", "identity_weight": 0.0}, ("adv", "cycle_b")),
    ({"cycle_weight": 0.0}, ("adv",)),
    ({"identity_weight": 1.0, "cycle_weight": 3.0, "loss": "non_saturating"},
     ("adv", "cycle_a", "cycle_b", "identity")),
])
def test_ablation_switches_keep_exactly_their_terms(overrides, terms):
    config, task = _task(**overrides)
    models = cyclegan.build_models(config, META.image_channels)
    state = task.init(1)
    batch = _batches(1, seed=3)[0]
    _, metrics = run(task.train_step, state, [batch], 1)
    g, d = state.generators.params, state.discriminators.params
    a, b = batch["a"], batch["b"]
    fake_b = _apply(models, "g_ab", g["g_ab"], a)
    fake_a = _apply(models, "g_ba", g["g_ba"], b)
    logits = [np.asarray(models["d"].apply({"params": d[k]}, x, x), np.float64)
              for k, x in (("d_b", fake_b), ("d_a", fake_a))]
    if config.loss == "least_squares":
        adv = sum(np.mean((t - 1) ** 2) for t in logits)
    else:  # -log sigmoid(t)
        adv = sum(np.mean(np.log1p(np.exp(-t))) for t in logits)
    lam, mu = config.cycle_weight, config.identity_weight
    parts = {"adv": adv,
             "cycle_a": lam * np.mean(np.abs(_apply(models, "g_ba", g["g_ba"], fake_b) - a)),
             "cycle_b": lam * np.mean(np.abs(_apply(models, "g_ab", g["g_ab"], fake_a) - b)),
             "identity": lam * mu * (np.mean(np.abs(_apply(models, "g_ab", g["g_ab"], b) - b))
                                     + np.mean(np.abs(_apply(models, "g_ba", g["g_ba"], a) - a)))}
    np.testing.assert_allclose(metrics["g/loss"][0], sum(parts[t] for t in terms), rtol=1e-5)
    assert ("cycle/a" in metrics) == ("cycle_a" in terms)
    assert ("cycle/b" in metrics) == ("cycle_b" in terms)
    assert ("identity/a" in metrics) == ("identity" in terms)


def test_discriminators_see_the_pool_and_their_loss_is_recomputed_by_hand():
    """With a pool of 0 D sees the current fakes; the D loss is the LSGAN loss of each D
    on real and fake images of its own domain, from the generators before their update."""
    config, task = _task(pool_size=0)
    models = cyclegan.build_models(config, META.image_channels)
    state = task.init(2)
    batch = _batches(1, seed=5)[0]
    _, metrics = run(task.train_step, state, [batch], 1)
    g, d = state.generators.params, state.discriminators.params
    want = 0.0
    for x, other, gen in (("a", "b", "g_ba"), ("b", "a", "g_ab")):
        fake = _apply(models, gen, g[gen], batch[other])
        real_logits = np.asarray(models["d"].apply({"params": d[f"d_{x}"]}, batch[x], batch[x]),
                                 np.float64)
        fake_logits = np.asarray(models["d"].apply({"params": d[f"d_{x}"]}, fake, fake),
                                 np.float64)
        want += 0.5 * np.mean((real_logits - 1) ** 2) + 0.5 * np.mean(fake_logits ** 2)
    np.testing.assert_allclose(metrics["d/loss"][0], want, rtol=1e-5)


def test_each_step_changes_only_its_player():
    config, task = _task()
    models = cyclegan.build_models(config, META.image_channels)
    tx = cyclegan.build_optimizer(config)
    state = task.init(0)
    batch = _batches(1)[0]
    loss = losses.get(config.loss)

    def g_only(s, bt):
        s, _, _, _ = cyclegan.generator_step(s, bt["a"], bt["b"], models=models, tx=tx,
                                             loss=loss, scale=2.0, cycle_weight=10.0,
                                             identity_weight=0.5, cycle="both")
        return s, {}

    def d_only(s, bt):
        s, _, _ = cyclegan.discriminator_step(s, {"a": bt["a"], "b": bt["b"]},
                                              {"a": bt["b"], "b": bt["a"]}, models=models,
                                              tx=tx, loss=loss)
        return s, {}

    after_g, _ = run(g_only, state, [batch], 1)
    chex.assert_trees_all_equal(after_g.discriminators, jax.device_get(state.discriminators))
    for name in ("g_ab", "g_ba"):  # both generators move
        assert not np.allclose(jax.tree.leaves(after_g.generators.params[name])[0],
                               jax.tree.leaves(state.generators.params[name])[0])
    after_d, _ = run(d_only, state, [batch], 1)
    chex.assert_trees_all_equal(after_d.generators, jax.device_get(state.generators))
    for name in ("d_a", "d_b"):
        assert not np.allclose(jax.tree.leaves(after_d.discriminators.params[name])[0],
                               jax.tree.leaves(state.discriminators.params[name])[0])


@pytest.mark.slow
def test_eight_devices_match_one_device_and_the_pool_is_global():
    """Pool of 5 with a global batch of 8: it fills in the first step and swaps after;
    on 8 devices (one image each) every device holds the same pools and parameters,
    equal to 1 device's, and both translate alike."""
    _, task = _task()
    state = task.init(0)
    batches = _batches(3)
    one, m1 = run(task.train_step, state, batches, 1)
    every, m8 = run(task.train_step, state, batches, 8, every_device=True)
    assert_same_on_every_device(every)
    eight = jax.tree.map(lambda x: x[0], every)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(one), jax.tree.leaves(eight)):
        # Relative to the leaf's scale: Adam's moments of the kernels are summed in
        # another order over 8 devices (measured differences up to 1e-4 of the leaf).
        scale = float(np.max(np.abs(x))) if np.size(x) else 0.0
        np.testing.assert_allclose(x, y, atol=2e-5 + 5e-4 * scale,
                                   err_msg=jax.tree_util.keystr(path))
    np.testing.assert_allclose(m1["d/loss"][0], m8["d/loss"][0], rtol=1e-4)
    np.testing.assert_allclose(m1["g/loss"][0], m8["g/loss"][0], rtol=1e-4)
    x = jnp.asarray(batches[0]["a"])
    np.testing.assert_allclose(task.translate(one, x, "a2b"), task.translate(eight, x, "a2b"),
                               atol=1e-4)
    assert int(one.pool_count["a"]) == 5 and np.abs(one.pool["b"]).sum() > 0


def test_step_compiles_once():
    """The loop's own path (replicate, shard, pmap with donation) traces the step once."""
    from genjax import parallel

    _, task = _task()
    step = parallel.pmap(chex.assert_max_traces(lambda s, b: task.train_step(s, b), n=1))
    state = parallel.replicate(task.init(0))
    for b in _batches(3):
        laid_out = jax.tree.map(lambda x: x.reshape(8, -1, *x.shape[1:]), b)
        state, _ = step(state, parallel.shard(laid_out))
    assert int(parallel.unreplicate(state).step) == 3


def test_learning_rate_is_constant_then_linear_to_zero():
    config, _ = _task(num_train_steps=10, lr_constant_fraction=0.6, learning_rate=1e-3)
    schedule = cyclegan.learning_rate_schedule(config)
    np.testing.assert_allclose([float(schedule(i)) for i in (0, 6, 8, 10)],
                               [1e-3, 1e-3, 0.5e-3, 0.0], atol=1e-9)


def test_translate_visuals_and_directions():
    _, task = _task()
    state = task.init(0)
    x = jnp.asarray(_batches(1)[0]["a"][:3])
    there = task.translate(state, x, "a2b")
    assert there.shape == x.shape and float(jnp.abs(there).max()) <= 1.0
    there2, back = task.cycle(state, x, "a2b")
    np.testing.assert_array_equal(there, there2)
    np.testing.assert_array_equal(back, task.translate(state, there, "b2a"))
    pictures = task.visuals(state, {"a": x, "b": x}, None)
    assert pictures["a2b"][0].shape == (9, S, S, 1) and pictures["a2b"][1] == 3
    with pytest.raises(tasks.ConfigError, match="a2b"):
        task.translate(state, x, "AtoB")
    assert task.translation_directions == ("a2b", "b2a")
    assert task.input_channels == {"a2b": 1, "b2a": 1} and task.image_size == S


# ------------------------------------------------------------------------- models


def test_reflect_pads_without_repeating_the_edge():
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    want = np.pad(np.arange(9.0).reshape(3, 3), 1, mode="reflect")
    np.testing.assert_array_equal(reflect(x, 1)[0, ..., 0], want)
    assert want[0, 0] == 4.0  # reflected about the edge pixel (PyTorch's ReflectionPad2d)


@pytest.mark.parametrize("blocks", [6, 9])
def test_resnet_generator_shapes_and_parameter_count(blocks):
    model = ResnetGenerator(channels=3, ngf=8, num_blocks=blocks)
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    out = model.apply({"params": params}, jnp.zeros((2, 16, 16, 3)))
    assert out.shape == (2, 16, 16, 3)
    # Counted from the reference's layers: conv weights, a bias only on the last conv
    # (the reference's biases before instance norms, which change nothing, are dropped):
    ngf = 8
    count = (7 * 7 * 3 * ngf) + (3 * 3 * ngf * 2 * ngf) + (3 * 3 * 2 * ngf * 4 * ngf) \
        + blocks * 2 * (3 * 3 * 4 * ngf * 4 * ngf) \
        + (3 * 3 * 4 * ngf * 2 * ngf) + (3 * 3 * 2 * ngf * ngf) + (7 * 7 * ngf * 3 + 3)
    assert sum(x.size for x in jax.tree.leaves(params)) == count


def test_transposed_convolution_doubles_like_pytorchs_output_padding():
    """ConvTranspose(k=3, s=2, p=1, output_padding=1) of a single 1 at (0, 0) with an
    all-ones kernel touches output pixels 0..1 on each axis (PyTorch: o = 2i - 1 + k')."""
    import flax.linen as nn
    layer = nn.ConvTranspose(1, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)),
                             use_bias=False, kernel_init=nn.initializers.ones)
    x = jnp.zeros((1, 4, 4, 1)).at[0, 0, 0, 0].set(1.0)
    y = layer.apply(layer.init(jax.random.key(0), x), x)[0, ..., 0]
    assert y.shape == (8, 8)
    want = np.zeros((8, 8))
    want[:2, :2] = 1.0  # output o = 2i + r - 1 for kernel taps r = 0, 1, 2 -> o in {-1, 0, 1}
    np.testing.assert_array_equal(np.asarray(y), want)
