"""DiffAugment (genjax.augment) against numpy: each transformation is identified on
images whose pixels are all distinct, and checked against the reference's definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import augment

N, H, W = 256, 16, 16


def distinct(n=N, c=1, seed=0):
    """Images whose pixels (within an image) are all distinct and non-zero."""
    rng = np.random.default_rng(seed)
    base = np.stack([rng.permutation(H * W * c) for _ in range(n)]).astype(np.float32)
    return (1.0 + base.reshape(n, H, W, c)) / (H * W * c)


def shifted(x, tx, ty):
    """out[i, j] = x[i + tx, j + ty], 0 outside (numpy, one image)."""
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            if 0 <= i + tx < x.shape[0] and 0 <= j + ty < x.shape[1]:
                out[i, j] = x[i + tx, j + ty]
    return out


def identify_shift(x, y, limit):
    matches = [(tx, ty) for tx in range(-limit, limit + 1) for ty in range(-limit, limit + 1)
               if np.array_equal(shifted(x, tx, ty), y)]
    assert len(matches) == 1, f"output is not one shift of its input: {matches}"
    return matches[0]


def test_translation_shifts_each_image_by_its_own_offset_filling_zeros():
    x = distinct()
    y = np.asarray(augment.translation(jnp.asarray(x), jax.random.key(0)))
    s = 2  # round(16 / 8)
    shifts = [identify_shift(x[n], y[n], s + 1) for n in range(64)]
    for axis in range(2):
        assert {t[axis] for t in shifts} == set(range(-s, s + 1))  # the whole range, no more


def test_translation_passes_gradients_to_the_pixels_that_stay_in():
    x = distinct(8)
    key = jax.random.key(3)
    y = np.asarray(augment.translation(jnp.asarray(x), key))
    grad = np.asarray(jax.grad(lambda v: augment.translation(v, key).sum())(jnp.asarray(x)))
    for n in range(8):
        tx, ty = identify_shift(x[n], y[n], 3)
        expected = shifted(shifted(np.ones_like(x[n]), tx, ty), -tx, -ty)  # pixels that land
        np.testing.assert_array_equal(grad[n], expected)


def test_cutout_zeroes_one_square_of_half_the_side_clipped_at_borders():
    x = distinct()
    y = np.asarray(augment.cutout(jnp.asarray(x), jax.random.key(1)))
    size = 8  # round(16 / 2)
    tops = set()
    for n in range(N):
        zero = y[n, :, :, 0] == 0
        np.testing.assert_array_equal(y[n][~zero], x[n][~zero])  # the rest untouched
        rows, cols = np.nonzero(zero.any(1))[0], np.nonzero(zero.any(0))[0]
        assert zero.sum() == len(rows) * len(cols)  # one rectangle
        assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
        # The reference's centre offset is uniform in [0, H] (for an even side): the
        # square starts at offset - size//2 in [-4, 12], clipped by the image's edges.
        top = rows[0] if rows[0] > 0 or len(rows) == size else rows[-1] + 1 - size
        assert -size // 2 <= top <= H - size // 2
        assert len(rows) == size - max(0, -top) - max(0, top + size - H)
        assert len(cols) <= size
        tops.add(int(top))
    assert tops == set(range(-4, 13))


def test_color_is_brightness_then_contrast_on_grey_images():
    """For one channel saturation changes nothing; brightness adds b in [-0.5, 0.5] and
    contrast scales the deviations from the image mean by c in [0.5, 1.5]."""
    x = distinct()
    y = np.asarray(augment.color(jnp.asarray(x), jax.random.key(2)), np.float64)
    x = x.astype(np.float64)
    dx = x - x.mean(axis=(1, 2, 3), keepdims=True)
    dy = y - y.mean(axis=(1, 2, 3), keepdims=True)
    c = (dy * dx).sum(axis=(1, 2, 3)) / (dx * dx).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(dy, c[:, None, None, None] * dx, atol=1e-5)
    b = y.mean(axis=(1, 2, 3)) - x.mean(axis=(1, 2, 3))
    assert 0.5 <= c.min() and c.max() <= 1.5 and c.max() - c.min() > 0.8
    assert -0.5 <= b.min() and b.max() <= 0.5 and b.max() - b.min() > 0.8


def test_color_saturation_scales_each_pixels_channel_deviation():
    """With three channels: y - channel mean = s·c·(x - channel mean), s in [0, 2]."""
    x = distinct(c=3)
    y = np.asarray(augment.color(jnp.asarray(x), jax.random.key(4)), np.float64)
    dx = x - x.mean(axis=3, keepdims=True)
    dy = y - y.mean(axis=3, keepdims=True)
    ratio = (dy * dx).sum(axis=(1, 2, 3)) / (dx * dx).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(dy, ratio[:, None, None, None] * dx, atol=1e-5)
    assert 0 <= ratio.min() and ratio.max() <= 3.0


def test_policies_apply_in_order_and_empty_is_identity():
    x = jnp.asarray(distinct(4))
    key = jax.random.key(5)
    np.testing.assert_array_equal(augment.augment(x, key, ""), x)
    both = augment.augment(x, key, "translation,cutout")
    by_hand = augment.cutout(augment.translation(x, jax.random.fold_in(key, 0)),
                             jax.random.fold_in(key, 1))
    np.testing.assert_array_equal(both, by_hand)


@pytest.mark.parametrize("bad", ["flip", "cutout,cutout", "translation,,zoom"])
def test_unknown_or_repeated_policies_are_refused(bad):
    with pytest.raises(ValueError, match="comma-separated subset"):
        augment.parse(bad)
