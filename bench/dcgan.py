"""DCGAN training speed of genjax on this machine, against PyTorch.

    python bench/dcgan.py                      # the three default shapes, phase convs, float32
    python bench/dcgan.py --conv_impl=lax      # the plain XLA (de)convolutions instead
    python bench/dcgan.py --shapes=32x32x1 --dtype=bfloat16 --no_torch --json=out.json
    JAX_PLATFORMS=cuda python bench/dcgan.py --torch_device=cuda   # both on one GPU

For each shape, one fresh subprocess builds the GAN task (`genjax.tasks.make`) and
times its `pmap`ped `train_step` on 1 device with a fixed, device-resident synthetic
batch; another fresh subprocess times the same DCGAN in PyTorch
(`bench/torch_dcgan.py`). Figures per shape:

  compile s     wall time of the first call of the pmapped step (tracing, compilation
                and one execution)
  steps/s       median over --windows windows of the steady-state rate (after warm-up;
                `block_until_ready` at the end of each window only); one step = one D
                update on real + fake, one G update and the EMA update
  img/s         steps/s x batch (real images the discriminator sees per second)
  RSS MB        the subprocess's peak resident memory (resource.getrusage)
  XLA tmp MB    temp buffer size of the compiled step (`memory_analysis()`)
  GF XLA        GFLOP per step from the compiled step's `cost_analysis()` (all ops;
                XLA counts only kernel taps that meet real input, not the zero
                padding: (1 - 1/H)^2 of a 4x4/2 layer's taps at input size H, so
                82-87% of the hand count for the shapes here)
  GF model      hand count of the convolution/dense GFLOP per step (see `model_flops`)
  %mm           achieved model GFLOP/s as a fraction of this machine's float32 matmul
                rate, measured in the same run (jitted 2048x2048 matmul, median)
  torch steps/s and genjax/torch, the speed ratio (> 1: genjax is faster)

Other processes may share the machine's cores. Each timed window also measures how
much CPU they used; busy windows are repeated (after waiting for quiet) and a
figure for which no quiet windows could be had is marked with '*' (bench/windows.py).
PyTorch's OpenMP threads suffer far more than XLA's from a stolen core (up to 30x
slower), so an unmarked comparison needs a quiet machine.

The default command takes about 3 minutes on 2 quiet cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUIET_WAIT_S = 60.0  # Longest wait for other processes to leave the CPU before a measurement.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from windows import foreign_fraction, timed_windows, wait_for_quiet  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmarked DCGAN: image size and channels, the generator's last hidden
    width, the discriminator's first width, its dropout, the latent size, the batch."""

    name: str
    image_size: int
    channels: int
    g_width: int
    d_width: int
    d_dropout: float
    latent_dim: int
    batch: int

    def describe(self) -> str:
        drop = f", D dropout {self.d_dropout:g}" if self.d_dropout else ""
        return (f"{self.image_size}x{self.image_size}x{self.channels}, G width {self.g_width}, "
                f"D width {self.d_width}{drop}, latent {self.latent_dim}, batch {self.batch}")


SHAPES = {
    # configs/dcgan.py exactly as it is (the embedded digits at 16x16); the worker reads
    # the shape from the config file, these are only the values it held when written.
    "default": Shape("default", 16, 1, 64, 32, 0.3, 64, 64),
    # genjax.tasks.gan.defaults() (no dropout) at these sizes:
    "32x32x1": Shape("32x32x1", 32, 1, 32, 32, 0.0, 64, 64),
    # The classic DCGAN of Radford et al.: 64x64 RGB, 64..512 channels, 100-d latent.
    "64x64x3": Shape("64x64x3", 64, 3, 64, 64, 0.0, 100, 64),
}


# --- Hand count of the useful arithmetic --------------------------------------------

def _layer_flops(s: Shape) -> tuple[list[float], list[float]]:
    """Forward FLOPs (2 x multiply-adds) of each layer of G and of D, for batch s.batch.

    A 4x4 stride-2 transposed convolution does Cin·Cout·16 multiply-adds per *input*
    pixel (no multiplications by inserted zeros are counted); a 4x4 stride-2
    convolution does Cin·Cout·16 per *output* pixel.
    """
    k = int(math.log2(s.image_size)) - 2
    b = s.batch
    features = s.g_width * 2 ** (k - 1)
    g = [2 * b * s.latent_dim * 16 * features]  # Dense -> 4x4xF
    size = 4
    for _ in range(k - 1):
        g.append(2 * b * size * size * features * (features // 2) * 16)
        features //= 2
        size *= 2
    g.append(2 * b * size * size * features * s.channels * 16)
    d = []
    size, cin, cout = s.image_size, s.channels, s.d_width
    for _ in range(k):
        size //= 2
        d.append(2 * b * size * size * cin * cout * 16)
        cin, cout = cout, cout * 2
    d.append(2 * b * 16 * cin)  # Dense -> 1 logit
    return g, d


def model_flops(s: Shape) -> float:
    """FLOPs of one training iteration counted from the layers (convolutions and dense).

    With G and D the sums of forward FLOPs, G0 the first dense layer of G and D1 the
    first convolution of D, and each backward pass costing one forward for weight
    gradients plus one for input gradients (where needed):
      D step: G fwd (1 G) + D fwd on real and fake (2 D) + D weight grads (2 D)
              + D input grads below the first layer (2 (D - D1))
      G step: G fwd (1 G) + D fwd (1 D) + D input grads (1 D; no D weight grads)
              + G weight grads (1 G) + G input grads except into z (G - G0)
      total = 4 G - G0 + 8 D - 2 D1.
    BatchNorm, activations, dropout, losses and the Adam/EMA updates are not counted.
    """
    g, d = _layer_flops(s)
    return 4 * sum(g) - g[0] + 8 * sum(d) - 2 * d[0]


# --- Subprocess workers ---------------------------------------------------------------

def _load_avg() -> float:
    return os.getloadavg()[0]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _per_window(steps: int, windows: int, step_seconds: float, window_seconds: float) -> int:
    """Steps per timed window: --steps split over the windows, else ~window_seconds each."""
    if steps > 0:
        return max(1, steps // windows)
    return max(1, round(window_seconds / max(step_seconds, 1e-6)))


def worker_matmul(n: int = 2048, reps: int = 15, per_rep: int = 4) -> dict:
    """Median float32 GFLOP/s of a jitted n x n matmul on the default JAX device.

    Each of `reps` timings covers `per_rep` matmuls (a few hundred ms, long enough to
    tell whether other processes were busy meanwhile); busy timings are repeated."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    wait_for_quiet(QUIET_WAIT_S)

    def run():
        for _ in range(per_rep):
            mm(a, b).block_until_ready()

    quiet, seen = [], []
    start = time.perf_counter()
    while len(quiet) < reps and (len(seen) < 4 * reps and time.perf_counter() - start < 40):
        wall, foreign = foreign_fraction(run)
        seen.append(wall / per_rep)
        if foreign <= 0.05:
            quiet.append(wall / per_rep)
    times = quiet if len(quiet) >= 3 else seen
    return {"matmul_gflops": 2 * n ** 3 / statistics.median(times) / 1e9,
            "matmul_best_gflops": 2 * n ** 3 / min(times) / 1e9,
            "matmul_noisy": len(quiet) < 3}


def _genjax_config(s: Shape, conv_impl: str, dtype: str):
    """The 'default' shape: configs/dcgan.py as it is; the others: the GAN task's `defaults()` with
    the shape's fields. The flags' conv_impl and dtype are set; the result is validated."""
    from genjax import tasks as tasks_lib

    if s.name == "default":
        path = ROOT / "configs" / "dcgan.py"
        spec = importlib.util.spec_from_file_location("_dcgan_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config()
    else:
        config = tasks_lib.defaults("gan")
        config.image_size = s.image_size
        config.model.g_width = s.g_width
        config.model.d_width = s.d_width
        config.model.d_dropout = s.d_dropout
        config.model.latent_dim = s.latent_dim
        config.batch_size = s.batch
    config.model.conv_impl = conv_impl
    config.model.dtype = dtype
    tasks_lib.validate(config, num_devices=1)
    return config


def _config_shape(s: Shape, config) -> Shape:
    """The shape a genjax config actually trains (channels come from the data)."""
    return Shape(s.name, config.image_size, s.channels, config.model.g_width,
                 config.model.d_width, float(config.model.d_dropout), config.model.latent_dim,
                 config.batch_size)


def worker_genjax(s: Shape, conv_impl: str, dtype: str, steps: int, warmup: int,
                  windows: int, window_seconds: float) -> dict:
    """Times genjax's pmapped GAN train_step for one shape (run in a fresh process)."""
    import types

    import jax
    import numpy as np

    from genjax import parallel, tasks

    config = _genjax_config(s, conv_impl, dtype)
    s = _config_shape(s, config)  # the default config's own shape
    meta = types.SimpleNamespace(image_shape=(s.image_size, s.image_size, s.channels))
    task = tasks.make(config, meta)
    n = parallel.device_count()
    state = parallel.replicate(task.init(config.seed))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (n, s.batch // n, s.image_size, s.image_size, s.channels))
    batch = parallel.shard({"image": images.astype(np.float32)})
    jax.block_until_ready((state, batch))
    step = parallel.pmap(task.train_step)

    quiet = wait_for_quiet(QUIET_WAIT_S)
    load = _load_avg()
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    compile_s = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        state, metrics = step(state, batch)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(state)
    step_s = time.perf_counter() - t0

    def run_steps(k):
        nonlocal state, metrics
        for _ in range(k):
            state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))

    timing = timed_windows(run_steps, _per_window(steps, windows, step_s, window_seconds),
                           windows)
    losses = {k: float(np.asarray(v)[0]) for k, v in metrics.items() if k in ("d/loss", "g/loss")}
    rss_mb = _peak_rss_mb()

    # Cost and memory of the same program, compiled once more ahead of time (the live
    # state was donated; an abstract copy of it is enough to lower the step).
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (state, batch))
    t0 = time.perf_counter()
    compiled = step.lower(*abstract).compile()
    aot_compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    try:
        temp_mb = compiled.memory_analysis().temp_size_in_bytes / 2 ** 20
    except Exception:  # noqa: BLE001 - not every backend implements it
        temp_mb = None
    return {"shape": dataclasses.asdict(s), "conv_impl": conv_impl, "dtype": dtype,
            "devices": n, "compile_s": compile_s, "aot_compile_s": aot_compile_s,
            **timing, "images_per_sec": timing["steps_per_sec"] * s.batch,
            "peak_rss_mb": rss_mb,
            "xla_temp_mb": temp_mb, "xla_gflop": float(cost.get("flops", float("nan"))) / 1e9,
            "model_gflop": model_flops(s) / 1e9, "load_avg": load, "quiet_at_start": quiet,
            "losses": losses,
            "jax_version": jax.__version__}


def worker_torch(s: Shape, steps: int, warmup: int, windows: int,
                 window_seconds: float, device: str = "cpu") -> dict:
    """Times the PyTorch DCGAN of bench/torch_dcgan.py for one shape."""
    import torch_dcgan

    quiet = wait_for_quiet(QUIET_WAIT_S)
    load = _load_avg()
    kw = {"d_width": s.d_width, "d_dropout": s.d_dropout, "device": device}
    if steps <= 0:  # Calibrate the window length on a short run.
        probe = torch_dcgan.benchmark_detail(s.image_size, s.channels, s.g_width, s.batch,
                                             s.latent_dim, steps=2, warmup=warmup, windows=1,
                                             **kw)
        steps = windows * _per_window(0, windows, 1 / probe["steps_per_sec"], window_seconds)
    r = torch_dcgan.benchmark_detail(s.image_size, s.channels, s.g_width, s.batch, s.latent_dim,
                                     steps=steps, warmup=warmup, windows=windows, **kw)
    r.update(peak_rss_mb=_peak_rss_mb(), load_avg=load, quiet_at_start=quiet)
    return r


def _run_worker(kind: str, args: dict, timeout: float = 900) -> dict:
    """Runs one worker in a fresh Python process; returns its JSON result or an error."""
    cmd = [sys.executable, __file__, "--_worker", json.dumps({"kind": kind, **args})]
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env.pop("GENJAX_COMPILATION_CACHE", None)  # compile time must include compilation
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT "):])


def _worker_main(spec: str) -> None:
    a = json.loads(spec)
    kind = a.pop("kind")
    if kind == "matmul":
        out = worker_matmul()
    else:
        shape = Shape(**a.pop("shape"))
        out = worker_genjax(shape, **a) if kind == "genjax" else worker_torch(shape, **a)
    print("RESULT " + json.dumps(out), flush=True)


# --- The table --------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def print_table(rows: list[dict], matmul_gflops: float) -> None:
    head = ["shape", "impl", "dtype", "compile s", "steps/s", "img/s", "RSS MB", "XLA tmp MB",
            "GF XLA", "GF model", "%mm", "torch st/s", "torch RSS", "genjax/torch"]
    table = [head]
    for r in rows:
        g, t = r["genjax"], r.get("torch")
        if "error" in g:
            table.append([r["shape"], r["conv_impl"], r["dtype"], "ERROR"] + [""] * 10)
            continue
        achieved = g["model_gflop"] * g["steps_per_sec"]
        t_ok = isinstance(t, dict) and "error" not in t
        table.append([
            r["shape"], g["conv_impl"], g["dtype"], _fmt(g["compile_s"], ".1f"),
            _fmt(g["steps_per_sec"], ".2f") + ("*" if g["noisy"] else ""),
            _fmt(g["images_per_sec"], ".0f"),
            _fmt(g["peak_rss_mb"], ".0f"), _fmt(g["xla_temp_mb"], ".1f"),
            _fmt(g["xla_gflop"], ".2f"), _fmt(g["model_gflop"], ".2f"),
            _fmt(100 * achieved / matmul_gflops, ".1f"),
            _fmt(t["steps_per_sec"], ".2f") + ("*" if t["noisy"] else "") if t_ok else "-",
            _fmt(t["peak_rss_mb"], ".0f") if t_ok else "-",
            _fmt(g["steps_per_sec"] / t["steps_per_sec"], ".2f") if t_ok else "-",
        ])
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if "shape" in r["genjax"]:
            print(f"{r['shape']}: {Shape(**r['genjax']['shape']).describe()}")
    if any(isinstance(x, dict) and x.get("noisy") for r in rows
           for x in (r["genjax"], r.get("torch"))):
        print("* other processes used the CPU during every timed window: unreliable figure")
    for r in rows:
        g, t = r["genjax"], r.get("torch")
        if "error" in g:
            print(f"{r['shape']}: genjax failed: {g['error']}")
        if isinstance(t, dict) and "error" in t:
            print(f"{r['shape']}: torch failed: {t['error']}")
    skipped = {r["torch"] for r in rows if isinstance(r.get("torch"), str)}
    for note in skipped:
        print(f"PyTorch skipped: {note}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(SHAPES),
                   help=f"comma-separated, from: {', '.join(SHAPES)}")
    p.add_argument("--conv_impl", default="phase", choices=("phase", "lax"),
                   help="genjax config field model.conv_impl")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                   help="genjax config field model.dtype (PyTorch always runs float32)")
    p.add_argument("--steps", type=int, default=0,
                   help="timed steps per shape, split over the windows; 0: about "
                        "--window_seconds per window")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (incl. the first)")
    p.add_argument("--windows", type=int, default=5, help="timed windows; the median is reported")
    p.add_argument("--window_seconds", type=float, default=3.0)
    p.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--torch_device", default="cpu",
                   help="where the PyTorch reference runs: 'cpu', or 'cuda' beside "
                        "JAX_PLATFORMS=cuda")
    p.add_argument("--json", default="", help="also write all results to this JSON file")
    p.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._worker:
        _worker_main(a._worker)
        return

    shapes = [x.strip() for x in a.shapes.split(",") if x.strip()]
    unknown = [x for x in shapes if x not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    torch_note = None
    if a.no_torch:
        torch_note = "--no_torch given"
    elif importlib.util.find_spec("torch") is None:
        torch_note = ("torch is not importable; install the CPU build with "
                      "`pip install torch==2.13.0` (or the CPU wheel index) to compare")

    t_start = time.perf_counter()
    mm = _run_worker("matmul", {})
    if "error" in mm:
        sys.exit(f"matmul measurement failed: {mm['error']}")
    print(f"float32 matmul 2048x2048 (jax.jit): {mm['matmul_gflops']:.0f} GFLOP/s median, "
          f"{mm['matmul_best_gflops']:.0f} best{' (machine busy)' if mm['matmul_noisy'] else ''}; "
          f"{os.cpu_count()} CPU cores; "
          f"load avg {_load_avg():.2f}", flush=True)
    run = {"warmup": a.warmup, "windows": a.windows, "window_seconds": a.window_seconds,
           "steps": a.steps}
    rows = []
    for name in shapes:
        shape = dataclasses.asdict(SHAPES[name])
        row = {"shape": name, "conv_impl": a.conv_impl, "dtype": a.dtype}
        row["genjax"] = _run_worker("genjax", {"shape": shape, "conv_impl": a.conv_impl,
                                               "dtype": a.dtype, **run})
        g = row["genjax"]
        msg = (f"  {name}: genjax {g['steps_per_sec']:.2f} steps/s "
               f"({g['windows_discarded']} busy windows repeated)"
               if "error" not in g else f"  {name}: genjax failed")
        if torch_note is None:
            shape_used = g.get("shape", shape)  # the default config's actual shape
            row["torch"] = _run_worker("torch", {"shape": shape_used, "device": a.torch_device,
                                                 **run})
            t = row["torch"]
            msg += (f", torch {t['steps_per_sec']:.2f} steps/s "
                    f"({t['windows_discarded']} busy windows repeated)"
                    if "error" not in t else ", torch failed")
        else:
            row["torch"] = torch_note
        print(msg, flush=True)
        rows.append(row)
    print()
    print_table(rows, mm["matmul_gflops"])
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(
            {"matmul": mm, "args": vars(a) | {"_worker": None}, "rows": rows}, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
