"""Class-conditional DCGAN networks: G(z, y) and D(x, y) for labels y in 0..K-1.

Generator (`ConditionalGenerator`): the label's learned embedding e(y) is joined to z,
[z, e(y)] -> the DCGAN generator body. Labels are ints [N], or weights over the classes
[N, K] (floats), which mix the classes' embeddings (and conditional-BN scales and
shifts): Σ_k w_k e(k), for interpolating between classes at fixed z. With `conditional_bn`, every BatchNorm also takes
a per-class scale and shift (conditional BatchNorm, de Vries et al. 2017; Miyato &
Koyama 2018): BN(h) * (1 + γ(y)) + β(y), the statistics shared by all classes.

Discriminator (`ConditionalDiscriminator`), the DCGAN discriminator body with the label
joined in one of three ways (`conditioning`):
  'concat'      e(y), broadcast over the image, as extra input channels
                (Mirza & Osindero 2014; keras-io's conditional GAN): D(x, y) = w·φ([x, e(y)]) + b.
  'projection'  D(x, y) = w·φ(x) + b + ⟨e(y), Σ_{i,j} φ(x)_{ij}⟩, the inner product of the
                label's embedding with the globally sum-pooled last feature map
                (Miyato & Koyama 2018; StudioGAN's 'PD').
  'acgan'       D(x) = w·φ(x) + b does not see the label; an auxiliary head gives class
                logits c(x) = W_c·φ(x) + b_c, trained with a cross-entropy on the labels
                (Odena et al. 2017).
It returns `(logits [N], class_logits [N, K] or None)`; class logits only for 'acgan'.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from genjax.models.dcgan import (_batch_norm, _init, discriminator_features,
                                 generator_body)

CONDITIONINGS = ("concat", "projection", "acgan")


def embed(table: nn.Embed, labels: jnp.ndarray) -> jnp.ndarray:
    """`table`'s rows of int labels [N], or for class weights [N, K] the weighted sum of
    its rows (weights one-hot = the int label's row)."""
    if labels.ndim == 2:
        return labels.astype(jnp.float32) @ table.embedding
    return table(labels)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine part, then a per-class scale and shift:
    BN(h) * (1 + γ[y]) + β[y]; γ starts near 0 (N(0, 0.02), as DCGAN's BN scale starts
    near 1) and β at 0, so it starts as plain BatchNorm."""

    num_classes: int
    train: bool
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
        channels = h.shape[-1]
        h = nn.BatchNorm(use_running_average=not self.train, momentum=0.9, epsilon=1e-5,
                         axis_name=self.axis_name if self.train else None, use_scale=False,
                         use_bias=False, dtype=self.dtype)(h)
        gamma = embed(nn.Embed(self.num_classes, channels, embedding_init=_init, name="gamma"),
                      labels)
        beta = embed(nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.zeros,
                              name="beta"), labels)
        shape = (h.shape[0],) + (1,) * (h.ndim - 2) + (channels,)
        return h * (1.0 + gamma.reshape(shape)) + beta.reshape(shape)


class ConditionalGenerator(nn.Module):
    image_size: int
    channels: int
    num_classes: int
    width: int = 32
    embed_dim: int = 16  # Size of the label embedding joined to z.
    conditional_bn: bool = False
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jnp.ndarray, labels: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        assert labels.shape[:1] == z.shape[:1], (labels.shape, z.shape)
        embedding = embed(nn.Embed(self.num_classes, self.embed_dim, embedding_init=_init,
                                   name="label_embedding"), labels)
        x = jnp.concatenate([z, embedding.astype(z.dtype)], axis=-1)
        if self.conditional_bn:
            def norm(h):
                return ConditionalBatchNorm(self.num_classes, train, self.bn_axis_name,
                                            self.dtype)(h, labels)
        else:
            def norm(h):
                return _batch_norm(train, self.bn_axis_name, self.dtype)(h)
        return generator_body(x, image_size=self.image_size, channels=self.channels,
                              width=self.width, conv_impl=self.conv_impl, dtype=self.dtype,
                              norm=norm)


class ConditionalDiscriminator(nn.Module):
    image_size: int
    num_classes: int
    conditioning: str = "projection"
    width: int = 32
    embed_dim: int = 16  # Channels of the label embedding ('concat' only).
    dropout: float = 0.0
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray, train: bool = True
                 ) -> tuple[jnp.ndarray, jnp.ndarray | None]:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, "
                             f"got {self.conditioning!r}.")
        assert labels.shape == x.shape[:1], (labels.shape, x.shape)
        if self.conditioning == "concat":
            embedding = nn.Embed(self.num_classes, self.embed_dim, embedding_init=_init,
                                 name="label_embedding")(labels).astype(x.dtype)
            planes = jnp.broadcast_to(embedding[:, None, None, :],
                                      x.shape[:3] + (self.embed_dim,))
            x = jnp.concatenate([x, planes], axis=-1)
        h = discriminator_features(
            x, image_size=self.image_size, width=self.width, dropout=self.dropout,
            train=train, conv_impl=self.conv_impl, dtype=self.dtype,
            norm=lambda h: _batch_norm(train, self.bn_axis_name, self.dtype)(h))
        flat = h.reshape(h.shape[0], -1)
        logits = nn.Dense(1, kernel_init=_init, dtype=self.dtype)(flat)[:, 0]
        logits = logits.astype(jnp.float32)
        class_logits = None
        if self.conditioning == "projection":
            embedding = nn.Embed(self.num_classes, h.shape[-1], embedding_init=_init,
                                 name="projection")(labels)
            pooled = jnp.sum(h.astype(jnp.float32), axis=(1, 2))
            logits = logits + jnp.sum(embedding.astype(jnp.float32) * pooled, axis=-1)
        elif self.conditioning == "acgan":
            class_logits = nn.Dense(self.num_classes, kernel_init=_init, dtype=self.dtype,
                                    name="classifier")(flat).astype(jnp.float32)
        return logits, class_logits
