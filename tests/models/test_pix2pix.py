"""The pix2pix networks: U-Net shapes, parameter counts and skip wiring; the PatchGAN's
receptive field measured from its gradients against the definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.pix2pix import (PatchDiscriminator, UNetGenerator, dropout_levels,
                                   level_widths, patch_output_size, receptive_field)


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def reference_unet_parameters(input_nc, output_nc, num_downs, ngf, batch_norm=True,
                              skips=True):
    """Parameters of the reference's UnetGenerator, block by block from
    UnetSkipConnectionBlock's definition: downconv (input -> inner, bias only with
    instance norm), downnorm (middle blocks), upconv (2·inner -> outer, inner for the
    innermost; bias with instance norm, always at the outermost), upnorm (not outermost);
    BatchNorm2d has a weight and a bias, InstanceNorm2d(affine=False) none. With instance
    norm, genjax drops the biases of the convolutions followed by a norm (cancelled by
    it): only the outermost and innermost down convolutions keep theirs."""
    bias = 0 if batch_norm else 1
    norm = 2 if batch_norm else 0
    inner_of = [ngf * min(2 ** i, 8) for i in range(num_downs)]
    total = 0
    for i, inner in enumerate(inner_of):
        outer = output_nc if i == 0 else inner_of[i - 1]
        cin = input_nc if i == 0 else inner_of[i - 1]
        normed = 0 < i < num_downs - 1
        total += cin * inner * 16 + (0 if normed else bias) * inner
        if normed:
            total += norm * inner
        up_in = inner if (i == num_downs - 1 or not skips) else 2 * inner
        total += up_in * outer * 16 + (outer if i == 0 else 0)
        if i > 0:
            total += norm * outer
    return total


def reference_patchgan_parameters(input_nc, ndf, n_layers, batch_norm=True):
    """NLayerDiscriminator's parameters: first and last convolutions with bias, the
    others without (the reference's with BatchNorm; genjax drops them with instance norm
    too, see above)."""
    norm = 2 if batch_norm else 0
    total = input_nc * ndf * 16 + ndf
    prev = ndf
    for n in range(1, n_layers + 1):
        cur = ndf * min(2 ** n, 8)
        total += prev * cur * 16 + norm * cur
        prev = cur
    return total + prev * 16 + 1


@pytest.mark.parametrize("num_downs,size,cin,cout", [(2, 8, 1, 1), (4, 16, 1, 3),
                                                     (5, 32, 3, 3), (6, 64, 1, 3)])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_shapes_and_parameters(num_downs, size, cin, cout, norm):
    g = UNetGenerator(channels=cout, num_downs=num_downs, ngf=4, norm=norm)
    x = jax.random.uniform(jax.random.key(0), (2, size, size, cin), minval=-1, maxval=1)
    v = g.init(jax.random.key(1), x, train=False)
    y, _ = g.apply(v, x, train=True, mutable=["batch_stats"],
                   rngs={"dropout": jax.random.key(2)})
    assert y.shape == (2, size, size, cout) and float(jnp.abs(y).max()) <= 1.0
    assert _count(v["params"]) == reference_unet_parameters(cin, cout, num_downs, 4,
                                                            norm == "batch")


def test_unet_256_matches_the_reference_count():
    g = UNetGenerator(channels=3, num_downs=8, ngf=64)
    v = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)),
                                      train=False))
    assert _count(v["params"]) == reference_unet_parameters(3, 3, 8, 64) == 54_413_955
    e = UNetGenerator(channels=3, num_downs=8, ngf=64, skips=False)
    v = jax.eval_shape(lambda: e.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)),
                                      train=False))
    assert _count(v["params"]) == reference_unet_parameters(3, 3, 8, 64, skips=False)


def test_dropout_sits_in_the_reference_blocks():
    assert dropout_levels(8, -1) == (6, 5, 4)  # unet_256: the three ngf·8 blocks
    assert dropout_levels(7, -1) == (5, 4)
    assert dropout_levels(5, -1) == ()
    assert dropout_levels(5, 2) == (3, 2)
    assert level_widths(8, 64) == [64, 128, 256, 512, 512, 512, 512, 512]
    with pytest.raises(ValueError, match="exceeds"):
        dropout_levels(4, 3)


def _perturbed(v, scale=0.3):
    """Variables with every parameter moved, so that no bias or scale is exactly at its
    initial 0 or 1 (the wiring tests then see every path); statistics unchanged."""
    leaves, tree = jax.tree.flatten(v["params"])
    keys = jax.random.split(jax.random.key(9), len(leaves))
    params = jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape)
                                       for x, k in zip(leaves, keys)])
    return {**v, "params": params}


def _zero_level(v, level):
    """Variables with level `level`'s down convolution set to 0: nothing reaches the
    levels below it but their (zero) biases."""
    params = jax.tree.map(lambda x: x, v["params"])
    params[f"down_{level}"] = jax.tree.map(jnp.zeros_like, params[f"down_{level}"])
    return {**v, "params": params}


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_skips_carry_the_input_past_a_cut_encoder(norm):
    """With level 1's down convolution zeroed, every deeper level sees a constant, so
    the output depends on the input only through the skip connections: with skips it
    still changes with the input, without skips (the encoder-decoder) it does not.
    A U-Net that forgot a skip, or joined the wrong tensor, fails one of the two."""
    x1 = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1), minval=-1, maxval=1)
    x2 = jax.random.uniform(jax.random.key(1), (2, 16, 16, 1), minval=-1, maxval=1)
    for skips in (True, False):
        g = UNetGenerator(channels=1, num_downs=4, ngf=4, norm=norm, skips=skips)
        v = _zero_level(_perturbed(g.init(jax.random.key(2), x1, train=False)), 1)
        y1, y2 = (g.apply(v, x, train=False) for x in (x1, x2))
        if skips:
            assert float(jnp.abs(y1 - y2).max()) > 1e-3
        else:
            np.testing.assert_allclose(y1, y2, atol=1e-6)
        # Without the cut, both change with the input.
        v = _perturbed(g.init(jax.random.key(2), x1, train=False))
        assert float(jnp.abs(g.apply(v, x1, train=False) - g.apply(v, x2, train=False)).max()) > 1e-3


def test_each_skip_joins_its_levels_input():
    """The decoder's UpConv at level i reads [skip_i, up] with skip_i the level's input
    (for level 1: the output of down_0): the first channels of up_1's kernel input are
    down_0's outputs. Checked by zeroing the skip half of each UpConv's kernel: the
    output then no longer depends on the input at all (the cut encoder of the test above
    leaves only the skips)."""
    g = UNetGenerator(channels=1, num_downs=4, ngf=4, norm="batch")
    x1 = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1), minval=-1, maxval=1)
    x2 = jax.random.uniform(jax.random.key(1), (2, 16, 16, 1), minval=-1, maxval=1)
    v = _zero_level(_perturbed(g.init(jax.random.key(2), x1, train=False)), 1)
    params = dict(v["params"])
    widths = level_widths(4, 4)
    for i in range(0, 3):  # up_i for i < innermost reads [skip_{i+1}, up_{i+1}]
        k = params[f"up_{i}"]["kernel"]
        skip_channels = widths[i]  # level i+1's input = down_i's output
        params[f"up_{i}"] = {**params[f"up_{i}"],
                             "kernel": k.at[:, :, :skip_channels].set(0.0)}
    v = {**v, "params": params}
    np.testing.assert_allclose(g.apply(v, x1, train=False), g.apply(v, x2, train=False),
                               atol=1e-6)


def test_dropout_is_drawn_in_training_and_on_request_only():
    g = UNetGenerator(channels=1, num_downs=4, ngf=4, dropout_blocks=2)
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1), minval=-1, maxval=1)
    v = _perturbed(g.init(jax.random.key(1), x, train=False))
    a = g.apply(v, x, train=False, dropout=True, rngs={"dropout": jax.random.key(3)})
    b = g.apply(v, x, train=False, dropout=True, rngs={"dropout": jax.random.key(4)})
    c = g.apply(v, x, train=False)
    assert float(jnp.abs(a - b).max()) > 1e-3
    np.testing.assert_array_equal(c, g.apply(v, x, train=False))
    none = UNetGenerator(channels=1, num_downs=4, ngf=4, dropout_blocks=0)
    np.testing.assert_array_equal(
        none.apply(v, x, train=False, dropout=True, rngs={"dropout": jax.random.key(3)}),
        none.apply(v, x, train=False, dropout=True, rngs={"dropout": jax.random.key(4)}))


def _receptive_support(n_layers, size):
    d = PatchDiscriminator(n_layers=n_layers, ndf=4, norm="batch", conditional=True)
    x = jnp.zeros((1, size, size, 1))
    y = jax.random.normal(jax.random.key(0), (1, size, size, 1))
    v = _perturbed(d.init(jax.random.key(1), x, y, train=False), 0.05)
    out = d.apply(v, x, y, train=False)
    h = out.shape[1]
    assert h == patch_output_size(size, n_layers)
    c = h // 2

    def one_patch(inputs, images):
        return d.apply(v, inputs, images, train=False)[0, c, c]

    gx, gy = jax.grad(one_patch, argnums=(0, 1))(x, y)
    support = np.asarray((jnp.abs(gx) + jnp.abs(gy))[0, :, :, 0] > 0)
    rows, cols = np.nonzero(support)
    return rows.min(), rows.max(), cols.min(), cols.max(), c


@pytest.mark.parametrize("n_layers,size,field", [(1, 48, 16), (2, 64, 34), (3, 128, 70)])
def test_patchgan_receptive_field_from_its_gradient(n_layers, size, field):
    """One logit's gradient w.r.t. both images is non-zero exactly on a field x field
    square: 70x70 for n_layers = 3 (the paper's PatchGAN), and 16, 34 for 1, 2 layers, the
    formula 9·2^n - 2 from the layers' definition (two stride-1 4x4 layers see 7 pixels,
    each stride-2 4x4 layer maps r to 2r + 2). Its first row is where the padding puts
    it: each stride-1 layer reads from one row above (c - 2 after both), each stride-2
    layer maps a start s to 2s - 1, so the square starts at 2^n·c - (2^n - 1) - 2·2^n."""
    top, bottom, left, right, c = _receptive_support(n_layers, size)
    assert bottom - top + 1 == field == receptive_field(n_layers)
    assert right - left + 1 == field
    # Each layer with padding 1 shifts the field up-left by one of its input pixels:
    # 1 + 2 + ... for the strided ones, 2^n for each of the two stride-1 layers.
    stride = 2 ** n_layers
    offset = (stride - 1) + 2 * stride
    assert top == c * stride - offset and left == c * stride - offset


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_patchgan_shapes_and_parameters(n_layers, norm):
    d = PatchDiscriminator(n_layers=n_layers, ndf=4, norm=norm)
    x, y = jnp.zeros((2, 32, 32, 1)), jnp.zeros((2, 32, 32, 3))
    v = d.init(jax.random.key(0), x, y, train=False)
    out, _ = d.apply(v, x, y, train=True, mutable=["batch_stats"])
    side = 32 // 2 ** n_layers - 2
    assert out.shape == (2, side, side)
    assert _count(v["params"]) == reference_patchgan_parameters(4, 4, n_layers,
                                                                norm == "batch")
    u = PatchDiscriminator(n_layers=n_layers, ndf=4, norm=norm, conditional=False)
    assert _count(u.init(jax.random.key(0), x, y, train=False)["params"]) == \
        reference_patchgan_parameters(3, 4, n_layers, norm == "batch")


def test_patchgan_n_layers_3_on_256_is_the_reference():
    d = PatchDiscriminator(n_layers=3, ndf=64)
    x = jnp.zeros((1, 256, 256, 3))
    v = jax.eval_shape(lambda: d.init(jax.random.key(0), x, x, train=False))
    assert _count(v["params"]) == reference_patchgan_parameters(6, 64, 3) == 2_768_705
    assert jax.eval_shape(lambda v: d.apply(v, x, x, train=False), v).shape == (1, 30, 30)


def test_initialisation_is_normal_002():
    g = UNetGenerator(channels=3, num_downs=5, ngf=16)
    v = g.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    k = np.concatenate([np.ravel(p["kernel"]) for p in v["params"].values() if "kernel" in p])
    assert abs(k.std() - 0.02) < 0.001 and abs(k.mean()) < 0.001
    scales = np.concatenate([np.ravel(p["scale"]) for p in v["params"].values() if "scale" in p])
    assert abs(scales.mean() - 1) < 0.01 and 0.01 < scales.std() < 0.03
    assert all(not np.any(p["bias"]) for p in v["params"].values() if "bias" in p)
