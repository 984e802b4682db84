"""Differentiable augmentation for GANs trained on little data (DiffAugment, Zhao et al.
2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The discriminator sees every image, real and generated, through the same random
transformations, in its own update and in the generator's, so it cannot memorise the
few real images and the generator's gradients pass through the (differentiable)
transformations. The generator still learns the un-augmented distribution, because the
transformations are applied to both sides alike.

Policies (the reference's, `DiffAugment_pytorch.py`, for images in [-1, 1], NHWC):
  'color'        brightness + U(-0.5, 0.5); saturation: (x - channel mean)·U(0, 2);
                 contrast: (x - image mean)·U(0.5, 1.5)
  'translation'  shift by integers in [-s, s] (s = round(size/8)) per image and axis,
                 filling with 0
  'cutout'       zero a square of side round(size/2) at a random centre (clipped at
                 the borders)
Each image draws its own parameters. `augment(x, key, 'translation,cutout')` applies
the named policies in order; '' applies none.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

POLICIES = ("color", "translation", "cutout")


def parse(policy: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (). Raises ValueError on
    an unknown or repeated name."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [n for n in names if n not in POLICIES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"augmentation policy {policy!r}: use a comma-separated subset of "
                         f"{', '.join(POLICIES)}, each at most once.")
    return names


def _uniform(key, n, low, high):
    return jax.random.uniform(key, (n, 1, 1, 1), minval=low, maxval=high)


def color(x: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    k1, k2, k3 = jax.random.split(key, 3)
    n = x.shape[0]
    x = x + _uniform(k1, n, -0.5, 0.5)
    mean = x.mean(axis=3, keepdims=True)
    x = (x - mean) * _uniform(k2, n, 0.0, 2.0) + mean
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * _uniform(k3, n, 0.5, 1.5) + mean


def _shift_axis(x: jnp.ndarray, shift: jnp.ndarray, axis: int) -> jnp.ndarray:
    """out[..., i, ...] = x[..., i + shift, ...] along `axis` (1 or 2), 0 outside."""
    size = x.shape[axis]
    index = jnp.arange(size)[None, :] + shift[:, None]  # [N, size]
    valid = (index >= 0) & (index < size)
    index = jnp.clip(index, 0, size - 1)
    shape = [x.shape[0], 1, 1, 1]
    shape[axis] = size
    gathered = jnp.take_along_axis(x, index.reshape(shape), axis=axis)
    return jnp.where(valid.reshape(shape), gathered, 0.0).astype(x.dtype)


def translation(x: jnp.ndarray, key: jax.Array, ratio: float = 0.125) -> jnp.ndarray:
    n, h, w = x.shape[:3]
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    kh, kw = jax.random.split(key)
    x = _shift_axis(x, jax.random.randint(kh, (n,), -sh, sh + 1), axis=1)
    return _shift_axis(x, jax.random.randint(kw, (n,), -sw, sw + 1), axis=2)


def cutout(x: jnp.ndarray, key: jax.Array, ratio: float = 0.5) -> jnp.ndarray:
    n, h, w = x.shape[:3]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    kh, kw = jax.random.split(key)
    # The square covers [offset - size//2, offset - size//2 + size), offsets as drawn
    # by the reference (an odd size centres on a pixel, an even one may reach one more).
    top = jax.random.randint(kh, (n, 1), 0, h + (1 - ch % 2)) - ch // 2
    left = jax.random.randint(kw, (n, 1), 0, w + (1 - cw % 2)) - cw // 2
    rows, cols = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
    in_rows = (rows >= top) & (rows < top + ch)  # [N, H]
    in_cols = (cols >= left) & (cols < left + cw)  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[..., None].astype(x.dtype)


_FUNCTIONS = {"color": color, "translation": translation, "cutout": cutout}


def augment(x: jnp.ndarray, key: jax.Array, policy: str | tuple[str, ...]) -> jnp.ndarray:
    """`x` [N, H, W, C] through the policies named in `policy`, in order, each with its own
    key folded from `key`."""
    names = parse(policy) if isinstance(policy, str) else tuple(policy)
    for i, name in enumerate(names):
        x = _FUNCTIONS[name](x, jax.random.fold_in(key, i))
    return x
