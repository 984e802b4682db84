"""CycleGAN networks (Zhu et al. 2017), as junyanz/pytorch-CycleGAN-and-pix2pix
`models/networks.py` builds them: the ResNet generator (`ResnetGenerator`, after Johnson
et al.'s fast style transfer) here, and the U-Net generator and 70x70 PatchGAN of the
pix2pix family (`genjax.models.pix2pix`) with instance norm.

ResNet generator (`ResnetGenerator`, `num_blocks` 9 = resnet_9blocks, 6 = resnet_6blocks),
every norm an instance norm without affine parameters (InstanceNorm2d(affine=False)):

  ReflectionPad(3) -> Conv 7x7 -> ngf -> norm -> ReLU
  Conv 3x3 stride 2 pad 1 -> 2·ngf -> norm -> ReLU
  Conv 3x3 stride 2 pad 1 -> 4·ngf -> norm -> ReLU
  num_blocks x residual block on 4·ngf:
      x + [ReflectionPad(1) -> Conv 3x3 -> norm -> ReLU -> ReflectionPad(1) -> Conv 3x3 -> norm](x)
  ConvTranspose 3x3 stride 2 pad 1 output_padding 1 -> 2·ngf -> norm -> ReLU
  ConvTranspose 3x3 stride 2 pad 1 output_padding 1 -> ngf -> norm -> ReLU
  ReflectionPad(3) -> Conv 7x7 -> channels -> tanh

An S x S image needs S divisible by 4 (two halvings) and the 4·ngf maps at S/4 at least 2
pixels wide for the reflection padding. The convolutions followed by a norm have no
bias (the reference gives them one with instance norm, but the norm subtracts each
channel's mean, so such a bias changes no output; its gradient is rounding noise, which
Adam turns into full-size steps that differ with the device count, as genjax's pix2pix
networks also found); only the last convolution has one. Weights start N(0, 0.02), biases 0 (the
reference's init_type='normal', init_gain=0.02). No dropout (CycleGAN's no_dropout).
A transposed convolution of PyTorch (k=3, s=2, p=1, output_padding=1) is the input dilated
by 2, padded by k-1-p = 1 before and k-1-p+output_padding = 2 after, and convolved:
`nn.ConvTranspose(padding=((1, 2), (1, 2)))`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from genjax.models.pix2pix import PatchDiscriminator, UNetGenerator

GENERATORS = ("resnet", "unet")
_init = nn.initializers.normal(0.02)

__all__ = ["ResnetGenerator", "PatchDiscriminator", "UNetGenerator", "reflect",
           "GENERATORS"]


def reflect(x: jnp.ndarray, pad: int) -> jnp.ndarray:
    """ReflectionPad2d(pad) of NHWC maps (the edge pixel is not repeated)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _instance_norm(dtype, name):
    return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype,
                           name=name)


class ResnetBlock(nn.Module):
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = dict(kernel_size=(3, 3), padding="VALID", use_bias=False, kernel_init=_init,
                    dtype=self.dtype)
        h = nn.Conv(self.features, name="conv_0", **conv)(reflect(x, 1))
        h = nn.relu(_instance_norm(self.dtype, "norm_0")(h))
        h = nn.Conv(self.features, name="conv_1", **conv)(reflect(h, 1))
        return x + _instance_norm(self.dtype, "norm_1")(h)


class ResnetGenerator(nn.Module):
    """images [N, S, S, Ci] in [-1, 1] -> [N, S, S, channels] in [-1, 1] (module docstring)."""

    channels: int
    ngf: int = 64
    num_blocks: int = 9
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        del train  # instance norm and no dropout: the same in training and evaluation
        size = x.shape[1]
        if size % 4 or size // 4 < 2:
            raise ValueError(f"The ResNet generator halves the image twice and reflects its "
                             f"smallest maps by one pixel: it needs a side divisible by 4 "
                             f"and at least 8, got {size}.")
        h = reflect(x.astype(self.dtype), 3)
        h = nn.Conv(self.ngf, (7, 7), padding="VALID", use_bias=False, kernel_init=_init,
                    dtype=self.dtype, name="conv_in")(h)
        h = nn.relu(_instance_norm(self.dtype, "norm_in")(h))
        for i in range(2):
            h = nn.Conv(self.ngf * 2 ** (i + 1), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                        use_bias=False, kernel_init=_init, dtype=self.dtype,
                        name=f"down_{i}")(h)
            h = nn.relu(_instance_norm(self.dtype, f"down_norm_{i}")(h))
        for i in range(self.num_blocks):
            h = ResnetBlock(self.ngf * 4, self.dtype, name=f"block_{i}")(h)
        for i in range(2):
            h = nn.ConvTranspose(self.ngf * 2 ** (1 - i), (3, 3), strides=(2, 2),
                                 padding=((1, 2), (1, 2)), use_bias=False,
                                 kernel_init=_init, dtype=self.dtype, name=f"up_{i}")(h)
            h = nn.relu(_instance_norm(self.dtype, f"up_norm_{i}")(h))
        h = nn.Conv(self.channels, (7, 7), padding="VALID", kernel_init=_init,
                    dtype=self.dtype, name="conv_out")(reflect(h, 3))
        h = jnp.tanh(h.astype(jnp.float32))
        assert h.shape == x.shape[:3] + (self.channels,), (h.shape, x.shape)
        return h
