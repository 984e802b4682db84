"""Stride-2, 4x4 up- and down-sampling convolutions without lhs-dilated convolutions.

These are the DCGAN layers: ``down_conv`` is PyTorch's ``Conv2d(k=4, s=2, p=1)`` and
``up_conv`` is ``ConvTranspose2d(k=4, s=2, p=1)`` (up to kernel layout).  Both are
exactly the ``jax.lax`` references below, but computed differently because XLA:CPU runs
convolutions with ``lhs_dilation != 1`` (a transposed convolution, or the input gradient
of a strided one) an order of magnitude below the machine's arithmetic rate.

Notation (one spatial axis; the other is identical, and the 2-D kernel is the outer
product of the two 1-D tap choices), with ``k[t]`` the kernel tap ``t`` in 0..3:

* down:  ``y[m] = sum_t k[t] x[2m + t - 1]``   (x zero outside 0..H-1), m in 0..H/2-1
* up:    ``y[o] = sum_{t, i : o + t = 2i + 2} k[t] x[i]``, o in 0..2H-1.

Splitting the up output by phase ``o = 2m + p`` leaves two taps per phase:

* ``y[2m]     = k[0] x[m-1] + k[2] x[m]``   -> taps ``k[0::2]``, x padded (1, 0)
* ``y[2m + 1] = k[1] x[m]   + k[3] x[m+1]`` -> taps ``k[1::2]``, x padded (0, 1)

so output phase ``(p, q)`` is a stride-1 2x2 correlation of x with ``k[p::2, q::2]``
(padding ``(1-p, p)`` rows, ``(1-q, q)`` columns); the four results are interleaved.
``_phase_up_conv`` runs the four convolutions; ``_fused_up_conv`` runs one with all four
phase kernels as 4·Co output channels, which is faster for thin outputs (Co <= 8, e.g. a
generator's RGB layer) and for small layers (``_stride1_up_conv``).

The two ops are each other's adjoint in x: with ``k~ = flip(k, spatial).swap(in, out)``
(``_adjoint_kernel``),

* ``vjp_x down_conv(., k)(g) = up_conv(g, k~)``
* ``vjp_x up_conv(., k)(g)   = down_conv(g, k~)``

and the kernel gradients are the same correlation seen from both sides:
``dk_down(x, g)[t] = sum_m x[2m + t - 1] g[m]`` and ``dk_up(x, g) = dk_down(g, x)~``.

``up_conv`` and ``down_conv`` therefore carry ``jax.custom_vjp`` rules built only from
(a) the stride-1 phase formulation, (b) the native stride-2 convolution (fast forward on
every backend) and (c) its kernel gradient, a stride-1 convolution with ``rhs_dilation``
2, which JAX's transpose rule emits anyway.  None has an lhs dilation.

Why not plain autodiff of the stride-1 forms: their kernel gradients are large-window
convolutions, 1.5-3x slower on XLA:CPU than (c) (20x for the fused form).  Why not
``down_conv`` as space-to-depth + a 2x2 convolution: its forward and kernel gradient were
both slower on XLA:CPU than the native strided convolution.

On an H200 (GPU), ``up_conv`` fwd+bwd measured 1.1-10x faster than ``lax_up_conv``, and
``down_conv`` 0-30% slower than ``lax_down_conv`` (cuDNN runs its data gradient well), so
``impl='lax'`` is the better choice of ``DownConv`` there.  See ``bench/conv_layers.py``.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

Array = jax.Array
_DN = ('NHWC', 'HWIO', 'NHWC')


# ----------------------------------------------------------------------------- references


def _check(name: str, x: Array, kernel: Array, even: bool = False) -> None:
    assert x.ndim == 4, f'{name}: x must be NHWC (4-D), got shape {x.shape}'
    assert kernel.ndim == 4 and kernel.shape[:2] == (4, 4), (
        f'{name}: kernel must be (4, 4, Cin, Cout), got {kernel.shape}'
    )
    assert kernel.shape[2] == x.shape[3], (
        f'{name}: kernel has Cin={kernel.shape[2]} but x has {x.shape[3]} channels'
    )
    assert not even or (x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0), (
        f'{name}: H and W must be even, got {x.shape[1]}x{x.shape[2]}'
    )


def lax_up_conv(x: Array, kernel: Array) -> Array:
    """Reference: ``lax.conv_transpose`` (stride 2, padding 2), (N,H,W,Ci) -> (N,2H,2W,Co)."""
    _check('lax_up_conv', x, kernel)
    return lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)), dimension_numbers=_DN)


def lax_down_conv(x: Array, kernel: Array) -> Array:
    """Reference: stride-2, padding-1 convolution, (N,H,W,Ci) -> (N,H/2,W/2,Co)."""
    _check('lax_down_conv', x, kernel, even=True)
    return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


# ----------------------------------------------------------------------------- building blocks


def _adjoint_kernel(kernel: Array) -> Array:
    """``k~[t, s, o, i] = k[3 - t, 3 - s, i, o]``: the kernel of the x-adjoint op."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def _interleave(phases: list[list[Array]]) -> Array:
    """``out[n, 2m + p, 2l + q] = phases[p][q][n, m, l]`` (depth-to-space of the phases)."""
    y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # (N, H, 2p, W, 2q, C)
    n, h, _, w, _, c = y.shape
    return y.reshape(n, 2 * h, 2 * w, c)


def _phase_up_conv(x: Array, kernel: Array) -> Array:
    """``lax_up_conv`` as four stride-1 2x2 convolutions, one per output phase.

    Phase ``(p, q)`` (output pixel ``(2m + p, 2l + q)``) reads input rows ``m - 1 + p + a``
    with tap ``2a + p`` (a in {0, 1}), i.e. kernel ``k[p::2, q::2]`` on x padded by
    ``(1 - p, p)`` rows and ``(1 - q, q)`` columns; see the module docstring.
    """
    return _interleave([
        [
            lax.conv_general_dilated(
                x, kernel[p::2, q::2], (1, 1), ((1 - p, p), (1 - q, q)), dimension_numbers=_DN
            )
            for q in (0, 1)
        ]
        for p in (0, 1)
    ])


def _fused_up_conv(x: Array, kernel: Array) -> Array:
    """``lax_up_conv`` as one stride-1 2x2 convolution with 4·Co outputs, then interleaving.

    On x padded by 1 all round, conv output row u sees input rows (u - 1, u).  Phase p
    needs rows (m - 1 + p, m + p), i.e. u = m + p, with taps ``k[p::2]`` as in
    ``_phase_up_conv``; so channel block (p, q) holds phase (p, q) shifted by (p, q).
    """
    n, h, w, ci = x.shape
    co = kernel.shape[-1]
    # kernel[2a + p, 2b + q] -> k2[a, b, :, (p, q, :)]
    k2 = kernel.reshape(2, 2, 2, 2, ci, co).transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, ci, 4 * co)
    y = lax.conv_general_dilated(x, k2, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
    y = y.reshape(n, h + 1, w + 1, 2, 2, co)
    return _interleave([[y[:, p:p + h, q:q + w, p, q] for q in (0, 1)] for p in (0, 1)])


# When one fused convolution (4·Co output channels) beats four per-phase ones.  Thin
# outputs: 4·Co channels fill matmul tiles that Co leave mostly empty (XLA:CPU 1.1-2x faster
# at Co <= 8).  Small layers: fused was faster up to Co = 64 when the output has at most
# 16,384 values per example (DCGAN at 16x16 and 32x32: the 32x32x1 step 26 -> 30 steps/s),
# while for the large layers of 64x64x3 the two were even or per-phase ahead, N = 64
# (`bench/conv_layers.py`, `bench/dcgan.py`).  On an H200 the fused form was the faster at
# every Co tried (3 to 128); XLA:CPU sets the rule.
_FUSED_MAX_COUT = 8
_FUSED_SMALL_MAX_COUT, _FUSED_SMALL_MAX_OUTPUT = 64, 16384


def _stride1_up_conv(x: Array, kernel: Array) -> Array:
    """``lax_up_conv`` from stride-1 convolutions only: fused for thin outputs and small
    layers, else per phase."""
    co = kernel.shape[-1]
    out_per_example = 4 * x.shape[1] * x.shape[2] * co
    if co <= _FUSED_MAX_COUT or (co <= _FUSED_SMALL_MAX_COUT
                                 and out_per_example <= _FUSED_SMALL_MAX_OUTPUT):
        return _fused_up_conv(x, kernel)
    return _phase_up_conv(x, kernel)


def _down_kernel_grad(x: Array, g: Array) -> Array:
    """``dk[t, s, i, o] = sum_{n,m,l} x[n, 2m + t - 1, 2l + s - 1, i] g[n, m, l, o]``.

    The kernel gradient of ``lax_down_conv``, written as the stride-1 convolution that
    JAX's own transpose rule emits: x is the input with batch and channels swapped, g is
    the window with ``rhs_dilation`` 2 (g[m] meets x[2m + t - 1]), the output's spatial
    positions are the taps t.  No lhs dilation.
    """
    return lax.conv_general_dilated(
        x, g, (1, 1), ((1, 1), (1, 1)), rhs_dilation=(2, 2),
        dimension_numbers=('CHWN', 'IHWO', 'HWNC'),
    )


# ----------------------------------------------------------------------------- custom-vjp ops


@jax.custom_vjp
def _up_conv(x: Array, kernel: Array) -> Array:
    return _stride1_up_conv(x, kernel)


def _up_conv_fwd(x, kernel):
    return _stride1_up_conv(x, kernel), (x, kernel)


def _up_conv_bwd(res, g):
    x, kernel = res
    # Calling the custom-vjp ops (not lax) keeps higher-order input gradients fast too.
    return _down_conv(g, _adjoint_kernel(kernel)), _adjoint_kernel(_down_kernel_grad(g, x))


_up_conv.defvjp(_up_conv_fwd, _up_conv_bwd)


@jax.custom_vjp
def _down_conv(x: Array, kernel: Array) -> Array:
    return lax_down_conv(x, kernel)


def _down_conv_fwd(x, kernel):
    return lax_down_conv(x, kernel), (x, kernel)


def _down_conv_bwd(res, g):
    x, kernel = res
    return _up_conv(g, _adjoint_kernel(kernel)), _down_kernel_grad(x, g)


_down_conv.defvjp(_down_conv_fwd, _down_conv_bwd)


# XLA:CPU runs a convolution whose input or output exceeds the core caches well below the
# machine's rate (DCGAN at 64x64x3, batch 64: the 64x64x3 -> 32x32x64 layer and its
# gradients).  Splitting the batch into pieces of at most this many bytes each, on the CPU
# only, took that step from 1.54 to 1.7 steps/s and left the smaller shapes unchanged
# (`bench/dcgan.py`).  The pieces are independent, so values and gradients are unchanged.
_CPU_CHUNK_BYTES = 2 * 2**20


def _batch_chunks(x: Array, out_elems_per_example: int) -> int:
    """The chunk size (a power-of-two divisor of the batch) for this op, or the batch."""
    n = x.shape[0]
    if jax.default_backend() != 'cpu' or n < 2:
        return n
    per_example = max(x.size // n, out_elems_per_example) * x.dtype.itemsize
    c = n
    while c % 2 == 0 and c * per_example > _CPU_CHUNK_BYTES:
        c //= 2
    return c


def _chunked(op: Callable[[Array, Array], Array], x: Array, kernel: Array,
             out_elems_per_example: int) -> Array:
    c = _batch_chunks(x, out_elems_per_example)
    if c == x.shape[0]:
        return op(x, kernel)
    return jnp.concatenate([op(x[i:i + c], kernel) for i in range(0, x.shape[0], c)])


def up_conv(x: Array, kernel: Array) -> Array:
    """4x4 stride-2 transposed convolution, (N,H,W,Ci) x (4,4,Ci,Co) -> (N,2H,2W,Co).

    Equals ``lax_up_conv`` (PyTorch ``ConvTranspose2d(k=4, s=2, p=1)``) up to float
    rounding.  Forward from stride-1 convolutions (per output phase, or fused for thin
    outputs and small layers: ``_stride1_up_conv``); the input gradient is ``down_conv``
    with the adjoint kernel and the kernel gradient a stride-1 convolution (module
    docstring), so no lhs-dilated convolution.  Any H, W.  On the CPU, the batch of a large
    layer runs in pieces (``_batch_chunks``).
    """
    _check('up_conv', x, kernel)
    _, h, w, _ = x.shape
    return _chunked(_up_conv, x, kernel, 4 * h * w * kernel.shape[-1])


def down_conv(x: Array, kernel: Array) -> Array:
    """4x4 stride-2 padding-1 convolution, (N,H,W,Ci) x (4,4,Ci,Co) -> (N,H/2,W/2,Co).

    Forward is the native strided convolution (``lax_down_conv``); the input gradient is
    ``up_conv`` with the adjoint kernel, so no lhs-dilated convolution is ever emitted.
    H and W must be even.  On the CPU, large layers run in pieces as in ``up_conv``.
    """
    _check('down_conv', x, kernel, even=True)
    _, h, w, _ = x.shape
    return _chunked(_down_conv, x, kernel, h * w * kernel.shape[-1] // 4)


# ----------------------------------------------------------------------------- modules

_IMPLS: dict[str, dict[str, Callable[[Array, Array], Array]]] = {
    'up': {'phase': up_conv, 'lax': lax_up_conv},
    'down': {'phase': down_conv, 'lax': lax_down_conv},
}


class _Stride2Conv(nn.Module):
    """Shared body of ``UpConv`` / ``DownConv``: a (4, 4, Cin, features) kernel and a bias.

    ``impl='phase'`` uses ``up_conv`` / ``down_conv``; ``impl='lax'`` the plain lax
    reference.  Both have identical parameters, so a config switch can choose.
    """

    features: int
    use_bias: bool = True
    impl: str = 'phase'
    kernel_init: Callable[..., Array] = nn.initializers.normal(0.02)  # DCGAN init
    bias_init: Callable[..., Array] = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    _direction = ''  # set by subclasses: 'up' or 'down'

    @nn.compact
    def __call__(self, x: Array) -> Array:
        ops = _IMPLS[self._direction]
        if self.impl not in ops:
            raise ValueError(f"impl must be one of {sorted(ops)}, got {self.impl!r}")
        kernel = self.param(
            'kernel', self.kernel_init, (4, 4, x.shape[-1], self.features), self.param_dtype
        )
        bias = (
            self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = ops[self.impl](x, kernel)
        return y if bias is None else y + bias


class UpConv(_Stride2Conv):
    """``ConvTranspose2d(k=4, s=2, p=1)``: (N,H,W,Cin) -> (N,2H,2W,features)."""

    _direction = 'up'


class DownConv(_Stride2Conv):
    """``Conv2d(k=4, s=2, p=1)``: (N,H,W,Cin) -> (N,H/2,W/2,features); H, W even."""

    _direction = 'down'
