"""pix2pix networks (Isola et al. 2017): a U-Net generator and a PatchGAN discriminator,
as junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py` builds them
(`UnetGenerator` / `UnetSkipConnectionBlock`, `NLayerDiscriminator`).

Generator (`UNetGenerator`), `num_downs` levels (8 = the reference's unet_256 for 256x256;
an S x S image needs 2^num_downs <= S), level i (0 = outermost) down-sampling to
w_i = ngf·min(2^i, 8) channels:

  down, level 0:        DownConv 4x4/2 -> w_0                        (no norm)
  down, 0 < i < d-1:    LeakyReLU(0.2) -> DownConv -> w_i -> norm
  down, innermost:      LeakyReLU(0.2) -> DownConv -> w_{d-1}        (no norm, as the reference)
  up,   innermost:      ReLU -> UpConv -> w_{d-2} -> norm              then [skip, up]
  up,   0 < i < d-1:    ReLU -> UpConv -> w_{i-1} -> norm [-> Dropout(0.5)] then [skip, up]
  up,   level 0:        ReLU -> UpConv -> output channels (with bias) -> tanh

where `skip` at level i is the level's input (the previous level's down output), joined
before the up output on the channel axis (torch.cat([x, model(x)], 1)). `skips=False`
drops every join: the same encoder-decoder without skip connections (the paper's
Table 2), each UpConv then reading w_i channels instead of 2·w_i.

Dropout 0.5 sits in the first `dropout_blocks` decoder blocks after the innermost one; -1
is the reference's choice, num_downs - 5 blocks (the three ngf·8 blocks of unet_256, two
of unet_128, none at 5 levels or fewer). It is the generator's only noise source (the
paper gives G no z). It is drawn in training, and at evaluation only when asked
(`dropout=True`): the paper keeps it on at test time. Under `pmap` (`axis_name` set) the
mask is drawn for the global batch and sliced, so it does not depend on the device count.

Normalisation ('batch' or 'instance'): BatchNorm (momentum 0.1 in PyTorch's terms,
eps 1e-5, scale N(1, 0.02), batch statistics in training and running averages at
evaluation, averaged over `axis_name` under pmap) or instance norm without affine
parameters (the reference's InstanceNorm2d(affine=False)). A convolution followed by a
norm has no bias (the reference gives it one with instance norm, but the norm's mean
subtraction cancels it exactly: its gradient is rounding noise, which Adam scales up to
full-size steps that differ with the device count). The convolutions without a norm
after them have a bias as in the reference: only with instance norm, except D's first
and last and G's last, which always have one.

Discriminator (`PatchDiscriminator`), on [input, image] joined on the channel axis
(`conditional=False`: the image alone, for the unconditional-D ablation):

  DownConv 4x4/2 -> ndf -> LeakyReLU(0.2)
  [DownConv 4x4/2 -> ndf·min(2^n, 8) -> norm -> LeakyReLU(0.2)]   n = 1 .. n_layers-1
  Conv 4x4/1 pad 1 -> ndf·min(2^n_layers, 8) -> norm -> LeakyReLU(0.2)
  Conv 4x4/1 pad 1 -> 1                                              (logit per patch)

A map of logits [N, h, w], h = S/2^n_layers - 2; each sees a square of
`receptive_field(n_layers)` = 9·2^n_layers - 2 input pixels (16, 34, 70 for 1, 2, 3
layers: n_layers=3 is the 70x70 PatchGAN).

Every weight starts N(0, 0.02) and every bias 0 (the reference's init_type='normal',
init_gain=0.02). The 4x4 stride-2 (de)convolutions are genjax's exact strided layers
(`genjax.nn.conv`: PyTorch's Conv2d / ConvTranspose2d(k=4, s=2, p=1)).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.conv import DownConv, UpConv

NORMS = ("batch", "instance")
_init = nn.initializers.normal(0.02)


def _scale_init(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def level_widths(num_downs: int, ngf: int) -> list[int]:
    """Channels after each level's down-sampling: ngf·min(2^i, 8), i = 0 .. num_downs-1."""
    return [ngf * min(2 ** i, 8) for i in range(num_downs)]


def dropout_levels(num_downs: int, dropout_blocks: int) -> tuple[int, ...]:
    """The levels whose decoder block ends in dropout: the `dropout_blocks` levels just
    outside the innermost (-1: the reference's num_downs - 5, at least 0)."""
    n = max(0, num_downs - 5) if dropout_blocks < 0 else dropout_blocks
    if n > num_downs - 2:
        raise ValueError(f"dropout_blocks={dropout_blocks} exceeds the {num_downs - 2} "
                         f"decoder blocks between the innermost and the outermost of a "
                         f"{num_downs}-level U-Net.")
    return tuple(range(num_downs - 2, num_downs - 2 - n, -1))


def receptive_field(n_layers: int) -> int:
    """The side of the input square one PatchGAN logit sees: two stride-1 4x4 layers see
    7 pixels, and each stride-2 4x4 layer below maps r to 2r + 2: 9·2^n - 2."""
    return 9 * 2 ** n_layers - 2


def patch_output_size(image_size: int, n_layers: int) -> int:
    """The side of the PatchGAN's logit map for an image_size input."""
    return image_size // 2 ** n_layers - 2


def _norm(kind: str, train: bool, axis_name: str | None, dtype: Any, name: str):
    if kind == "batch":
        # momentum 0.9 = PyTorch's default running-average momentum of 0.1.
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                            axis_name=axis_name if train else None, scale_init=_scale_init,
                            dtype=dtype, name=name)
    if kind == "instance":
        return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype,
                               name=name)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}.")


class GlobalDropout(nn.Module):
    """Dropout whose mask, under `pmap` with `axis_name`, is this device's slice of one
    mask drawn for the global batch from the (device-independent) 'dropout' key; without
    `axis_name`, flax's Dropout (the same mask for the same key and batch)."""

    rate: float
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        if deterministic or self.rate == 0.0:
            return x
        key = self.make_rng("dropout")
        b = x.shape[0]
        if self.axis_name is None:
            keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
        else:
            n = jax.lax.psum(1, self.axis_name)
            full = jax.random.bernoulli(key, 1.0 - self.rate, (n * b, *x.shape[1:]))
            keep = jax.lax.dynamic_slice_in_dim(full, jax.lax.axis_index(self.axis_name) * b,
                                                b, axis=0)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))


class UNetGenerator(nn.Module):
    """The pix2pix U-Net (module docstring): images [N, S, S, Ci] in [-1, 1] ->
    [N, S, S, channels] in [-1, 1]."""

    channels: int  # output channels
    num_downs: int = 8
    ngf: int = 64
    norm: str = "batch"
    skips: bool = True
    dropout_blocks: int = -1  # -1: the reference's num_downs - 5
    dropout_rate: float = 0.5
    conv_impl: str = "phase"
    axis_name: str | None = None  # BatchNorm statistics and dropout masks under pmap
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = True, dropout: bool | None = None
                 ) -> jnp.ndarray:
        """`dropout`: draw dropout (from the 'dropout' rng); None = as `train`."""
        d, size = self.num_downs, x.shape[1]
        if d < 2 or size % 2 ** d:
            raise ValueError(f"A {d}-level U-Net needs num_downs >= 2 and an image side "
                             f"divisible by 2^{d}, got {size}.")
        dropout = train if dropout is None else dropout
        widths = level_widths(d, self.ngf)
        with_dropout = dropout_levels(d, self.dropout_blocks)
        bias = self.norm == "instance"  # for the convolutions without a norm after them
        conv = dict(impl=self.conv_impl, dtype=self.dtype, kernel_init=_init)

        def norm(name):
            return _norm(self.norm, train, self.axis_name, self.dtype, name)

        inputs, h = [], x.astype(self.dtype)
        for i in range(d):
            inputs.append(h)  # level i's input: its skip connection
            if i > 0:
                h = nn.leaky_relu(h, 0.2)
            normed = 0 < i < d - 1
            h = DownConv(widths[i], use_bias=bias and not normed, name=f"down_{i}",
                         **conv)(h)
            if normed:
                h = norm(f"down_norm_{i}")(h)
        for i in reversed(range(d)):
            h = nn.relu(h)
            if i == 0:
                h = UpConv(self.channels, use_bias=True, name="up_0", **conv)(h)
                break
            h = UpConv(widths[i - 1], use_bias=False, name=f"up_{i}", **conv)(h)
            h = norm(f"up_norm_{i}")(h)
            if i in with_dropout:
                h = GlobalDropout(self.dropout_rate, self.axis_name,
                                  name=f"dropout_{i}")(h, deterministic=not dropout)
            if self.skips:
                h = jnp.concatenate([inputs[i], h], axis=-1)
        h = jnp.tanh(h.astype(jnp.float32))
        assert h.shape == x.shape[:3] + (self.channels,), (h.shape, x.shape)
        return h


class PatchDiscriminator(nn.Module):
    """The PatchGAN (module docstring): (inputs [N, S, S, Ci], images [N, S, S, Co]) ->
    logits [N, h, w], one per patch, h = w = S/2^n_layers - 2."""

    n_layers: int = 3
    ndf: int = 64
    norm: str = "batch"
    conditional: bool = True  # False: D sees the image alone
    conv_impl: str = "phase"
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: jnp.ndarray, images: jnp.ndarray, train: bool = True
                 ) -> jnp.ndarray:
        size = images.shape[1]
        if self.n_layers < 1 or patch_output_size(size, self.n_layers) < 1:
            raise ValueError(f"A PatchGAN with n_layers={self.n_layers} needs n_layers >= 1 "
                             f"and images of side >= {3 * 2 ** self.n_layers}, got {size}.")
        x = jnp.concatenate([inputs, images], axis=-1) if self.conditional else images
        h = x.astype(self.dtype)
        conv = dict(impl=self.conv_impl, dtype=self.dtype, kernel_init=_init)

        def norm(name):
            return _norm(self.norm, train, self.axis_name, self.dtype, name)

        h = nn.leaky_relu(DownConv(self.ndf, use_bias=True, name="conv_0", **conv)(h), 0.2)
        for n in range(1, self.n_layers):
            h = DownConv(self.ndf * min(2 ** n, 8), use_bias=False, name=f"conv_{n}", **conv)(h)
            h = nn.leaky_relu(norm(f"norm_{n}")(h), 0.2)
        same = dict(kernel_size=(4, 4), strides=(1, 1), padding=((1, 1), (1, 1)),
                    kernel_init=_init, dtype=self.dtype)
        n = self.n_layers
        h = nn.Conv(self.ndf * min(2 ** n, 8), use_bias=False, name=f"conv_{n}", **same)(h)
        h = nn.leaky_relu(norm(f"norm_{n}")(h), 0.2)
        h = nn.Conv(1, use_bias=True, name=f"conv_{n + 1}", **same)(h)
        return h[..., 0].astype(jnp.float32)
