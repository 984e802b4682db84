"""Where a DCGAN training step spends its time: genjax (conv_impl phase and lax) next to
the same computation in PyTorch, piece by piece and layer by layer.

    python bench/profile_dcgan.py --shape=64x64x3
    python bench/profile_dcgan.py --shape=32x32x1 --impls=phase,lax --no_layers

Parts (BatchNorm in training mode throughout, batch statistics as in training):
  G fwd          generator forward
  D fwd          discriminator forward on one batch
  D loss+grad    G forward (the fakes), D on real and fake, BCE, gradient w.r.t. D's
                 parameters (the D update without the optimiser)
  G loss+grad    G forward, D forward, gradient w.r.t. G's parameters through D
  full step      the task's pmapped train_step (genjax) / DCGANTrainer.train_step (torch)
  rest           full step - (D loss+grad + G loss+grad): noise, the optimiser and
                 EMA updates, finiteness checks, dispatch (about 0 when the parts,
                 compiled separately, run as fast as inside the step)
With --xla_kinds, the traced full step's XLA operations grouped into convolution
forward / backward, layout shuffles and the rest, and by layer: "XLA D/DownConv_1 bwd conv"
is the time of the discriminator's second strided convolution's gradient convolutions inside
the step, over all its uses (see `xla_kinds`). Independent operations overlap on the two
cores, so these sums exceed the step; they rank where the step's time goes.
Layers: every 4x4 stride-2 (transposed) convolution of the shape, alone, forward and
forward + backward (gradients w.r.t. input and kernel), with the layer's batch.

Each figure is the median over windows of ~0.4 s; windows during which other
processes used the CPU are repeated (bench/windows.py). Milliseconds per call.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dcgan import SHAPES, Shape, _config_shape, _genjax_config  # noqa: E402
from windows import timed_windows  # noqa: E402

WINDOW_S = 0.4


def _ms(run_once: Callable[[], None], block: Callable[[], None]) -> float:
    """Median milliseconds per call of `run_once` (calls queued, `block` at window end)."""
    import time

    run_once()
    block()
    t0 = time.perf_counter()
    run_once()
    block()
    per_window = max(1, round(WINDOW_S / max(time.perf_counter() - t0, 1e-6)))

    def run(n):
        for _ in range(n):
            run_once()
        block()

    return 1e3 / timed_windows(run, per_window, windows=5, max_seconds=20)["steps_per_sec"]


def _layers(s: Shape) -> list[tuple[str, str, int, int, int]]:
    """(name, 'up'|'down', input size, Cin, Cout) of each stride-2 layer of the shape."""
    k = s.image_size.bit_length() - 3
    out = []
    features, size = s.g_width * 2 ** (k - 1), 4
    for i in range(k):
        cout = features // 2 if i < k - 1 else s.channels
        out.append((f"G up{i + 1} {size}x{size}x{features}->{2 * size}x{2 * size}x{cout}",
                    "up", size, features, cout))
        features, size = cout, 2 * size
    size, cin, cout = s.image_size, s.channels, s.d_width
    for i in range(k):
        out.append((f"D down{i + 1} {size}x{size}x{cin}->{size // 2}x{size // 2}x{cout}",
                    "down", size, cin, cout))
        size, cin, cout = size // 2, cout, cout * 2
    return out


def _jax_ms(fn: Callable, *args) -> float:
    """`_ms` of a jitted function: calls are dispatched asynchronously, the last result
    is waited for at the end of each window."""
    import jax

    last = [None]

    def once():
        last[0] = fn(*args)
    return _ms(once, lambda: jax.block_until_ready(last[0]))


_KINDS = (
    ("XLA conv/dot backward", None),
    ("XLA conv/dot forward", None),
    ("XLA transpose/copy/concat/slice", r"(transpose|copy|concatenate|bitcast_concatenate|"
                                        r"concatenate_bitcast|copy_slice|bitcast_slice|slice)"),
    ("XLA other (elementwise, reductions, RNG)", r""),
)


def xla_kinds(step: Callable, state, batch, steps: int = 3) -> tuple[dict[str, float], object]:
    """Milliseconds per step of the compiled step's operations, grouped by kind.

    Traces `steps` calls with `jax.profiler` (XLA:CPU records one event per executed
    operation) and maps each event to its HLO instruction: convolution fusions whose
    source op is a transpose (autodiff) are 'backward'. Events of independent
    operations may overlap, so the kinds can add up to more than the step.
    Also sums the events by layer ("XLA G/UpConv_0 fwd conv", "... bwd other"), from the
    flax module path in each instruction's source op; the 10 largest are returned.
    Returns (ms per kind and per top layer, the state after the traced steps).
    """
    import collections
    import glob
    import gzip
    import json
    import re
    import tempfile

    import jax

    hlo = step.lower(state, batch).compile().as_text()
    source = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = ", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            source[m.group(1)] = op.group(1) if op else ""
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(steps):
                state, _ = step(state, batch)
            jax.block_until_ready(state)
        path = glob.glob(f"{tmp}/**/perfetto_trace.json.gz", recursive=True)[0]
        events = json.load(gzip.open(path))["traceEvents"]
    out, layers = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name not in source:
            continue
        is_conv = re.match(r"(ynn_fusion|xnn_fusion|onednn|convolution|conv_general|dot|"
                           r"custom-call)", name)
        if is_conv:
            backward = "transpose(" in source[name] or not source[name]
            kind = _KINDS[0][0] if backward else _KINDS[1][0]
        elif re.match(_KINDS[2][1], name):
            kind = _KINDS[2][0]
        else:
            kind = _KINDS[3][0]
        out[kind] += e["dur"] / 1e3 / steps
        m = re.search(r"(transpose\()?(?:jvp\()?(Generator|Discriminator)\)*/(\w+)", source[name])
        layer = (f"{m.group(2)[0]}/{m.group(3)} {'bwd' if m.group(1) else 'fwd'}" if m
                 else "(no source op: custom-gradient)")
        layers[f"XLA {layer} {'conv' if is_conv else 'other'}"] += e["dur"] / 1e3 / steps
    return {**{k: out.get(k, 0.0) for k, _ in _KINDS}, **dict(layers.most_common(10))}, state


# --- genjax ------------------------------------------------------------------------------

def profile_genjax(s: Shape, impl: str, dtype: str, layers: bool,
                   kinds: bool = False) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import losses, parallel, tasks
    from genjax.models.dcgan import Discriminator, Generator
    from genjax.nn import conv

    dt = jnp.dtype(dtype)
    G = Generator(image_size=s.image_size, channels=s.channels, width=s.g_width,
                  conv_impl=impl, dtype=dt)
    D = Discriminator(image_size=s.image_size, width=s.d_width, dropout=s.d_dropout,
                      conv_impl=impl, dtype=dt)
    loss = losses.get("non_saturating")
    kz, kx, kg, kd, kr = jax.random.split(jax.random.key(0), 5)
    rngs = {"dropout": kr}
    z = jax.random.normal(kz, (s.batch, s.latent_dim))
    real = jax.random.uniform(kx, (s.batch, s.image_size, s.image_size, s.channels),
                              minval=-1, maxval=1)
    gv = G.init(kg, z, train=False)
    dv = D.init(kd, real, train=False)

    def g_fwd(gv, z):
        return G.apply(gv, z, train=True, mutable=["batch_stats"])[0]

    def d_fwd(dv, x):
        return D.apply(dv, x, train=True, mutable=["batch_stats"], rngs=rngs)[0]

    def d_grad(dv, real, z):
        fake = jax.lax.stop_gradient(g_fwd(gv, z))

        def f(p):
            r, upd = D.apply({**dv, "params": p}, real, train=True, mutable=["batch_stats"],
                             rngs=rngs)
            f_, _ = D.apply({"params": p, **upd}, fake, train=True, mutable=["batch_stats"],
                            rngs=rngs)
            return loss.discriminator(r, f_)[0]
        return jax.value_and_grad(f)(dv["params"])

    def g_grad(gv, dv, z):
        def f(p):
            return loss.generator(d_fwd(dv, g_fwd({**gv, "params": p}, z)))
        return jax.value_and_grad(f)(gv["params"])

    out = {}
    block = jax.block_until_ready
    fns = {"G fwd": (jax.jit(g_fwd), (gv, z)), "D fwd": (jax.jit(d_fwd), (dv, real)),
           "D loss+grad": (jax.jit(d_grad), (dv, real, z)),
           "G loss+grad": (jax.jit(g_grad), (gv, dv, z))}
    for name, (fn, args) in fns.items():
        out[name] = _jax_ms(fn, *args)

    # The full pmapped step of the task, as bench/dcgan.py runs it.
    config = _genjax_config(s, impl, dtype)
    task = tasks.make(config, types.SimpleNamespace(
        image_shape=(s.image_size, s.image_size, s.channels)))
    state = [parallel.replicate(task.init(0))]
    batch = parallel.shard({"image": np.asarray(real)[None]})
    step = parallel.pmap(task.train_step)

    def full():
        state[0], _ = step(state[0], batch)
    out["full step"] = _ms(full, lambda: block(state[0]))
    out["rest"] = out["full step"] - out["D loss+grad"] - out["G loss+grad"]
    if kinds:
        by_kind, state[0] = xla_kinds(step, state[0], batch)
        out.update(by_kind)

    if layers:
        ops = {"up": {"phase": conv.up_conv, "lax": conv.lax_up_conv},
               "down": {"phase": conv.down_conv, "lax": conv.lax_down_conv}}
        for name, kind, size, cin, cout in _layers(s):
            op = ops[kind][impl]
            x = jax.random.normal(kx, (s.batch, size, size, cin), dt)
            w = 0.02 * jax.random.normal(kd, (4, 4, cin, cout), dt)
            fwd = jax.jit(op)
            both = jax.jit(jax.grad(lambda x, w: jnp.sum(op(x, w) ** 2), argnums=(0, 1)))
            out[f"{name} fwd"] = _jax_ms(fwd, x, w)
            out[f"{name} fwd+bwd"] = _jax_ms(both, x, w)
    return out


# --- torch -------------------------------------------------------------------------------

def profile_torch(s: Shape, layers: bool) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    import torch_dcgan

    torch.set_num_threads(os.cpu_count() or 1)
    t = torch_dcgan.DCGANTrainer(s.image_size, s.channels, s.g_width, s.latent_dim, s.batch,
                                 d_width=s.d_width, d_dropout=s.d_dropout)
    G, D = t.G, t.D
    real = torch.rand(s.batch, s.channels, s.image_size, s.image_size) * 2 - 1
    z = torch.randn(s.batch, s.latent_dim)
    noop = lambda: None  # noqa: E731  (eager CPU ops are synchronous)

    def g_fwd():
        with torch.no_grad():
            G(z)

    def d_fwd():
        with torch.no_grad():
            D(real)

    def d_grad():
        with torch.no_grad():
            fake = G(z)
        D.zero_grad(set_to_none=True)
        loss = (F.binary_cross_entropy_with_logits(D(real), t.ones)
                + F.binary_cross_entropy_with_logits(D(fake), t.zeros))
        loss.backward()

    def g_grad():
        D.requires_grad_(False)
        G.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(D(G(z)), t.ones).backward()
        D.requires_grad_(True)

    out = {"G fwd": _ms(g_fwd, noop), "D fwd": _ms(d_fwd, noop),
           "D loss+grad": _ms(d_grad, noop), "G loss+grad": _ms(g_grad, noop),
           "full step": _ms(lambda: t.train_step(real), noop)}
    out["rest"] = out["full step"] - out["D loss+grad"] - out["G loss+grad"]
    if layers:
        for name, kind, size, cin, cout in _layers(s):
            x = torch.randn(s.batch, cin, size, size)
            if kind == "up":
                w = 0.02 * torch.randn(cin, cout, 4, 4)
                op = lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1)  # noqa: E731
            else:
                w = 0.02 * torch.randn(cout, cin, 4, 4)
                op = lambda x, w: F.conv2d(x, w, stride=2, padding=1)  # noqa: E731

            def fwd():
                with torch.no_grad():
                    op(x, w)

            xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

            def both():
                xg.grad = wg.grad = None
                (op(xg, wg) ** 2).sum().backward()
            out[f"{name} fwd"] = _ms(fwd, noop)
            out[f"{name} fwd+bwd"] = _ms(both, noop)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="64x64x3", choices=list(SHAPES))
    p.add_argument("--impls", default="phase,lax", help="genjax conv_impl values to profile")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--no_torch", action="store_true")
    p.add_argument("--no_layers", action="store_true")
    p.add_argument("--xla_kinds", action="store_true",
                   help="also trace the full genjax step and group XLA's op times by kind")
    a = p.parse_args()
    s = SHAPES[a.shape]
    s = _config_shape(s, _genjax_config(s, "phase", a.dtype))  # the default config's own
    cols = {}
    for impl in [x for x in a.impls.split(",") if x]:
        cols[f"genjax {impl}"] = profile_genjax(s, impl, a.dtype, not a.no_layers,
                                                a.xla_kinds)
    if not a.no_torch and importlib.util.find_spec("torch") is not None:
        cols["torch"] = profile_torch(s, not a.no_layers)
    rows = list(dict.fromkeys(r for c in cols.values() for r in c))
    names = list(cols)
    w0 = max(len(r) for r in rows)
    print(f"{s.name}: {s.describe()}, dtype {a.dtype}; ms per call (median)")
    print("part".ljust(w0) + "".join(n.rjust(14) for n in names))
    for r in rows:
        print(r.ljust(w0) + "".join(f"{cols[n].get(r, float('nan')):14.2f}" for n in names))


if __name__ == "__main__":
    main()
