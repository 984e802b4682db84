import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.conditional import (CONDITIONINGS, ConditionalDiscriminator,
                                       ConditionalGenerator)
from genjax.models.dcgan import _batch_norm, discriminator_features

K = 10


def _count(tree):
    return sum(np.size(x) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("conditional_bn", [False, True])
@pytest.mark.parametrize("size,channels", [(8, 1), (16, 1), (32, 3)])
def test_generator_shapes_and_label_dependence(size, channels, conditional_bn):
    g = ConditionalGenerator(image_size=size, channels=channels, num_classes=K, width=8,
                             conditional_bn=conditional_bn)
    z = jax.random.normal(jax.random.key(1), (4, 6))
    labels = jnp.array([0, 1, 2, 3])
    v = g.init(jax.random.key(0), z, labels, train=False)
    x = g.apply(v, z, labels, train=False)
    assert x.shape == (4, size, size, channels)
    assert float(jnp.abs(x).max()) <= 1.0
    other = g.apply(v, z, (labels + 5) % K, train=False)
    assert not np.allclose(x, other)  # the label reaches the image


def test_generator_parameter_count():
    # 16x16x1, width 8, z 6, embedding 4, K 10, conditional BN.
    # label_embedding 10*4 = 40; Dense (6+4) -> 4*4*16, no bias = 2560;
    # CBN(16): gamma 10*16 + beta 10*16 = 320 (BN itself has no affine params);
    # UpConv 16->8 no bias = 2048; CBN(8): 160; UpConv 8->1 + bias = 129.
    g = ConditionalGenerator(image_size=16, channels=1, num_classes=K, width=8, embed_dim=4,
                             conditional_bn=True)
    v = g.init(jax.random.key(0), jnp.zeros((2, 6)), jnp.zeros((2,), jnp.int32), train=False)
    assert _count(v["params"]) == 40 + 2560 + 320 + 2048 + 160 + 129
    assert _count(v["batch_stats"]) == 2 * (16 + 8)


def test_conditional_bn_applies_the_class_scale_and_shift():
    g = ConditionalGenerator(image_size=8, channels=1, num_classes=K, width=4,
                             conditional_bn=True)
    z = jax.random.normal(jax.random.key(1), (3, 5))
    labels = jnp.array([2, 2, 7])
    v = g.init(jax.random.key(0), z, labels, train=False)
    # With every class's gamma and beta set to 0 the label acts only through the
    # embedding joined to z; zeroing that too must make the output label-independent.
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.zeros_like(p) if any(
            getattr(k, "key", None) in ("gamma", "beta", "label_embedding") for k in path)
        else p, v["params"])
    a = g.apply({**v, "params": params}, z, labels, train=False)
    b = g.apply({**v, "params": params}, z, (labels + 1) % K, train=False)
    np.testing.assert_array_equal(a, b)
    # A shift for class 7 alone changes only the example of class 7.
    beta = params["ConditionalBatchNorm_0"]["beta"]["embedding"].at[7].set(1.0)
    params["ConditionalBatchNorm_0"]["beta"]["embedding"] = beta
    c = g.apply({**v, "params": params}, z, labels, train=False)
    np.testing.assert_array_equal(a[:2], c[:2])
    assert not np.allclose(a[2], c[2])


class _Features(nn.Module):
    """The discriminator body alone, with the same layer names, as an oracle for the heads."""

    image_size: int
    width: int

    @nn.compact
    def __call__(self, x):
        return discriminator_features(
            x, image_size=self.image_size, width=self.width, dropout=0.0, train=False,
            conv_impl="phase", dtype=jnp.float32,
            norm=lambda h: _batch_norm(False, None, jnp.float32)(h))


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_discriminator_shapes(conditioning):
    d = ConditionalDiscriminator(image_size=16, num_classes=K, conditioning=conditioning,
                                 width=8)
    x = jax.random.normal(jax.random.key(0), (5, 16, 16, 3))
    labels = jnp.arange(5)
    v = d.init(jax.random.key(1), x, labels, train=False)
    logits, class_logits = d.apply(v, x, labels, train=False)
    assert logits.shape == (5,) and logits.dtype == jnp.float32
    if conditioning == "acgan":
        assert class_logits.shape == (5, K)
    else:
        assert class_logits is None
    kernel = v["params"]["DownConv_0"]["kernel"]
    assert kernel.shape[2] == 3 + (16 if conditioning == "concat" else 0)


def test_projection_head_is_linear_plus_inner_product_with_sum_pooled_features():
    d = ConditionalDiscriminator(image_size=16, num_classes=K, conditioning="projection",
                                 width=8)
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 1))
    labels = jnp.array([3, 0, 9, 3])
    v = d.init(jax.random.key(1), x, labels, train=False)
    logits, _ = d.apply(v, x, labels, train=False)
    body = {k: v["params"][k] for k in v["params"] if k.startswith(("DownConv", "BatchNorm"))}
    h = _Features(16, 8).apply({"params": body, "batch_stats": v["batch_stats"]}, x)
    h = np.asarray(h, np.float64)
    dense = v["params"]["Dense_0"]
    kernel = np.asarray(dense["kernel"], np.float64)[:, 0]
    linear = h.reshape(4, -1) @ kernel + float(dense["bias"][0])
    embed = np.asarray(v["params"]["projection"]["embedding"], np.float64)[np.asarray(labels)]
    want = linear + np.sum(embed * h.sum(axis=(1, 2)), axis=1)
    np.testing.assert_allclose(logits, want, rtol=2e-4, atol=2e-4)


def test_which_outputs_see_the_label():
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    labels, others = jnp.array([1, 2, 3, 4]), jnp.array([5, 6, 7, 8])
    for conditioning in CONDITIONINGS:
        d = ConditionalDiscriminator(image_size=8, num_classes=K, conditioning=conditioning,
                                     width=4)
        v = d.init(jax.random.key(1), x, labels, train=False)
        a, ca = d.apply(v, x, labels, train=False)
        b, cb = d.apply(v, x, others, train=False)
        if conditioning == "acgan":  # the label is a target, never an input
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ca, cb)
        else:
            assert not np.allclose(a, b), conditioning


def test_unknown_conditioning_is_named():
    d = ConditionalDiscriminator(image_size=8, num_classes=K, conditioning="film")
    with pytest.raises(ValueError, match="film"):
        d.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))
