"""Networks of text-to-image synthesis: a joint image-text embedding and GAN-INT-CLS.

Joint embedding (`JointEmbedding`, trained by genjax.tasks.text_encoder):
  TextEncoder   tokens [N, T] (0 = padding) -> word embedding -> two 1D convolutions of
                width 3 over the words (ReLU) -> masked mean and max over the words ->
                Dense -> φ(t) [N, D], L2-normalised. Word-level, small and fast on a CPU.
  ImageEncoder  images [N, S, S, C] -> [Conv 3x3/2 -> ReLU] x 3 -> global mean -> Dense
                -> [N, D], L2-normalised. No BatchNorm: an embedding of one example
                depends on that example only, in training too.
  `logit_scale` s: the learned inverse temperature of the contrastive logits
                exp(s)·⟨f(x), φ(t)⟩ (CLIP, Radford et al. 2021), exp(s) capped at 100.

GAN-INT-CLS (Reed et al. 2016; reedscot/icml2016's netG / netD):
  TextConditionalGenerator      G(z, φ): c = LeakyReLU_0.2(Dense(φ)) (the compressed
                                embedding), [z, c] -> the DCGAN generator body.
  TextConditionalDiscriminator  D(x, φ): the DCGAN discriminator body to its 4x4 map h;
                                c = LeakyReLU_0.2(Dense(φ)) replicated over the 4x4 grid
                                and concatenated to h; Conv 1x1 -> BN -> LeakyReLU ->
                                Dense -> one logit (Reed's last 4x4 valid convolution is
                                this Dense on the flattened 4x4 map). Reed's D projection
                                also has a BatchNorm; here it has none.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from genjax.models.dcgan import (_batch_norm, _init, discriminator_features,
                                 generator_body)

PAD = 0  # the padding token (genjax.data.text.PAD)
MAX_LOGIT_SCALE = 100.0  # CLIP's cap on exp(logit_scale)


def l2_normalize(x: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    x = x.astype(jnp.float32)
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class TextEncoder(nn.Module):
    vocab_size: int
    width: int = 64  # word embedding and convolution channels
    embed_dim: int = 64  # size of φ(t)

    @nn.compact
    def __call__(self, tokens: jnp.ndarray) -> jnp.ndarray:
        assert tokens.ndim == 2, tokens.shape
        mask = (tokens != PAD)[..., None].astype(jnp.float32)
        h = nn.Embed(self.vocab_size, self.width, name="words")(tokens)
        for i in range(2):
            h = nn.relu(nn.Conv(self.width, (3,), name=f"conv{i}")(h * mask))
        count = jnp.maximum(mask.sum(axis=1), 1.0)
        mean = (h * mask).sum(axis=1) / count
        largest = jnp.max(jnp.where(mask > 0, h, -1e9), axis=1) * (count > 0)
        out = nn.Dense(self.embed_dim, name="out")(jnp.concatenate([mean, largest], -1))
        return l2_normalize(out)


class ImageEncoder(nn.Module):
    width: int = 32
    embed_dim: int = 64

    @nn.compact
    def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
        h = images
        for i in range(3):
            h = nn.relu(nn.Conv(self.width * 2 ** i, (3, 3), strides=(2, 2))(h))
        return l2_normalize(nn.Dense(self.embed_dim)(h.mean(axis=(1, 2))))


class JointEmbedding(nn.Module):
    vocab_size: int
    text_width: int = 64
    image_width: int = 32
    embed_dim: int = 64
    init_logit_scale: float = 2.659  # log(1 / 0.07), CLIP's initial temperature

    def setup(self):
        self.text = TextEncoder(self.vocab_size, self.text_width, self.embed_dim)
        self.image = ImageEncoder(self.image_width, self.embed_dim)
        self.logit_scale = self.param(
            "logit_scale", lambda _: jnp.asarray(self.init_logit_scale, jnp.float32))

    def __call__(self, images, tokens):
        """(image embeddings [N, D], text embeddings [N, D], exp(logit_scale) capped)."""
        return (self.image(images), self.text(tokens),
                jnp.minimum(jnp.exp(self.logit_scale), MAX_LOGIT_SCALE))

    def embed_text(self, tokens):
        return self.text(tokens)

    def embed_image(self, images):
        return self.image(images)


def compress(embedding: jnp.ndarray, features: int, dtype: Any) -> jnp.ndarray:
    """Reed et al.'s projection of the text embedding: LeakyReLU_0.2(Dense(φ))."""
    return nn.leaky_relu(nn.Dense(features, kernel_init=_init, dtype=dtype,
                                  name="compress")(embedding), 0.2)


class TextConditionalGenerator(nn.Module):
    image_size: int
    channels: int
    width: int = 32
    compress_dim: int = 32
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jnp.ndarray, embedding: jnp.ndarray, train: bool = True):
        assert embedding.shape[:1] == z.shape[:1], (embedding.shape, z.shape)
        c = compress(embedding, self.compress_dim, self.dtype)
        x = jnp.concatenate([z, c.astype(z.dtype)], axis=-1)
        return generator_body(
            x, image_size=self.image_size, channels=self.channels, width=self.width,
            conv_impl=self.conv_impl, dtype=self.dtype,
            norm=lambda h: _batch_norm(train, self.bn_axis_name, self.dtype)(h))


class TextConditionalDiscriminator(nn.Module):
    image_size: int
    width: int = 32
    compress_dim: int = 32
    dropout: float = 0.0
    conv_impl: str = "phase"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, embedding: jnp.ndarray, train: bool = True):
        assert embedding.shape[:1] == x.shape[:1], (embedding.shape, x.shape)
        norm = lambda h: _batch_norm(train, self.bn_axis_name, self.dtype)(h)  # noqa: E731
        h = discriminator_features(x, image_size=self.image_size, width=self.width,
                                   dropout=self.dropout, train=train,
                                   conv_impl=self.conv_impl, dtype=self.dtype, norm=norm)
        c = compress(embedding, self.compress_dim, self.dtype).astype(h.dtype)
        planes = jnp.broadcast_to(c[:, None, None, :], h.shape[:3] + (c.shape[-1],))
        h = jnp.concatenate([h, planes], axis=-1)
        h = nn.Conv(h.shape[-1] - c.shape[-1], (1, 1), use_bias=False, kernel_init=_init,
                    dtype=self.dtype, name="joint")(h)
        h = nn.leaky_relu(norm(h), 0.2)
        logit = nn.Dense(1, kernel_init=_init, dtype=self.dtype)(h.reshape(h.shape[0], -1))
        return logit[:, 0].astype(jnp.float32)
