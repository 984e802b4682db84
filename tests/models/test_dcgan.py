import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.dcgan import Discriminator, Generator


def _count(tree):
    return sum(np.size(x) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 1), (32, 3), (64, 3), (128, 1)])
def test_shapes_at_every_resolution(size, channels):
    g = Generator(image_size=size, channels=channels, width=4)
    d = Discriminator(image_size=size, width=4)
    z = jnp.zeros((2, 8))
    gv = jax.eval_shape(lambda: g.init(jax.random.key(0), z, train=False))
    img = jax.eval_shape(lambda v: g.apply(v, z, train=False), gv)
    assert img.shape == (2, size, size, channels)
    dv = jax.eval_shape(lambda: d.init(jax.random.key(0), jnp.zeros(img.shape), train=False))
    logit = jax.eval_shape(lambda v: d.apply(v, jnp.zeros(img.shape), train=False), dv)
    assert logit.shape == (2,)


def test_outputs_in_range_and_param_counts():
    # 16x16x1, width 8, z 10. Generator: Dense 10->4*4*16 (no bias) = 2560; BN(16) scale+bias 32;
    # UpConv 16->8 (no bias) 4*4*16*8 = 2048; BN(8) 16; UpConv 8->1 + bias 4*4*8 + 1 = 129.
    g = Generator(image_size=16, channels=1, width=8)
    gv = g.init(jax.random.key(0), jnp.zeros((3, 10)), train=False)
    assert _count(gv["params"]) == 2560 + 32 + 2048 + 16 + 129
    assert _count(gv["batch_stats"]) == 2 * (16 + 8)
    x = g.apply(gv, jax.random.normal(jax.random.key(1), (3, 10)), train=False)
    assert float(jnp.abs(x).max()) <= 1.0
    # Discriminator: DownConv 1->8 + bias = 128 + 8; DownConv 8->16 (no bias) = 2048;
    # BN(16) 32; Dense 4*4*16 -> 1 + bias = 257.
    d = Discriminator(image_size=16, width=8)
    dv = d.init(jax.random.key(0), x, train=False)
    assert _count(dv["params"]) == 136 + 2048 + 32 + 257


def test_dropout_only_in_training():
    d = Discriminator(image_size=8, width=4, dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    v = d.init(jax.random.key(1), x, train=False)
    e1 = d.apply(v, x, train=False)
    e2 = d.apply(v, x, train=False)
    np.testing.assert_array_equal(e1, e2)
    t1, _ = d.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"])
    t2, _ = d.apply(v, x, train=True, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"])
    assert not np.allclose(t1, t2)
