"""Convolutional autoencoder and variational autoencoder, for power-of-two sizes 8 to 128.

Encoder:  x -> [DownConv 4x4/2 -> (BN) -> LeakyReLU(0.2) -> (Dropout)] x k
            -> flatten -> Dense(latent_dim)                    (autoencoder: the code z)
            -> Dense(latent_dim) twice: mean and log std        (VAE: q(z|x) = N(mean, std²))
Decoder:  z -> Dense -> 4x4x(w·2^(k-1)) -> (BN) -> ReLU -> [UpConv 4x4/2 -> (BN) -> ReLU
            -> (Dropout)] x (k-1) -> UpConv 4x4/2 -> per-pixel logits
(k = log2(size) - 2; the encoder's block i has width·2^i channels). BatchNorm and
Dropout appear where the config puts them (`batch_norm`, `dropout`); the first encoder
block is never normalised, as in DCGAN's discriminator. The decoder returns logits, whose
image is `losses.decoded_image` (tanh for squared error, 2·sigmoid - 1 for Bernoulli).

BatchNorm uses batch statistics while training and running averages at evaluation (under
`pmap` it averages them over `bn_axis_name`); Dropout is active only while training.
`encode` and `decode` are methods, so `model.apply(variables, x, method='encode')` runs
one half of the network.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.models.dcgan import num_doublings
from genjax.nn.conv import DownConv, UpConv

# The DCGAN initialisation of the (de)convolutions: N(0, 0.02).
_init = nn.initializers.normal(0.02)


class _Blocks(nn.Module):
    """Normalisation, activation and dropout after one (de)convolution."""

    batch_norm: bool
    dropout: float
    bn_axis_name: str | None
    dtype: Any

    @nn.compact
    def __call__(self, x, train: bool, activation, normalise: bool = True):
        if self.batch_norm and normalise:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             axis_name=self.bn_axis_name if train else None,
                             dtype=self.dtype)(x)
        x = activation(x)
        if self.dropout > 0:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x


class AutoEncoder(nn.Module):
    """`variational=False`: x -> z -> logits. `variational=True`: x -> (mean, log_std);
    `__call__` then samples z = mean + std·eps with eps from the 'latent' rng stream
    (the reparameterisation), so gradients flow through mean and std."""

    image_size: int
    channels: int
    latent_dim: int
    width: int = 32
    variational: bool = False
    batch_norm: bool = True
    dropout: float = 0.0
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    def setup(self):
        k = num_doublings(self.image_size)
        self.k = k
        self.enc_convs = [DownConv(self.width * 2 ** i, use_bias=i == 0 or not self.batch_norm,
                                   impl=self.conv_impl, kernel_init=_init, dtype=self.dtype)
                          for i in range(k)]
        self.enc_post = [_Blocks(self.batch_norm, self.dropout, self.bn_axis_name, self.dtype)
                         for _ in range(k)]
        self.enc_out = nn.Dense(self.latent_dim, dtype=self.dtype, name="code" if not
                                self.variational else "mean")
        if self.variational:
            # Zero-initialised: q(z|x) starts with std 1, the prior's scale.
            self.enc_log_std = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros,
                                        dtype=self.dtype, name="log_std")
        top = self.width * 2 ** (k - 1)
        self.dec_in = nn.Dense(4 * 4 * top, use_bias=not self.batch_norm, dtype=self.dtype)
        self.dec_in_post = _Blocks(self.batch_norm, 0.0, self.bn_axis_name, self.dtype)
        self.dec_convs = [UpConv(top // 2 ** (i + 1), use_bias=not self.batch_norm,
                                 impl=self.conv_impl, kernel_init=_init, dtype=self.dtype)
                          for i in range(k - 1)]
        self.dec_post = [_Blocks(self.batch_norm, self.dropout, self.bn_axis_name, self.dtype)
                         for _ in range(k - 1)]
        self.dec_out = UpConv(self.channels, impl=self.conv_impl, kernel_init=_init,
                              dtype=self.dtype)

    def encode(self, x: jnp.ndarray, train: bool = False):
        """The code z [N, latent_dim] (autoencoder) or (mean, log_std) of q(z|x) (VAE)."""
        assert x.shape[1:] == (self.image_size, self.image_size, self.channels), x.shape
        for i, (conv, post) in enumerate(zip(self.enc_convs, self.enc_post)):
            x = post(conv(x), train, lambda h: nn.leaky_relu(h, 0.2), normalise=i > 0)
        x = x.reshape(x.shape[0], -1)
        if not self.variational:
            return self.enc_out(x).astype(jnp.float32)
        return (self.enc_out(x).astype(jnp.float32),
                self.enc_log_std(x).astype(jnp.float32))

    def decode(self, z: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """Per-pixel logits [N, size, size, channels] of the codes z [N, latent_dim]."""
        x = self.dec_in(z.astype(self.dtype)).reshape(z.shape[0], 4, 4, -1)
        x = self.dec_in_post(x, train, nn.relu)
        for conv, post in zip(self.dec_convs, self.dec_post):
            x = post(conv(x), train, nn.relu)
        return self.dec_out(x).astype(jnp.float32)

    def __call__(self, x: jnp.ndarray, train: bool = False):
        """Autoencoder: (logits, z). VAE: (logits, (mean, log_std), z) with z sampled."""
        if not self.variational:
            z = self.encode(x, train)
            return self.decode(z, train), z
        mean, log_std = self.encode(x, train)
        eps = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
        z = mean + jnp.exp(log_std) * eps
        return self.decode(z, train), (mean, log_std), z
