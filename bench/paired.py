"""The machinery of a paired speed bench, genjax against PyTorch side by side in one run
(bench/pix2pix.py, bench/cyclegan.py): each bench supplies its shapes and the two sides'
workers; this module runs them.

Each side is a fresh worker process (the bench's own script with --_worker, under this
interpreter for genjax and --torch_python for torch) that builds its models, warms up,
prints READY and then serves timed windows. The driver alternates a window of genjax steps
and a window of torch steps, --repeats pairs in all. A window is about --window_seconds of
steps (counted from each side's own warm step time, at least one step) ended by a wait for
the results. For every window the share of the machine's CPU time other processes used is
measured (/proc/stat minus the worker's own CPU time, as bench/windows.py); a pair with a
window above 5% is disturbed and another pair is run in its place, after waiting up to
--quiet_wait s for quiet, until --repeats quiet pairs or --max_pairs (3·--repeats) pairs
in all. The figures: min / median / max of each side's steps/s, own CPU-seconds per step
and of the pair-by-pair ratios genjax/torch (> 1: genjax faster), over the quiet pairs
(over all pairs, marked disturbed, when fewer than --repeats were quiet).

Standard library only at import time: the torch worker imports it too.
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
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = pathlib.Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
from windows import foreign_fraction, wait_for_quiet  # noqa: E402  (stdlib only)

MAX_FOREIGN = 0.05  # A window in which other processes used more of the CPU is disturbed.
SIDES = ("genjax", "torch")


@dataclasses.dataclass(frozen=True)
class Bench:
    """What one paired bench supplies.

    script          the bench's file (its workers run it with --_worker)
    doc             its module docstring (the --help text)
    shapes          the shapes it knows; default_shapes those run without --shapes
    shape_cls       the dataclass a shape's dict (READY "shape") builds, with describe()
    genjax_worker   name -> (ready info, run_steps(k), final()) under this interpreter
    torch_worker    (shape dict, device) -> the same, under --torch_python
    param_keys      the parameter counts both sides report; they must agree
    genjax_ready    READY info -> what follows the warm step time in genjax's line
    torch_ready     READY info -> the same for torch
    columns         extra (head, result -> cell) table columns, before the params column
    """

    script: pathlib.Path
    doc: str
    shapes: tuple
    default_shapes: tuple
    shape_cls: type
    genjax_worker: Callable
    torch_worker: Callable
    param_keys: tuple
    genjax_ready: Callable[[dict], str]
    torch_ready: Callable[[dict], str]
    columns: tuple = ()


# --- The workers --------------------------------------------------------------------------

def repo_config(name: str):
    """configs/<name>.py's config as it is, through genjax's generic check on one device."""
    import importlib.util

    from genjax import tasks

    spec = importlib.util.spec_from_file_location(f"_{name}_config",
                                                  ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    tasks.validate(config, num_devices=1)
    return config


def param_count(tree) -> int:
    """Parameters in a JAX pytree."""
    import jax

    return int(sum(x.size for x in jax.tree.leaves(tree)))


def genjax_steps(step, state, batch):
    """run_steps(k) of a compiled genjax step on a fixed batch (it waits for the results),
    and the holder of the latest state and metrics."""
    import jax

    holder = {"state": state, "metrics": None}

    def run_steps(k: int) -> None:
        for _ in range(k):
            holder["state"], holder["metrics"] = step(holder["state"], batch)
        jax.block_until_ready((holder["state"], holder["metrics"]))

    return run_steps, holder


def final_losses(holder: dict, keys: tuple) -> Callable[[], dict]:
    """final() of a genjax worker: the last step's metrics named in `keys`."""
    import numpy as np

    def final() -> dict:
        return {"losses": {k: float(np.asarray(v)[0]) for k, v in holder["metrics"].items()
                           if k in keys}}

    return final


def torch_side(trainer, a, b, shape: dict, counts: dict):
    """A torch worker around `trainer.train_step(a, b)` -> (d_loss, g_loss): runs the
    first step and returns (ready info, run_steps, final)."""
    import torch

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
             "torch_threads": torch.get_num_threads(), **counts}, run_steps, final)


def _own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker_main(bench: Bench, spec: str) -> None:
    """A worker: build, warm up, print READY; then serve 'RUN k' lines with one timed
    window each (WINDOW line) until 'STOP' (FINAL line)."""
    a = json.loads(spec)
    threads = a["threads"]
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    if a["side"] == "torch":
        import torch
        torch.set_num_threads(threads)
        info, run_steps, final = bench.torch_worker(a["shape"], a.get("device", "cpu"))
    else:
        info, run_steps, final = bench.genjax_worker(a["name"])
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
    """A worker subprocess of `script` driven line by line."""

    def __init__(self, script: pathlib.Path, python: str, spec: dict, env: dict):
        self.side = spec["side"]
        self.proc = subprocess.Popen(
            [python, str(script), "--_worker", json.dumps(spec)],
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
    cpu = {side: [cpu_seconds_per_step(p[side]) for p in used] for side in SIDES}
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


def bench_shape(bench: Bench, name: str, a, env: dict) -> dict:
    common = {"threads": a.threads, "warmup": a.warmup}
    g = Worker(bench.script, sys.executable, {"side": "genjax", "name": name, **common}, env)
    shape = g.ready["shape"]
    print(f"{name}: {bench.shape_cls(**shape).describe()}\n  genjax ({g.ready['version']}): "
          f"first step (compilation) {g.ready['first_step_s']:.1f} s, warm step "
          f"{g.ready['warm_step_s']:.3f} s{bench.genjax_ready(g.ready)}", flush=True)
    t = Worker(bench.script, a.torch_python, {"side": "torch", "shape": shape,
                                              "device": a.torch_device, **common}, env)
    print(f"  torch ({t.ready['version']}, {t.ready['torch_threads']} threads): first step "
          f"{t.ready['first_step_s']:.1f} s, warm step {t.ready['warm_step_s']:.3f} s"
          f"{bench.torch_ready(t.ready)}", flush=True)
    same_params = all(g.ready[k] == t.ready[k] for k in bench.param_keys)
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
        pair["disturbed"] = any(pair[s]["foreign"] > MAX_FOREIGN for s in SIDES)
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


def _spread_cell(d: dict, f: str = ".3f") -> str:
    return f"{d['min']:{f}} {d['median']:{f}} {d['max']:{f}}"


def print_table(bench: Bench, results: dict) -> None:
    head = ["shape", "genjax steps/s (min med max)", "torch steps/s (min med max)",
            "genjax/torch (min med max)", "CPU-s/step genjax, torch (med)",
            "genjax/torch per CPU-s (min med max)", "pairs", "others' CPU max",
            *(h for h, _ in bench.columns), "params G / D" + (" (each)" if len(
                bench.param_keys) > 2 else "")]
    rows = [head]
    for name, r in results.items():
        s = r["summary"]
        g = r["genjax"]
        rows.append([name, _spread_cell(s["genjax_steps_per_sec"]),
                     _spread_cell(s["torch_steps_per_sec"]),
                     _spread_cell(s["genjax_over_torch"], ".2f"),
                     f"{s['genjax_cpu_s_per_step']['median']:.3g}, "
                     f"{s['torch_cpu_s_per_step']['median']:.3g}",
                     _spread_cell(s["genjax_over_torch_per_cpu_s"], ".2f"),
                     f"{s['pairs_used']}/{s['pairs_run']}" + (" disturbed" if s["disturbed"]
                                                               else ""),
                     f"{100 * s['others_cpu_max']:.0f}%",
                     *(cell(r) for _, cell in bench.columns),
                     (f"{g['g_params']:,} / {g['d_params']:,}" if s["same_param_counts"]
                      else "DIFFER")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(bench: Bench, argv=None) -> None:
    p = argparse.ArgumentParser(description=bench.doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(bench.default_shapes),
                   help=f"from: {', '.join(bench.shapes)}")
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
        worker_main(bench, a._worker)
        return
    shapes = [x.strip() for x in a.shapes.split(",") if x.strip()]
    if any(x not in bench.shapes for x in shapes):
        p.error(f"unknown shape in {a.shapes!r}; choose from {', '.join(bench.shapes)}")
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
    results = {name: bench_shape(bench, name, a, env) for name in shapes}
    print()
    print_table(bench, results)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if a.json:
        script = bench.script.relative_to(ROOT).as_posix()
        pathlib.Path(a.json).write_text(json.dumps(
            {"command": f"python {script} " + " ".join(sys.argv[1:]),
             "cpus": os.cpu_count(), "threads": a.threads, "nice": os.nice(0),
             "args": {k: v for k, v in vars(a).items() if k != "_worker"},
             "results": results}, indent=2))
        print(f"wrote {a.json}")
