"""The text encoder's contrastive objective and GAN-INT-CLS's game, checked against
independent recomputations (numpy, float64) on tiny shapes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import losses, parallel
from genjax.models.text import (JointEmbedding, TextConditionalDiscriminator,
                                TextConditionalGenerator, TextEncoder)
from genjax.tasks import text2image, text_encoder
from taskutil import assert_same_on_every_device, run

V, T, D, LATENT, B, S = 12, 5, 8, 4, 16, 8


def _tokens(rng, n=B, duplicates=True):
    tokens = rng.integers(2, V, (n, T)).astype(np.int32)
    tokens[:, 3:] *= rng.integers(0, 2, (n, 1)).astype(np.int32)  # some shorter captions
    if duplicates:  # rows 1, 2 and 3 say the same thing: none is a wrong caption of another
        tokens[2] = tokens[1]
        tokens[3] = tokens[1]
    return tokens


def _batches(n, seed=0, size=S):
    rng = np.random.default_rng(seed)
    return [{"image": rng.uniform(-1, 1, (B, size, size, 3)).astype(np.float32),
             "tokens": _tokens(rng), "label": np.zeros((B,), np.int32)} for _ in range(n)]


def _softplus(x):
    return np.logaddexp(0.0, np.asarray(x, np.float64))


# ------------------------------------------------------------------- text encoder

def _contrastive_oracle(f, p, scale):
    f, p = np.asarray(f, np.float64), np.asarray(p, np.float64)
    logits = scale * f @ p.T
    n = len(f)
    rows = [-(logits[i, i] - np.log(np.exp(logits[i]).sum())) for i in range(n)]
    cols = [-(logits[j, j] - np.log(np.exp(logits[:, j]).sum())) for j in range(n)]
    return 0.5 * (np.mean(rows) + np.mean(cols))


def test_contrastive_loss_matches_a_float64_oracle():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(6, 4)).astype(np.float32)
    p = (f + 0.5 * rng.normal(size=(6, 4))).astype(np.float32)
    p[5] = rng.normal(size=4)  # a pair that does not match: not retrieved
    loss, i2t, t2i = losses.contrastive(jnp.asarray(f), jnp.asarray(p), 3.0)
    np.testing.assert_allclose(loss, _contrastive_oracle(f, p, 3.0), rtol=1e-5)
    logits = f.astype(np.float64) @ p.T.astype(np.float64)
    np.testing.assert_allclose(i2t, np.mean(logits.argmax(1) == np.arange(6)))
    np.testing.assert_allclose(t2i, np.mean(logits.argmax(0) == np.arange(6)))


def _encoder_setup():
    model = JointEmbedding(vocab_size=V, text_width=8, image_width=4, embed_dim=D)
    tx = optax.adam(1e-2)
    state = text_encoder.init(0, model=model, tx=tx, image_shape=(S, S, 3), max_tokens=T)
    return model, tx, state, functools.partial(text_encoder.train_step, model=model, tx=tx)


def test_text_encoder_step_is_the_global_contrastive_loss_on_any_device_count():
    """The loss is over the whole global batch (every image against every caption), so
    8 devices of 2 compute the loss, and take the step, that 1 device of 16 does."""
    model, _, s0, step = _encoder_setup()
    data = _batches(2)
    f, p, scale = model.apply({"params": s0.model.params}, data[0]["image"], data[0]["tokens"])
    _, first = run(step, s0, data[:1], 1)
    np.testing.assert_allclose(first["retrieval/loss"][0],
                               _contrastive_oracle(f, p, float(scale)), rtol=1e-5)
    one, m1 = run(step, s0, data, 1)
    every, m8 = run(step, s0, data, 8, every_device=True)
    np.testing.assert_allclose(m8["retrieval/loss"][0], m1["retrieval/loss"][0], rtol=1e-5)
    assert_same_on_every_device(every)
    chex.assert_trees_all_close(one, jax.tree.map(lambda x: x[0], every), atol=2e-5, rtol=2e-4)
    assert not np.allclose(one.model.params["text"]["out"]["kernel"],
                           s0.model.params["text"]["out"]["kernel"])


def test_text_encoder_ignores_padding_and_embeds_unit_vectors():
    enc = TextEncoder(V, 8, D)
    tokens = np.array([[3, 4, 5, 0, 0]], np.int32)
    params = enc.init(jax.random.key(0), tokens)
    out = enc.apply(params, tokens)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    longer = np.array([[3, 4, 5, 0, 0, 0, 0]], np.int32)  # more padding, same caption
    np.testing.assert_allclose(enc.apply(params, longer), out, atol=1e-6)
    assert not np.allclose(enc.apply(params, np.array([[3, 4, 6, 0, 0]], np.int32)), out)


# ------------------------------------------------------------------- GAN-INT-CLS

def _setup(cls_weight=0.5, int_weight=1.0, size=S, d_lr=2e-4, eps=1e-8):
    enc = TextEncoder(V, 8, D)
    enc_params = enc.init(jax.random.key(9), np.ones((2, T), np.int32))["params"]
    common = dict(image_size=size, compress_dim=4)
    g = functools.partial(TextConditionalGenerator, channels=3, width=4, **common)
    d = functools.partial(TextConditionalDiscriminator, width=4, **common)
    g_plain, d_plain = g(), d()
    g, d = g(bn_axis_name=parallel.AXIS), d(bn_axis_name=parallel.AXIS)
    g_tx, d_tx = optax.adam(2e-4, b1=0.5, eps=eps), optax.adam(d_lr, b1=0.5, eps=eps)
    game = dict(generator=g, discriminator=d, text_model=enc,
                loss=losses.get("non_saturating"), latent_dim=LATENT)
    d_step = functools.partial(text2image.discriminator_step, d_tx=d_tx,
                               cls_weight=cls_weight, **game)
    g_step = functools.partial(text2image.generator_step, g_tx=g_tx, ema_decay=0.999,
                               int_weight=int_weight, **game)
    step = functools.partial(text2image.train_step, d_steps=1, d_step=d_step, g_step=g_step)
    state = text2image.init(0, generator=g, discriminator=d, g_tx=g_tx, d_tx=d_tx,
                            latent_dim=LATENT, channels=3, embed_dim=D,
                            encoder_params=enc_params)
    return SimpleGame(g_plain, d_plain, enc, d_step, g_step, step, state)


class SimpleGame:
    def __init__(self, g, d, enc, d_step, g_step, step, state):
        self.g, self.d, self.enc = g, d, enc
        self.d_step, self.g_step, self.step, self.state = d_step, g_step, step, state


def _sharpen(game):
    """At initialisation D's logits are near 0 whatever the caption, so a wrong embedding
    would hardly change a loss; D's text projection and last layer 30 times larger make
    its logits depend on the caption, so that a test can tell which embedding it saw."""
    s = game.state
    params = dict(s.discriminator.params)
    for name in ("compress", "Dense_0"):
        params[name] = jax.tree.map(lambda w: w * 30.0, params[name])
    game.state = s.replace(discriminator=s.discriminator.replace(params=params))
    return game


def _phi(game, tokens):
    return np.asarray(game.enc.apply({"params": game.state.text_encoder}, tokens))


def _wrong_rows_oracle(key, tokens):
    """For each row, the first row from i + o_i on (going round) with other tokens."""
    b = len(tokens)
    offsets = np.asarray(jax.random.randint(key, (b,), 1, b))
    out = []
    for i in range(b):
        for k in range(b - 1):
            j = (i + offsets[i] + k) % b
            if not np.array_equal(tokens[j], tokens[i]):
                out.append(j)
                break
        else:
            out.append((i + offsets[i]) % b)
    return np.array(out)


def test_wrong_captions_differ_from_the_right_one():
    """The rows the step takes are the oracle's, and never say the same as the right one,
    in batches with many repeated captions (three distinct ones among 16 rows)."""
    rng = np.random.default_rng(1)
    for tokens in (_batches(1)[0]["tokens"], _tokens(rng)[np.arange(B) % 3]):
        for seed in range(4):
            key = jax.random.key(seed)
            rows, found = text2image.wrong_rows(key, jnp.asarray(tokens))
            np.testing.assert_array_equal(rows, _wrong_rows_oracle(key, tokens))
            assert np.asarray(found).all()
            for i, j in enumerate(np.asarray(rows)):
                assert not np.array_equal(tokens[j], tokens[i])
    same = np.repeat(tokens[:1], 4, axis=0)  # no wrong caption exists: flagged
    rows, found = text2image.wrong_rows(key, jnp.asarray(same))
    assert not np.asarray(found).any()


def _judge(game, player, images, emb):
    logits, _ = game.d.apply({"params": player.params, "batch_stats": player.batch_stats},
                             images, emb, train=True, mutable=["batch_stats"])
    return np.asarray(logits, np.float64)


@pytest.mark.parametrize("cls_weight", [0.0, 0.5, 0.3])
def test_matching_aware_discriminator_loss_recomputed_by_hand(cls_weight):
    """d/loss = mean softplus(-D(x, φ(t))) + w·mean softplus(D(x, φ(t')))
    + (1 - w)·mean softplus(D(G(z, φ(t)), φ(t))), every term recomputed outside the step
    from the pre-update networks, the same noise and the oracle's wrong captions."""
    game = _sharpen(_setup(cls_weight))
    batch = _batches(1)[0]
    key = jax.random.key(7)
    _, m = run(lambda s, b: game.d_step(s, b["image"], b["tokens"], key)[:2], game.state,
               [batch], 1)
    x, tokens = batch["image"], batch["tokens"]
    phi = _phi(game, tokens)
    wrong = phi[_wrong_rows_oracle(jax.random.fold_in(key, text2image._WRONG), tokens)]
    z = jax.random.normal(jax.random.fold_in(key, text2image._NOISE), (B, LATENT))
    s0 = game.state
    fake, _ = game.g.apply({"params": s0.generator.params,
                            "batch_stats": s0.generator.batch_stats}, z, phi, train=True,
                           mutable=["batch_stats"])
    real_l = _judge(game, s0.discriminator, x, phi)
    fake_l = _judge(game, s0.discriminator, fake, phi)
    wrong_l = _judge(game, s0.discriminator, x, wrong)
    want = (np.mean(_softplus(-real_l)) + cls_weight * np.mean(_softplus(wrong_l))
            + (1 - cls_weight) * np.mean(_softplus(fake_l)))
    np.testing.assert_allclose(m["d/loss"][0], want, rtol=1e-4)
    assert ("d/loss_wrong" in m) == (cls_weight > 0)
    if cls_weight:
        np.testing.assert_allclose(m["d/loss_wrong"][0], np.mean(_softplus(wrong_l)), rtol=1e-4)


@pytest.mark.parametrize("int_weight", [0.0, 1.0, 0.5])
def test_generator_loss_with_interpolated_captions_recomputed_by_hand(int_weight):
    """g/loss = mean softplus(-D(G(z, φ), φ)) + λ·mean softplus(-D(G(z', φ_int), φ_int))
    with φ_int,i = ½(φ(t_i) + φ(t_{i+B/2})); G and D see the right and interpolated rows
    in one batch (BatchNorm statistics over both)."""
    game = _sharpen(_setup(0.5, int_weight))
    batch = _batches(1)[0]
    key = jax.random.key(5)
    _, m = run(lambda s, b: game.g_step(s, b["tokens"], key)[:2], game.state, [batch], 1)
    phi = _phi(game, batch["tokens"])
    z = jax.random.normal(jax.random.fold_in(key, text2image._NOISE), (B, LATENT))
    if int_weight:
        partner = np.array([(i + B // 2) % B for i in range(B)])
        mixed = 0.5 * (phi + phi[partner])
        z_int = jax.random.normal(jax.random.fold_in(key, text2image._INT_NOISE), (B, LATENT))
        z, phi = np.concatenate([z, z_int]), np.concatenate([phi, mixed]).astype(np.float32)
    s0 = game.state
    fake, _ = game.g.apply({"params": s0.generator.params,
                            "batch_stats": s0.generator.batch_stats}, z, phi, train=True,
                           mutable=["batch_stats"])
    logits = _judge(game, s0.discriminator, fake, phi)
    want = np.mean(_softplus(-logits[:B]))
    if int_weight:
        want += int_weight * np.mean(_softplus(-logits[B:]))
        np.testing.assert_allclose(m["g/loss_int"][0], np.mean(_softplus(-logits[B:])),
                                   rtol=1e-4)
        assert np.abs(logits[B:] - logits[:B]).mean() > 0.1  # D tells the embeddings apart
    np.testing.assert_allclose(m["g/loss"][0], want, rtol=1e-4)


def test_frozen_text_encoder_gets_no_gradient_and_never_changes():
    game = _setup()
    s0 = game.state
    # Its weights belong to no player: no optimiser state, nothing to update.
    enc_leaves = {np.asarray(x).tobytes() for x in jax.tree.leaves(s0.text_encoder)}
    for player in (s0.generator, s0.discriminator):
        assert not enc_leaves & {np.asarray(x).tobytes() for x in jax.tree.leaves(player)}
    # The condition is a constant of every loss: its gradient is zero.
    tokens = _batches(1)[0]["tokens"]
    grads = jax.grad(lambda p: jnp.sum(text2image.condition(p, tokens, text_model=game.enc)
                                       ** 2))(s0.text_encoder)
    assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(grads))
    s3, _ = run(game.step, s0, _batches(3), 1)
    chex.assert_trees_all_equal(s3.text_encoder, s0.text_encoder)
    assert not np.allclose(s3.generator.params["compress"]["kernel"],
                           s0.generator.params["compress"]["kernel"])


def test_steps_change_only_their_player_and_generator_sees_the_updated_discriminator():
    game = _setup()
    batch = _batches(1)[0]
    key = jax.random.key(3)
    s0 = game.state
    s_d, _ = run(lambda s, b: game.d_step(s, b["image"], b["tokens"], key)[:2], s0, [batch], 1)
    chex.assert_trees_all_equal(s_d.generator, s0.generator)
    chex.assert_trees_all_equal(s_d.ema, s0.ema)
    assert not np.allclose(s_d.discriminator.params["joint"]["kernel"],
                           s0.discriminator.params["joint"]["kernel"])
    s_g, _ = run(lambda s, b: game.g_step(s, b["tokens"], key)[:2], s0, [batch], 1)
    chex.assert_trees_all_equal(s_g.discriminator, s0.discriminator)

    # g/loss is then the right-caption term alone; a large D step makes D's update visible.
    game = _setup(int_weight=0.0, d_lr=1e-2)
    s0 = game.state
    s1, m = run(game.step, s0, [batch], 1)
    step_key = jax.random.fold_in(jax.random.wrap_key_data(s0.key), 0)
    z = jax.random.normal(jax.random.fold_in(jax.random.fold_in(step_key, 1),
                                             text2image._NOISE), (B, LATENT))
    phi = _phi(game, batch["tokens"])
    fake, _ = game.g.apply({"params": s0.generator.params,
                            "batch_stats": s0.generator.batch_stats}, z, phi, train=True,
                           mutable=["batch_stats"])
    after = _judge(game, s1.discriminator, fake, phi)
    before = _judge(game, s0.discriminator, fake, phi)
    np.testing.assert_allclose(m["g/loss"][0], np.mean(_softplus(-after)), rtol=1e-4)
    assert abs(np.mean(_softplus(-before)) - np.mean(_softplus(-after))) > 1e-3


def test_eight_devices_match_one_device():
    """Noise, wrong captions, interpolation partners, BatchNorm statistics and gradients
    are global: 8 devices of 2 take the steps 1 device of 16 does (16x16: BatchNorm in
    both networks' hidden layers). Adam's first step divides a gradient by its own size,
    so a near-zero gradient's float rounding would become a full-size step: a larger eps
    keeps the comparison about the maths."""
    game = _setup(size=16, eps=1e-4)
    data = _batches(2, size=16)
    one, m1 = run(game.step, game.state, data, 1)
    every, m8 = run(game.step, game.state, data, 8, every_device=True)
    assert_same_on_every_device(every)
    chex.assert_trees_all_close(one, jax.tree.map(lambda x: x[0], every), atol=2e-5, rtol=2e-4)
    for name in ("d/loss", "d/loss_wrong", "g/loss_int"):
        np.testing.assert_allclose(m1[name][0], m8[name][0], rtol=1e-4)


def test_caption_generation_and_interpolation_use_the_same_noise_per_row():
    """interpolate at w = 0 and w = 1 is generate of either caption (same key, same
    noise per row); in between it is G of the mixed embedding."""
    game = _setup()
    bound = dict(generator=game.g, text_model=game.enc, latent_dim=LATENT)
    tokens = _batches(1)[0]["tokens"][:4]
    other = _batches(1, seed=1)[0]["tokens"][:4]
    key = jax.random.key(2)
    a = text2image.sample_captions(game.state, tokens, key, **bound)
    b = text2image.sample_captions(game.state, other, key, **bound)
    assert a.shape == (4, S, S, 3) and float(jnp.abs(a).max()) <= 1
    w = np.array([0.0, 1.0, 0.5, 0.25], np.float32)
    mid = text2image.interpolate_captions(game.state, tokens, other, w, key, **bound)
    np.testing.assert_allclose(mid[0], a[0], atol=1e-5)
    np.testing.assert_allclose(mid[1], b[1], atol=1e-5)
    phi = (1 - w[:, None]) * _phi(game, tokens) + w[:, None] * _phi(game, other)
    z = jax.random.normal(key, (4, LATENT))
    want = text2image.generate_from_embedding(game.state, z, jnp.asarray(phi),
                                              generator=game.g)
    np.testing.assert_allclose(mid, want, atol=1e-5)
    assert not np.allclose(mid[2], a[2], rtol=1e-3, atol=1e-7)  # G starts near 0: relative
