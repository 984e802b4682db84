"""Image grids and PNG files. Images are float32 NHWC in [-1, 1] inside genjax and
uint8 at the edges."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
    """[-1, 1] float → uint8 [0, 255], rounding to nearest."""
    images = np.asarray(images, np.float32)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images, ncol: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tiles N images [N, H, W, C] (uint8 or [-1, 1] floats) into one uint8 [H', W', C] grid.

    `ncol` defaults to the ceiling of sqrt(N); `scale` enlarges each pixel (nearest) so
    small images stay legible.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = to_uint8(images)
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def legible_scale(image_size: int) -> int:
    """Pixel repeat that makes a grid of small images at least 32 px per tile."""
    return max(1, 32 // image_size)


def save_png(path, image: np.ndarray) -> Path:
    """Writes a uint8 [H, W, 1 or 3] array as a PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
    return path


def slerp(z0, z1, num: int) -> np.ndarray:
    """`num` codes on the great circle from z0 to z1 (endpoints included), the usual
    path through a Gaussian latent space: it keeps the codes' norms typical."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    t = np.linspace(0.0, 1.0, num)[:, None]
    cos = np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return ((1 - t) * z0 + t * z1).astype(np.float32)
    return ((np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)).astype(
        np.float32)


def latent_walk(key_points, steps: int) -> np.ndarray:
    """Codes walking through each consecutive pair of `key_points` [K, D]: [(K-1)*steps, D]."""
    return np.concatenate([slerp(a, b, steps) for a, b in zip(key_points[:-1], key_points[1:])])
