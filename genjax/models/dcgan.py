"""DCGAN generator and discriminator (Radford et al. 2016), for any power-of-two
resolution from 8 to 128 and any channel count.

Generator:      z -> Dense -> 4x4x(w·2^(k-1)) -> [UpConv 4x4/2 -> BN -> ReLU] x (k-1)
                  -> UpConv 4x4/2 -> tanh          (k = log2(size) - 2 up-samplings)
Discriminator:  x -> DownConv 4x4/2 -> LeakyReLU(0.2) -> [DownConv 4x4/2 -> BN -> LeakyReLU]
                  x (k-1) -> Dense -> one logit     (optional Dropout after each block)
                (norm='spectral': every DownConv and the Dense spectrally normalised
                 (Miyato et al. 2018), no BatchNorm; norm='none': neither)

The 4x4 stride-2 (de)convolutions come from `genjax.nn`, whose 'phase' implementation
runs only stride-1 convolutions (fast on XLA:CPU) with the same parameters and outputs
as the plain XLA operation ('lax'). BatchNorm uses batch statistics while training and
running averages at evaluation; under `pmap` it averages them over `bn_axis_name`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from genjax.errors import ConfigError

from genjax.nn.conv import DownConv, UpConv

# DCGAN's initialisation: N(0, 0.02) weights; BatchNorm scale N(1, 0.02).
_init = nn.initializers.normal(0.02)


def _scale_init(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * nn.initializers.normal(1.0)(key, shape, dtype)


def num_doublings(image_size: int) -> int:
    k = int(math.log2(image_size)) - 2
    if 2 ** (k + 2) != image_size or not 1 <= k <= 5:
        raise ConfigError(
            f"Config field 'image_size' is {image_size}, but the DCGAN body (the GAN, "
            "conditional GAN, autoencoder, VAE, classifier and text-to-image networks) is "
            "built for powers of two from 8 to 128; pass --config.image_size=128 or less "
            "(the pix2pix and CycleGAN networks take 256 and 512).")
    return k


def _batch_norm(train: bool, axis_name: str | None, dtype: Any) -> nn.BatchNorm:
    # momentum 0.9 = PyTorch's default running-average momentum of 0.1.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        axis_name=axis_name if train else None, scale_init=_scale_init,
                        dtype=dtype)


def generator_body(x: jnp.ndarray, *, image_size: int, channels: int, width: int,
                   conv_impl: str, dtype: Any, norm: Callable[[jnp.ndarray], jnp.ndarray]
                   ) -> jnp.ndarray:
    """The DCGAN generator from its input vector `x` [N, D] to images [N, S, S, C] in
    [-1, 1]; `norm(h)` normalises each hidden layer (BatchNorm, or a conditional one).
    Call it inside a compact method: its layers become the caller's (Dense_0, UpConv_i)."""
    k = num_doublings(image_size)
    features = width * 2 ** (k - 1)
    h = nn.Dense(4 * 4 * features, use_bias=False, kernel_init=_init, dtype=dtype)(x)
    h = nn.relu(norm(h.reshape(x.shape[0], 4, 4, features)))
    for _ in range(k - 1):
        features //= 2
        h = UpConv(features, use_bias=False, impl=conv_impl, dtype=dtype)(h)
        h = nn.relu(norm(h))
    h = UpConv(channels, impl=conv_impl, dtype=dtype)(h)
    h = jnp.tanh(h.astype(jnp.float32))
    assert h.shape[1:] == (image_size, image_size, channels), h.shape
    return h


D_NORMS = ("batch", "spectral", "none")  # the discriminator's normalisation (model.d_norm)


def spectral(layer: nn.Module, train: bool) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """`layer` with its kernel divided by its largest singular value, estimated by one
    power iteration per call from a vector kept in 'batch_stats' (updated in training
    only; flax's SpectralNorm, as in SNGAN: a conv kernel is the matrix
    [kh·kw·Cin, Cout])."""
    return lambda h: nn.SpectralNorm(layer)(h, update_stats=train)


def discriminator_features(x: jnp.ndarray, *, image_size: int, width: int, dropout: float,
                           train: bool, conv_impl: str, dtype: Any,
                           norm: Callable[[jnp.ndarray], jnp.ndarray],
                           spectral_norm: bool = False, hidden_bias: bool = False
                           ) -> jnp.ndarray:
    """The DCGAN discriminator's convolutional body: images [N, S, S, C] to its last
    feature map [N, 4, 4, width·2^(k-1)]. Call it inside a compact method.
    `spectral_norm`: each DownConv spectrally normalised (`spectral`); `hidden_bias`:
    the layers after the first have biases (when `norm` is not a BatchNorm)."""
    k = num_doublings(image_size)
    assert x.shape[1:3] == (image_size, image_size), x.shape
    features = width
    for i in range(k):
        # No normalisation on the first block, as in DCGAN: it would erase the
        # image's own mean and scale, which the discriminator needs to see.
        conv = DownConv(features, use_bias=i == 0 or hidden_bias, impl=conv_impl, dtype=dtype)
        x = spectral(conv, train)(x) if spectral_norm else conv(x)
        if i > 0:
            x = norm(x)
        x = nn.leaky_relu(x, 0.2)
        if dropout > 0:
            x = nn.Dropout(dropout, deterministic=not train)(x)
        features *= 2
    return x


class Generator(nn.Module):
    image_size: int
    channels: int
    width: int = 32
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        return generator_body(
            z, image_size=self.image_size, channels=self.channels, width=self.width,
            conv_impl=self.conv_impl, dtype=self.dtype,
            norm=lambda h: _batch_norm(train, self.bn_axis_name, self.dtype)(h))


def discriminator_norm(norm: str, train: bool, axis_name: str | None, dtype: Any):
    """The hidden layers' normalisation for `norm` in D_NORMS ('spectral' and 'none':
    identity; the spectral normalisation wraps the layers themselves)."""
    if norm not in D_NORMS:
        raise ValueError(f"norm must be one of {D_NORMS}, got {norm!r}.")
    if norm == "batch":
        return lambda h: _batch_norm(train, axis_name, dtype)(h)
    return lambda h: h


class Discriminator(nn.Module):
    image_size: int
    width: int = 32
    dropout: float = 0.0
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    norm: str = "batch"  # one of D_NORMS

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        spectral_norm = self.norm == "spectral"
        h = discriminator_features(
            x, image_size=self.image_size, width=self.width, dropout=self.dropout,
            train=train, conv_impl=self.conv_impl, dtype=self.dtype,
            norm=discriminator_norm(self.norm, train, self.bn_axis_name, self.dtype),
            spectral_norm=spectral_norm, hidden_bias=self.norm != "batch")
        head = nn.Dense(1, kernel_init=_init, dtype=self.dtype)
        if spectral_norm:
            head = spectral(head, train)
        logit = head(h.reshape(h.shape[0], -1))
        return logit[:, 0].astype(jnp.float32)
