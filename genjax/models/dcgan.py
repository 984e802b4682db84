"""DCGAN generator and discriminator (Radford et al. 2016), for any power-of-two
resolution from 8 to 128 and any channel count.

Generator:      z -> Dense -> 4x4x(w·2^(k-1)) -> [UpConv 4x4/2 -> BN -> ReLU] x (k-1)
                  -> UpConv 4x4/2 -> tanh          (k = log2(size) - 2 up-samplings)
Discriminator:  x -> DownConv 4x4/2 -> LeakyReLU(0.2) -> [DownConv 4x4/2 -> BN -> LeakyReLU]
                  x (k-1) -> Dense -> one logit     (optional Dropout after each block)

The 4x4 stride-2 (de)convolutions come from `genjax.nn`, whose 'phase' implementation
runs only stride-1 convolutions (fast on XLA:CPU) with the same parameters and outputs
as the plain XLA operation ('lax'). BatchNorm uses batch statistics while training and
running averages at evaluation; under `pmap` it averages them over `bn_axis_name`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from genjax.nn.conv import DownConv, UpConv

# DCGAN's initialisation: N(0, 0.02) weights; BatchNorm scale N(1, 0.02).
_init = nn.initializers.normal(0.02)


def _scale_init(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * nn.initializers.normal(1.0)(key, shape, dtype)


def num_doublings(image_size: int) -> int:
    k = int(math.log2(image_size)) - 2
    if 2 ** (k + 2) != image_size or not 1 <= k <= 5:
        raise ValueError(f"image_size must be a power of two from 8 to 128, got {image_size}.")
    return k


def _batch_norm(train: bool, axis_name: str | None, dtype: Any) -> nn.BatchNorm:
    # momentum 0.9 = PyTorch's default running-average momentum of 0.1.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        axis_name=axis_name if train else None, scale_init=_scale_init,
                        dtype=dtype)


class Generator(nn.Module):
    image_size: int
    channels: int
    width: int = 32
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        k = num_doublings(self.image_size)
        features = self.width * 2 ** (k - 1)
        x = nn.Dense(4 * 4 * features, use_bias=False, kernel_init=_init, dtype=self.dtype)(z)
        x = x.reshape(z.shape[0], 4, 4, features)
        x = nn.relu(_batch_norm(train, self.bn_axis_name, self.dtype)(x))
        for _ in range(k - 1):
            features //= 2
            x = UpConv(features, use_bias=False, impl=self.conv_impl, dtype=self.dtype)(x)
            x = nn.relu(_batch_norm(train, self.bn_axis_name, self.dtype)(x))
        x = UpConv(self.channels, impl=self.conv_impl, dtype=self.dtype)(x)
        x = jnp.tanh(x.astype(jnp.float32))
        assert x.shape[1:] == (self.image_size, self.image_size, self.channels), x.shape
        return x


class Discriminator(nn.Module):
    image_size: int
    width: int = 32
    dropout: float = 0.0
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        k = num_doublings(self.image_size)
        assert x.shape[1:3] == (self.image_size, self.image_size), x.shape
        features = self.width
        for i in range(k):
            # No normalisation on the first block, as in DCGAN: it would erase the
            # image's own mean and scale, which the discriminator needs to see.
            x = DownConv(features, use_bias=i == 0, impl=self.conv_impl, dtype=self.dtype)(x)
            if i > 0:
                x = _batch_norm(train, self.bn_axis_name, self.dtype)(x)
            x = nn.leaky_relu(x, 0.2)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            features *= 2
        x = x.reshape(x.shape[0], -1)
        logit = nn.Dense(1, kernel_init=_init, dtype=self.dtype)(x)
        return logit[:, 0].astype(jnp.float32)
