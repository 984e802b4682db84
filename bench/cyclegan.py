"""CycleGAN training speed of genjax against PyTorch, side by side in one run.

    python bench/cyclegan.py --torch_python=/tmp/torchenv/bin/python
    python bench/cyclegan.py --torch_python=... --shapes=default --repeats=9 --json=out.json
    nice -n 10 python bench/cyclegan.py --torch_python=...    # beside other work

One step is the whole CycleGAN iteration, in the reference's order: G(a), F(G(a)), F(b),
G(F(b)), the identity images G(b), F(a), the generators' update on the LSGAN + 10·cycle +
5·identity loss (one Adam over both generators), then the fakes through the two image
pools (50 each) and the discriminators' update on real images against pooled fakes (one
Adam over both), Adam 2e-4 β1 0.5, on a fixed synthetic batch already on the device. Two
sides, each a fresh process that builds its models and warms up first:

  genjax   the cyclegan task itself (`genjax.tasks.make`), its `train_step` `pmap`ped on 1
           device as the training loop runs it (`genjax.parallel.pmap`)
  torch    `bench/torch_cyclegan.py` under --torch_python: the ResnetGenerator,
           NLayerDiscriminator, ImagePool and `optimize_parameters` of
           junyanz/pytorch-CycleGAN-and-pix2pix, eager

Shapes:
  resnet256  the reference's CycleGAN and the README's horse2zebra command: 256x256 RGB,
             resnet_9blocks (ngf 64), the 70x70 PatchGAN (3 layers, ndf 64), instance norm,
             batch 1. genjax's generic config check allows images up to 128x128 only, so this
             shape runs the task's own checks (`genjax.tasks.cyclegan.validate`) only.
  default    configs/cyclegan.py as it is (16x16 grey digits, batch 16, ResNet-6 at ngf 16,
             a 2-layer PatchGAN at ndf 16, pools of 50).
  tiny       a smoke test (not run by default): 8x8 grey, batch 2, ResNet-1 at ngf 4, a
             1-layer PatchGAN at ndf 4, pools of 2 (so the pool's swapping runs at once).

Both sides build the same networks: genjax leaves the bias off every convolution an
instance norm follows (the norm cancels it), and so does the torch side (the reference has
them; `torch_cyclegan.py` says how many). Parameter counts of one generator and one
discriminator are printed for both sides; they must agree (a mismatch is an error in the
table). The genjax side also reports XLA's FLOP count of its compiled step.

After both sides are built and warmed up (first step = compilation for genjax; then
--warmup steps more, untimed), they alternate: a window of genjax steps, a window of torch
steps, again, --repeats pairs in all. A window is about --window_seconds of steps (counted
from each side's own warm step time, at least one step) ended by a wait for the results.
For every window the share of the machine's CPU time other processes used is measured
(/proc/stat minus this worker's own CPU time, as bench/windows.py); a pair with a window
above 5% is disturbed and another pair is run in its place, after waiting up to
--quiet_wait s for quiet, until --repeats quiet pairs or --max_pairs (3·--repeats) pairs
in all. The figures: min / median / max of each side's steps/s and of the pair-by-pair
ratio genjax/torch (> 1: genjax faster), over the quiet pairs (over all pairs, marked
disturbed, when fewer than --repeats were quiet).

Both sides run on the same --threads CPUs (default: all of this machine's): the workers
are pinned to CPUs 0..threads-1 (XLA sizes its thread pool from that), and PyTorch uses
that many intra-op threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from windows import foreign_fraction, wait_for_quiet  # noqa: E402  (stdlib only)

MAX_FOREIGN = 0.05  # A window in which other processes used more of the CPU is disturbed.


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmarked CycleGAN: image side and channels (both domains), the ResNet
    generators' width and blocks, the PatchGANs' width and layers, batch, the game's
    weights and pool size."""

    name: str
    image_size: int
    channels: int
    ngf: int
    num_blocks: int
    ndf: int
    d_layers: int
    batch: int
    cycle_weight: float
    identity_weight: float
    pool_size: int

    def describe(self) -> str:
        return (f"{self.image_size}x{self.image_size}x{self.channels} both domains, ResNet-"
                f"{self.num_blocks} generators ngf {self.ngf}, PatchGANs {self.d_layers} layers "
                f"ndf {self.ndf}, batch {self.batch}, cycle {self.cycle_weight:g}, identity "
                f"{self.identity_weight:g}, pools {self.pool_size}")


SHAPES = ("resnet256", "default", "tiny")
DEFAULT_SHAPES = ("resnet256", "default")
# Parameter counts both sides report: G (A -> B), F (B -> A), D of domain B, D of domain A.
PARAM_KEYS = ("g_params", "g_ba_params", "d_params", "d_a_params")


# --- genjax side (runs under this interpreter) -----------------------------------------

def genjax_config(name: str):
    """The genjax config of a shape (module docstring), checked as far as it can be."""
    import importlib.util

    from genjax.tasks import cyclegan

    if name == "default":
        path = ROOT / "configs" / "cyclegan.py"
        spec = importlib.util.spec_from_file_location("_cyclegan_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config()
        from genjax import tasks
        tasks.validate(config, num_devices=1)
    elif name == "resnet256":
        config = cyclegan.defaults()
        config.image_size = 256
        config.batch_size = 1
        m = config.model
        m.generator, m.ngf, m.num_blocks, m.ndf, m.d_layers = "resnet", 64, 9, 64, 3
        cyclegan.validate(config)  # the task's checks (the generic one stops at 128x128)
    elif name == "tiny":
        config = cyclegan.defaults()
        config.image_size, config.batch_size, config.pool_size = 8, 2, 2
        m = config.model
        m.generator, m.ngf, m.num_blocks, m.ndf, m.d_layers = "resnet", 4, 1, 4, 1
        from genjax import tasks
        tasks.validate(config, num_devices=1)
    else:
        raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    refuse_unmirrored(config)
    return config


def refuse_unmirrored(config) -> None:
    """Exits with a message if the config departs from what the torch side implements."""
    reference = {"model.generator": "resnet", "loss": "least_squares", "cycle": "both",
                 "model.dtype": "float32"}
    given = {"model.generator": config.model.generator, "loss": config.loss,
             "cycle": config.cycle, "model.dtype": config.model.dtype}
    unmirrored = {k: v for k, v in given.items() if v != reference[k]}
    if config.cycle_weight <= 0:
        unmirrored["cycle_weight"] = config.cycle_weight
    if unmirrored:
        raise SystemExit(f"error: the torch side is the reference CycleGAN; this config departs "
                         f"from it in {unmirrored}.")


def config_shape(name: str, config, channels: int) -> Shape:
    m = config.model
    return Shape(name, config.image_size, channels, m.ngf, m.num_blocks, m.ndf, m.d_layers,
                 config.batch_size, float(config.cycle_weight), float(config.identity_weight),
                 config.pool_size)


def shape_channels(name: str) -> int:
    return 3 if name == "resnet256" else 1  # digits_style is grey


def _param_count(tree) -> int:
    import jax

    return int(sum(x.size for x in jax.tree.leaves(tree)))


def genjax_worker(name: str):
    """Builds the task, compiles and warms up its step; returns (ready info, run_steps)."""
    import types

    import jax
    import numpy as np

    from genjax import parallel, tasks

    channels = shape_channels(name)
    config = genjax_config(name)
    shape = config_shape(name, config, channels)
    s = shape.image_size
    meta = types.SimpleNamespace(name="synthetic", image_channels={"a": channels, "b": channels},
                                 image_shape=(s, s, channels))
    task = tasks.make(config, meta)
    host_state = task.init(config.seed)
    params_g = host_state.generators.params
    params_d = host_state.discriminators.params
    counts = {"g_params": _param_count(params_g["g_ab"]),
              "g_ba_params": _param_count(params_g["g_ba"]),
              "d_params": _param_count(params_d["d_b"]),
              "d_a_params": _param_count(params_d["d_a"])}
    n = parallel.device_count()
    if shape.batch % n:
        raise SystemExit(f"error: the batch of {shape.batch} does not split over {n} devices; "
                         "run the bench on one (e.g. without "
                         "--xla_force_host_platform_device_count in XLA_FLAGS).")
    state = parallel.replicate(host_state)
    del host_state
    rng = np.random.default_rng(0)
    batch = parallel.shard({
        "a": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels)).astype(np.float32),
        "b": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels)).astype(np.float32)})
    t0 = time.perf_counter()
    # Compiled ahead of time (the same program the training loop runs) to read XLA's
    # FLOP count of the step from the very executable that is timed.
    step = parallel.pmap(task.train_step).lower(state, batch).compile()
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    holder = {"state": state, "metrics": None}

    def run_steps(k: int) -> None:
        for _ in range(k):
            holder["state"], holder["metrics"] = step(holder["state"], batch)
        jax.block_until_ready((holder["state"], holder["metrics"]))

    run_steps(1)
    compile_s = time.perf_counter() - t0

    def final() -> dict:
        metrics = holder["metrics"]
        return {"losses": {k: float(np.asarray(v)[0]) for k, v in metrics.items()
                           if k in ("d/loss", "g/loss", "cycle/a", "cycle/b")}}

    return ({"shape": dataclasses.asdict(shape), "first_step_s": compile_s, "devices": n,
             "xla_gflop": float(cost.get("flops", float("nan"))) / 1e9,
             "version": f"jax {jax.__version__}", **counts}, run_steps, final)


# --- torch side (runs under --torch_python) ---------------------------------------------

def torch_worker(shape: dict, device: str = "cpu"):
    import torch

    import torch_cyclegan as tc

    s = Shape(**shape)
    trainer = tc.CycleGANTrainer(s.channels, s.ngf, s.num_blocks, s.ndf, s.d_layers,
                                 cycle_weight=s.cycle_weight, identity_weight=s.identity_weight,
                                 pool_size=s.pool_size, device=device)
    a, b = tc.make_batch(s.batch, s.image_size, s.channels, device)
    holder = {}

    def run_steps(k: int) -> None:
        for _ in range(k):
            holder["d"], holder["g"] = trainer.train_step(a, b)
        float(holder["d"] + holder["g"])  # waits for the work (GPU too)

    t0 = time.perf_counter()
    run_steps(1)
    first = time.perf_counter() - t0

    def final() -> dict:
        return {"losses": {"d/loss": float(holder["d"]), "g/loss": float(holder["g"])}}

    return ({"shape": shape, "first_step_s": first, "version": f"torch {torch.__version__}",
             "torch_threads": torch.get_num_threads(),
             "g_params": tc.count_params(trainer.G_A), "g_ba_params": tc.count_params(trainer.G_B),
             "d_params": tc.count_params(trainer.D_A),
             "d_a_params": tc.count_params(trainer.D_B)}, run_steps, final)


def _own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker_main(spec: str) -> None:
    """A worker: build, warm up, print READY; then serve 'RUN k' lines with one timed
    window each (WINDOW line) until 'STOP' (FINAL line)."""
    a = json.loads(spec)
    threads = a["threads"]
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    if a["side"] == "torch":
        import torch
        torch.set_num_threads(threads)
        info, run_steps, final = torch_worker(a["shape"], a.get("device", "cpu"))
    else:
        info, run_steps, final = genjax_worker(a["name"])
    run_steps(max(a["warmup"], 1))
    t0 = time.perf_counter()
    run_steps(1)
    info["warm_step_s"] = time.perf_counter() - t0
    info["cpus"] = sorted(os.sched_getaffinity(0))
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "RUN":
            k = int(cmd[1])
            own0 = _own_cpu_seconds()
            wall, foreign = foreign_fraction(lambda: run_steps(k))
            # CPUs this side kept busy on average (at most --threads).
            own = (_own_cpu_seconds() - own0) / wall
            print("WINDOW " + json.dumps({"steps": k, "wall_s": wall, "foreign": foreign,
                                          "own_cpus": own, "steps_per_sec": k / wall}),
                  flush=True)
        elif cmd[0] == "STOP":
            r = resource.getrusage(resource.RUSAGE_SELF)
            print("FINAL " + json.dumps({**final(), "peak_rss_mb": r.ru_maxrss / 1024}),
                  flush=True)
            return


class Worker:
    """A worker subprocess driven line by line."""

    def __init__(self, python: str, spec: dict, env: dict, timeout: float = 1800):
        self.side = spec["side"]
        self.proc = subprocess.Popen(
            [python, str(pathlib.Path(__file__).resolve()), "--_worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, cwd=ROOT, env=env)
        self.ready = self._expect("READY")

    def _expect(self, tag: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        err = self.proc.stderr.read().strip().splitlines()[-10:]
        raise SystemExit(f"error: the {self.side} worker exited ({self.proc.wait()}) before "
                         f"{tag}:\n  " + "\n  ".join(err))

    def window(self, steps: int) -> dict:
        self.proc.stdin.write(f"RUN {steps}\n")
        self.proc.stdin.flush()
        return self._expect("WINDOW")

    def stop(self) -> dict:
        self.proc.stdin.write("STOP\n")
        self.proc.stdin.flush()
        out = self._expect("FINAL")
        self.proc.wait(timeout=60)
        return out


# --- The driver --------------------------------------------------------------------------

def _spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def cpu_seconds_per_step(window: dict) -> float:
    """A window's own CPU time per step: on a shared machine, the cost a step would have
    on a core of its own (at one thread; more threads add their waiting to it)."""
    return window["own_cpus"] * window["wall_s"] / window["steps"]


def summarise(pairs: list[dict], repeats: int) -> dict:
    """min / median / max over the quiet pairs (all pairs, marked disturbed, when fewer
    than `repeats` were quiet): steps/s, own CPU-seconds per step, and genjax/torch of
    each (> 1: genjax faster)."""
    quiet = [p for p in pairs if not p["disturbed"]]
    used = quiet if len(quiet) >= repeats else pairs
    cpu = {side: [cpu_seconds_per_step(p[side]) for p in used] for side in ("genjax", "torch")}
    return {"pairs_used": len(used), "pairs_run": len(pairs), "disturbed": len(quiet) < repeats,
            "genjax_steps_per_sec": _spread([p["genjax"]["steps_per_sec"] for p in used]),
            "torch_steps_per_sec": _spread([p["torch"]["steps_per_sec"] for p in used]),
            "genjax_over_torch": _spread([p["ratio"] for p in used]),
            "genjax_cpu_s_per_step": _spread(cpu["genjax"]),
            "torch_cpu_s_per_step": _spread(cpu["torch"]),
            "genjax_over_torch_per_cpu_s": _spread([t / g for g, t in zip(cpu["genjax"],
                                                                           cpu["torch"])]),
            "others_cpu_max": max(max(p["genjax"]["foreign"], p["torch"]["foreign"])
                                  for p in used)}


def bench_shape(name: str, a, env: dict) -> dict:
    common = {"threads": a.threads, "warmup": a.warmup}
    g = Worker(sys.executable, {"side": "genjax", "name": name, **common}, env)
    shape = g.ready["shape"]
    print(f"{name}: {Shape(**shape).describe()}\n  genjax ({g.ready['version']}): first step "
          f"(compilation) {g.ready['first_step_s']:.1f} s, warm step "
          f"{g.ready['warm_step_s']:.3f} s, {g.ready['xla_gflop']:,.1f} GFLOP/step (XLA); "
          f"G {g.ready['g_params']:,} params, F {g.ready['g_ba_params']:,}, D_b "
          f"{g.ready['d_params']:,}, D_a {g.ready['d_a_params']:,}", flush=True)
    t = Worker(a.torch_python, {"side": "torch", "shape": shape, "device": a.torch_device,
                                **common}, env)
    print(f"  torch ({t.ready['version']}, {t.ready['torch_threads']} threads): first step "
          f"{t.ready['first_step_s']:.1f} s, warm step {t.ready['warm_step_s']:.3f} s; G_A "
          f"{t.ready['g_params']:,} params, G_B {t.ready['g_ba_params']:,}, D_A "
          f"{t.ready['d_params']:,}, D_B {t.ready['d_a_params']:,}", flush=True)
    same_params = all(g.ready[k] == t.ready[k] for k in PARAM_KEYS)
    if not same_params:
        print("  ERROR: the parameter counts differ: the two sides are not the same "
              "architecture", flush=True)
    per_window = {w.side: max(1, round(a.window_seconds / w.ready["warm_step_s"]))
                  for w in (g, t)}
    pairs, waited = [], 0.0
    while (sum(not p["disturbed"] for p in pairs) < a.repeats
           and len(pairs) < (a.max_pairs or 3 * a.repeats)):
        if a.quiet_wait > 0 and waited < a.max_wait:
            t0 = time.perf_counter()
            wait_for_quiet(min(a.quiet_wait, a.max_wait - waited), MAX_FOREIGN)
            waited += time.perf_counter() - t0
        pair = {w.side: w.window(per_window[w.side]) for w in (g, t)}
        pair["ratio"] = pair["genjax"]["steps_per_sec"] / pair["torch"]["steps_per_sec"]
        pair["disturbed"] = any(pair[s]["foreign"] > MAX_FOREIGN for s in ("genjax", "torch"))
        pairs.append(pair)
        print(f"  pair {len(pairs)}: genjax {pair['genjax']['steps_per_sec']:.3f} steps/s "
              f"(others {100 * pair['genjax']['foreign']:.0f}% of the CPUs, it "
              f"{pair['genjax']['own_cpus']:.2f} CPUs), torch "
              f"{pair['torch']['steps_per_sec']:.3f} (others "
              f"{100 * pair['torch']['foreign']:.0f}%, it {pair['torch']['own_cpus']:.2f}), "
              f"ratio {pair['ratio']:.2f}"
              + ("  (disturbed)" if pair["disturbed"] else ""), flush=True)
    summary = {**summarise(pairs, a.repeats), "waited_s": waited,
               "same_param_counts": same_params}
    return {"shape": shape, "genjax": {**g.ready, **g.stop()},
            "torch": {**t.ready, **t.stop()}, "steps_per_window": per_window,
            "pairs": pairs, "summary": summary}


def print_table(results: dict) -> None:
    head = ["shape", "genjax steps/s (min med max)", "torch steps/s (min med max)",
            "genjax/torch (min med max)", "CPU-s/step genjax, torch (med)",
            "genjax/torch per CPU-s (min med max)", "pairs", "others' CPU max", "GFLOP/step",
            "params G / D (each)"]
    rows = [head]
    for name, r in results.items():
        s = r["summary"]

        def spread(d, f=".3f"):
            return f"{d['min']:{f}} {d['median']:{f}} {d['max']:{f}}"

        g = r["genjax"]
        rows.append([name, spread(s["genjax_steps_per_sec"]), spread(s["torch_steps_per_sec"]),
                     spread(s["genjax_over_torch"], ".2f"),
                     f"{s['genjax_cpu_s_per_step']['median']:.3g}, "
                     f"{s['torch_cpu_s_per_step']['median']:.3g}",
                     spread(s["genjax_over_torch_per_cpu_s"], ".2f"),
                     f"{s['pairs_used']}/{s['pairs_run']}" + (" disturbed" if s["disturbed"]
                                                               else ""),
                     f"{100 * s['others_cpu_max']:.0f}%", f"{g['xla_gflop']:,.1f}",
                     (f"{g['g_params']:,} / {g['d_params']:,}" if s["same_param_counts"]
                      else "DIFFER")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(DEFAULT_SHAPES),
                   help=f"from: {', '.join(SHAPES)}")
    p.add_argument("--torch_python", default="", help="an interpreter with torch and numpy "
                   "(e.g. /tmp/torchenv/bin/python); required")
    p.add_argument("--torch_device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="CPUs (and PyTorch threads) of both sides")
    p.add_argument("--repeats", type=int, default=5, help="quiet (genjax, torch) window pairs")
    p.add_argument("--max_pairs", type=int, default=0,
                   help="most pairs run while looking for quiet ones (0: 3·repeats)")
    p.add_argument("--window_seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    p.add_argument("--quiet_wait", type=float, default=20.0,
                   help="longest wait for quiet before each pair (s)")
    p.add_argument("--max_wait", type=float, default=300.0,
                   help="longest total wait for quiet per shape (s)")
    p.add_argument("--json", default="", help="also write everything to this JSON file")
    p.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._worker:
        worker_main(a._worker)
        return
    shapes = [x.strip() for x in a.shapes.split(",") if x.strip()]
    if any(x not in SHAPES for x in shapes):
        p.error(f"unknown shape in {a.shapes!r}; choose from {', '.join(SHAPES)}")
    if not a.torch_python:
        p.error("--torch_python is required: an interpreter with torch and numpy, e.g. "
                "python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy, "
                "then --torch_python=/tmp/torchenv/bin/python")
    if not 1 <= a.threads <= len(os.sched_getaffinity(0)):
        p.error(f"--threads must be from 1 to {len(os.sched_getaffinity(0))}")
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("GENJAX_COMPILATION_CACHE", None)  # the first step includes compilation
    print(f"{os.cpu_count()} CPUs, both sides on {a.threads}; nice {os.nice(0)}; "
          f"{a.repeats} quiet pairs of ~{a.window_seconds:g} s windows per shape, "
          f"alternating genjax, torch", flush=True)
    t0 = time.perf_counter()
    results = {name: bench_shape(name, a, env) for name in shapes}
    print()
    print_table(results)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(
            {"command": "python bench/cyclegan.py " + " ".join(sys.argv[1:]),
             "cpus": os.cpu_count(), "threads": a.threads, "nice": os.nice(0),
             "args": {k: v for k, v in vars(a).items() if k != "_worker"},
             "results": results}, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
