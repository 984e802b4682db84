"""Speed of the 4x4 stride-2 layers of `genjax.nn.conv`: plain lax vs the phase impl.

    python bench/conv_layers.py                 # median of 10 timed calls per figure
    python bench/conv_layers.py --repeats=30 --batch=512   # N=512 instead of 64

For each op and shape, jitted functions of (x, kernel):

  fwd      y = op(x, kernel)
  fwd+bwd  y and the gradients of <y, g> w.r.t. x and kernel (one jitted value_and_grad)

Each figure is the median over --repeats calls (after two warm-up calls), in ms, each
call ending in `block_until_ready`.  The lax and phase calls are interleaved so that
other processes sharing the cores slow both alike; the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from genjax.nn.conv import down_conv, lax_down_conv, lax_up_conv, up_conv

# (name, lax op, phase op, x shape (N, H, W, Cin), Cout)
CASES = [
    ('up_conv', lax_up_conv, up_conv, (64, 16, 16, 64), 32),
    ('up_conv', lax_up_conv, up_conv, (64, 8, 8, 128), 64),
    ('down_conv', lax_down_conv, down_conv, (64, 32, 32, 32), 64),
    ('down_conv', lax_down_conv, down_conv, (64, 16, 16, 64), 128),
]


def _fwd_and_fwd_bwd(op):
    """jit(x, k -> y) and jit(x, k, g -> (<y, g>, d/dx, d/dk)).

    g is an argument, not a closed-over constant, so XLA cannot fold part of the backward
    pass (e.g. padding g) into the executable at compile time.
    """
    fwd = jax.jit(lambda x, k, g: op(x, k))
    loss = lambda x, k, g: jnp.vdot(op(x, k), g)
    fwd_bwd = jax.jit(jax.value_and_grad(loss, (0, 1)))
    return fwd, fwd_bwd


def _time_interleaved(fns, args, repeats):
    """Median ms of each fn(*args) over `repeats` rounds, fns alternating within a round."""
    for f in fns:
        for _ in range(2):  # compile + warm-up
            jax.block_until_ready(f(*args))
    times = [[] for _ in fns]
    for _ in range(repeats):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            ts.append(time.perf_counter() - t0)
    return [1e3 * float(np.median(ts)) for ts in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--batch', type=int, default=64, help='N of every x shape')
    args = parser.parse_args()

    print(f'device: {jax.devices()[0].device_kind}, load average {os.getloadavg()[0]:.2f}')
    header = f"{'op':10s} {'x -> Cout':22s} {'impl':6s} {'fwd ms':>8s} {'fwd+bwd ms':>11s}"
    print(header)
    print('-' * len(header))
    rng = np.random.default_rng(0)
    for name, lax_op, phase_op, shape, cout in CASES:
        shape = (args.batch, *shape[1:])
        x = jnp.asarray(rng.standard_normal(shape, np.float32))
        k = jnp.asarray(0.02 * rng.standard_normal((4, 4, shape[-1], cout), np.float32))
        g = jnp.asarray(rng.standard_normal(jax.eval_shape(lax_op, x, k).shape, np.float32))
        (lax_f, lax_fb), (ph_f, ph_fb) = _fwd_and_fwd_bwd(lax_op), _fwd_and_fwd_bwd(phase_op)
        t_lax_f, t_ph_f = _time_interleaved([lax_f, ph_f], (x, k, g), args.repeats)
        t_lax_fb, t_ph_fb = _time_interleaved([lax_fb, ph_fb], (x, k, g), args.repeats)
        desc = f"{'x'.join(map(str, shape))} -> {cout}"
        print(f'{name:10s} {desc:22s} {"lax":6s} {t_lax_f:8.2f} {t_lax_fb:11.2f}')
        print(f'{"":10s} {"":22s} {"phase":6s} {t_ph_f:8.2f} {t_ph_fb:11.2f}')


if __name__ == '__main__':
    main()
