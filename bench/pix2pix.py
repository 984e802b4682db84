"""pix2pix training speed of genjax against PyTorch, side by side in one run.

    python bench/pix2pix.py --torch_python=/tmp/torchenv/bin/python
    python bench/pix2pix.py --torch_python=... --shapes=default --repeats=9 --json=out.json
    nice -n 10 python bench/pix2pix.py --torch_python=...    # beside other work

One step is the whole pix2pix iteration: D's update on (input, target) real vs (input,
G(input)) fake, the loss halved, then G's update with the adversarial + 100·L1 loss against
the updated D, each with Adam (2e-4, β1 0.5), on a fixed synthetic batch already on the
device. Two sides, each a fresh process that builds its models and warms up first:

  genjax   the pix2pix task itself (`genjax.tasks.make`), its `train_step` `pmap`ped on 1
           device as the training loop runs it (`genjax.parallel.pmap`)
  torch    `bench/torch_pix2pix.py` under --torch_python: the U-Net and PatchGAN of
           junyanz/pytorch-CycleGAN-and-pix2pix and its `optimize_parameters`, eager

Shapes:
  unet256  the reference's pix2pix: 256x256 RGB -> RGB, unet_256 (8 levels, ngf 64, dropout
           in its 3 ngf·8 decoder blocks), the 70x70 PatchGAN (3 layers, ndf 64), BatchNorm,
           batch 1. genjax's generic config check allows images up to 128x128 only, so this
           shape runs the task's own checks (`genjax.tasks.pix2pix.validate`) but not that one.
  default  configs/pix2pix.py as it is (grey -> colour, 1 -> 3 channels): its image size,
           batch, U-Net levels, widths, dropout blocks, PatchGAN layers and norm.

After both sides are built and warmed up (first step = compilation for genjax; then
--warmup steps more, untimed), they alternate: a window of genjax steps, a window of torch
steps, again, --repeats pairs in all. A window is about --window_seconds of steps (counted
from each side's own warm step time) ended by a wait for the results. For every window the
share of the machine's CPU time other processes used is measured (/proc/stat minus this
worker's own CPU time, as bench/windows.py); a pair with a window above 5% is disturbed
and another pair is run in its place, after waiting up to --quiet_wait s for quiet, until
--repeats quiet pairs or 3·--repeats pairs in all. The figures: min / median / max of each
side's steps/s and of the pair-by-pair ratio genjax/torch (> 1: genjax faster), over the
quiet pairs (over all pairs, marked disturbed, when fewer than --repeats were quiet).

Both sides run on the same --threads CPUs (default: all of this machine's): the workers
are pinned to CPUs 0..threads-1 (XLA sizes its thread pool from that), and PyTorch uses
that many intra-op threads. Parameter counts of G and D are printed for both sides; they
must agree (a mismatch is reported as an error in the table).
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
    """One benchmarked pix2pix: sizes and channels, U-Net levels and first width, its
    dropout blocks (resolved: a count), PatchGAN layers and first width, norm, batch."""

    name: str
    image_size: int
    in_channels: int
    out_channels: int
    num_downs: int
    ngf: int
    dropout_blocks: int
    n_layers: int
    ndf: int
    norm: str
    batch: int

    def describe(self) -> str:
        return (f"{self.image_size}x{self.image_size}, {self.in_channels} -> "
                f"{self.out_channels} channels, U-Net {self.num_downs} levels ngf "
                f"{self.ngf} (dropout in {self.dropout_blocks} decoder blocks), PatchGAN "
                f"{self.n_layers} layers ndf {self.ndf}, {self.norm} norm, batch {self.batch}")


SHAPES = ("unet256", "default")


# --- genjax side (runs under this interpreter) -----------------------------------------

def genjax_config(name: str):
    """The genjax config of a shape (module docstring), checked as far as it can be."""
    import importlib.util

    from genjax.tasks import pix2pix

    if name == "default":
        path = ROOT / "configs" / "pix2pix.py"
        spec = importlib.util.spec_from_file_location("_pix2pix_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config()
        from genjax import tasks
        tasks.validate(config, num_devices=1)
    elif name == "unet256":
        config = pix2pix.defaults()
        config.image_size = 256
        config.batch_size = 1
        m = config.model
        m.num_downs, m.ngf, m.ndf, m.n_layers, m.norm = 8, 64, 64, 3, "batch"
        m.dropout_blocks = -1  # the reference's rule: 3 blocks in unet_256
        pix2pix.validate(config)  # the task's checks (the generic one stops at 128x128)
    else:
        raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    reference = {"model.skips": True, "model.conditional_d": True, "loss": "non_saturating"}
    given = {"model.skips": config.model.skips, "model.conditional_d": config.model.conditional_d,
             "loss": config.loss}
    unmirrored = {k: v for k, v in given.items() if v != reference[k]}
    if config.gan_weight <= 0:
        unmirrored["gan_weight"] = config.gan_weight
    if unmirrored:
        raise SystemExit(f"error: the torch side is the reference pix2pix; this config departs "
                         f"from it in {unmirrored}.")
    return config


def config_shape(name: str, config, in_channels: int, out_channels: int) -> Shape:
    from genjax.models.pix2pix import dropout_levels

    m = config.model
    return Shape(name, config.image_size, in_channels, out_channels, m.num_downs, m.ngf,
                 len(dropout_levels(m.num_downs, m.dropout_blocks)), m.n_layers, m.ndf,
                 m.norm, config.batch_size)


def _param_count(tree) -> int:
    import jax

    return int(sum(x.size for x in jax.tree.leaves(tree)))


def genjax_worker(name: str):
    """Builds the task, compiles and warms up its step; returns (ready info, run_steps)."""
    import types

    import jax
    import numpy as np

    from genjax import parallel, tasks

    channels = (3, 3) if name == "unet256" else (1, 3)  # the default config: grey -> colour
    config = genjax_config(name)
    shape = config_shape(name, config, *channels)
    meta = types.SimpleNamespace(name="synthetic", image_channels={"input": channels[0],
                                                                   "target": channels[1]},
                                 image_shape=(shape.image_size, shape.image_size, channels[1]))
    task = tasks.make(config, meta)
    host_state = task.init(config.seed)
    counts = {"g_params": _param_count(host_state.generator.params),
              "d_params": _param_count(host_state.discriminator.params)}
    n = parallel.device_count()
    state = parallel.replicate(host_state)
    del host_state
    rng = np.random.default_rng(0)
    s = shape.image_size
    batch = parallel.shard({
        "input": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels[0])).astype(np.float32),
        "target": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels[1])).astype(np.float32)})
    step = parallel.pmap(task.train_step)
    holder = {"state": state, "metrics": None}

    def run_steps(k: int) -> None:
        for _ in range(k):
            holder["state"], holder["metrics"] = step(holder["state"], batch)
        jax.block_until_ready((holder["state"], holder["metrics"]))

    t0 = time.perf_counter()
    run_steps(1)
    compile_s = time.perf_counter() - t0

    def final() -> dict:
        metrics = holder["metrics"]
        return {"losses": {k: float(np.asarray(v)[0]) for k, v in metrics.items()
                           if k in ("d/loss", "g/loss", "g/l1")}}

    return ({"shape": dataclasses.asdict(shape), "first_step_s": compile_s, "devices": n,
             "version": f"jax {jax.__version__}", **counts}, run_steps, final)


# --- torch side (runs under --torch_python) ---------------------------------------------

def torch_worker(shape: dict, device: str = "cpu"):
    import torch

    import torch_pix2pix as tp

    s = Shape(**shape)
    trainer = tp.Pix2PixTrainer(s.in_channels, s.out_channels, s.num_downs, s.ngf, s.ndf,
                                s.n_layers, s.norm, s.dropout_blocks, device=device)
    a, b = tp.make_batch(s.batch, s.image_size, s.in_channels, s.out_channels, device)
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
             "g_params": tp.count_params(trainer.G), "d_params": tp.count_params(trainer.D)},
            run_steps, final)


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


def bench_shape(name: str, a, env: dict) -> dict:
    common = {"threads": a.threads, "warmup": a.warmup}
    g = Worker(sys.executable, {"side": "genjax", "name": name, **common}, env)
    shape = g.ready["shape"]
    print(f"{name}: {Shape(**shape).describe()}\n  genjax ({g.ready['version']}): first step "
          f"(compilation) {g.ready['first_step_s']:.1f} s, warm step "
          f"{g.ready['warm_step_s']:.3f} s; G {g.ready['g_params']:,} params, D "
          f"{g.ready['d_params']:,}", flush=True)
    t = Worker(a.torch_python, {"side": "torch", "shape": shape, "device": a.torch_device,
                                **common}, env)
    print(f"  torch ({t.ready['version']}, {t.ready['torch_threads']} threads): first step "
          f"{t.ready['first_step_s']:.1f} s, warm step {t.ready['warm_step_s']:.3f} s; G "
          f"{t.ready['g_params']:,} params, D {t.ready['d_params']:,}", flush=True)
    same_params = all(g.ready[k] == t.ready[k] for k in ("g_params", "d_params"))
    if not same_params:
        print("  ERROR: the parameter counts differ: the two sides are not the same "
              "architecture", flush=True)
    per_window = {w.side: max(1, round(a.window_seconds / w.ready["warm_step_s"]))
                  for w in (g, t)}
    pairs, waited = [], 0.0
    while (sum(not p["disturbed"] for p in pairs) < a.repeats
           and len(pairs) < 3 * a.repeats):
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
    quiet = [p for p in pairs if not p["disturbed"]]
    used = quiet if len(quiet) >= a.repeats else pairs
    summary = {"pairs_used": len(used), "pairs_run": len(pairs),
               "disturbed": len(quiet) < a.repeats, "waited_s": waited,
               "genjax_steps_per_sec": _spread([p["genjax"]["steps_per_sec"] for p in used]),
               "torch_steps_per_sec": _spread([p["torch"]["steps_per_sec"] for p in used]),
               "genjax_over_torch": _spread([p["ratio"] for p in used]),
               "others_cpu_max": max(max(p["genjax"]["foreign"], p["torch"]["foreign"])
                                     for p in used),
               "same_param_counts": same_params}
    return {"shape": shape, "genjax": {**g.ready, **g.stop()},
            "torch": {**t.ready, **t.stop()}, "steps_per_window": per_window,
            "pairs": pairs, "summary": summary}


def print_table(results: dict) -> None:
    head = ["shape", "genjax steps/s (min med max)", "torch steps/s (min med max)",
            "genjax/torch (min med max)", "pairs", "others' CPU max", "params G / D"]
    rows = [head]
    for name, r in results.items():
        s = r["summary"]

        def spread(d, f=".3f"):
            return f"{d['min']:{f}} {d['median']:{f}} {d['max']:{f}}"

        g = r["genjax"]
        rows.append([name, spread(s["genjax_steps_per_sec"]), spread(s["torch_steps_per_sec"]),
                     spread(s["genjax_over_torch"], ".2f"),
                     f"{s['pairs_used']}/{s['pairs_run']}" + (" disturbed" if s["disturbed"]
                                                               else ""),
                     f"{100 * s['others_cpu_max']:.0f}%",
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
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"from: {', '.join(SHAPES)}")
    p.add_argument("--torch_python", default="", help="an interpreter with torch and numpy "
                   "(e.g. /tmp/torchenv/bin/python); required")
    p.add_argument("--torch_device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="CPUs (and PyTorch threads) of both sides")
    p.add_argument("--repeats", type=int, default=5, help="quiet (genjax, torch) window pairs")
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
            {"command": "python bench/pix2pix.py " + " ".join(sys.argv[1:]),
             "cpus": os.cpu_count(), "threads": a.threads, "nice": os.nice(0),
             "args": {k: v for k, v in vars(a).items() if k != "_worker"},
             "results": results}, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
