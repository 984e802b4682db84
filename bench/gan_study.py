"""Quality per second of wall time of GAN recipes on the embedded digits: the study
behind configs/dcgan.py's defaults.

    python bench/gan_study.py train    --out=study      # every recipe x seed, checkpoints
    python bench/gan_study.py evaluate --out=study      # FD of every checkpoint (EMA and raw)
    python bench/gan_study.py time     --out=study      # wall time of each recipe (quiet machine!)
    python bench/gan_study.py report   --out=study      # table + FD-against-seconds plot

Quality is measured by step and time by recipe, separately, so that only the `time`
phase needs a quiet machine:

- `train` runs `train.py --config=configs/dcgan.py` with each recipe's overrides and
  seed, saving a checkpoint every `--every` seconds' worth of steps (all kept).
- `evaluate` measures each checkpoint with genjax.evaluate's generative protocol (FD,
  precision, recall, IS in the evaluation classifier's features, `--num` generated
  images against the test split), for the EMA generator and the raw one.
- `time` runs each recipe exactly as a user would (`train.py` with the recipe's
  overrides, a fresh workdir, the config's own logging, pictures and checkpoints) for
  two step counts, `--repeats` times each, interleaved, and fits the whole command's
  wall time (process start to exit: imports, data preparation, compilation, the loop,
  the final save) as t(N) = start + N / rate, per recipe (medians of the repeats).
- `report` puts them together: the FD of each checkpoint at the wall time the command
  would have taken to reach it, the best FD within `--budget` seconds per recipe (mean
  and range over seeds), and `fd_vs_seconds.png`.

The recipes' overrides set every studied field explicitly, so they do not depend on
the defaults of configs/dcgan.py at the time of running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The fields every recipe sets (the DCGAN config before this study, at 16x16).
BASE = {"image_size": 16, "model.g_width": 64, "model.d_width": 32, "model.d_dropout": 0.3,
        "g_learning_rate": 2e-4, "d_learning_rate": 5e-5, "batch_size": 64,
        "augment": "", "r1_weight": 0.0, "model.d_norm": "batch", "ema_decay": 0.999}
PLAIN32 = {**BASE, "image_size": 32, "model.g_width": 32, "model.d_dropout": 0.0,
           "d_learning_rate": 2e-4}
PLAIN16 = {**BASE, "model.d_dropout": 0.0, "d_learning_rate": 2e-4}
DA = "translation,cutout"

# name: (overrides, steps trained for the quality phase: a little more than 300 s' worth)
RECIPES = {
    "old16": (BASE, 6000),  # the default before this study
    "plain16": (PLAIN16, 6000),
    "plain32": (PLAIN32, 2400),
    "plain32_da": ({**PLAIN32, "augment": DA}, 2400),
    "plain32_sn": ({**PLAIN32, "model.d_norm": "spectral"}, 2400),
    # gamma as StyleGAN2-ADA's CIFAR-10 (32x32) setting
    "plain32_r1": ({**PLAIN32, "r1_weight": 0.01}, 2400),
    "plain32_lr": ({**PLAIN32, "g_learning_rate": 4e-4, "d_learning_rate": 4e-4}, 2400),
}


def overrides(recipe: dict) -> list[str]:
    return [f"--config.{k}={v}" for k, v in recipe.items()]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _command(recipe: dict, workdir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs/dcgan.py'}",
            f"--workdir={workdir}", *overrides(recipe), *extra]


def train(args) -> None:
    for name in args.recipes:
        recipe, steps = RECIPES[name]
        every = max(50, int(round(steps / args.points / 50)) * 50)
        for seed in args.seeds:
            workdir = args.out / "runs" / f"{name}_s{seed}"
            done = workdir / "done"
            if done.exists():
                continue
            extra = [f"--config.seed={seed}", f"--config.num_train_steps={steps}",
                     f"--config.checkpoint_every_steps={every}",
                     "--config.keep_checkpoints=1000", f"--config.sample_every_steps={steps}",
                     f"--config.log_every_steps={every}",
                     f"--config.eval.classifier_workdir={args.classifier}"]
            print(f"== train {name} seed {seed}: {steps} steps", flush=True)
            with open(args.out / f"train_{name}_s{seed}.log", "w") as log:
                code = subprocess.run(_command(recipe, workdir, extra), stdout=log,
                                      stderr=subprocess.STDOUT, env=_env()).returncode
            if code:
                print(f"   failed (exit {code}), see {log.name}", flush=True)
            else:
                done.write_text("")


def evaluate(args) -> None:
    sys.path.insert(0, str(ROOT))
    from genjax.checkpoint import Checkpoints
    from genjax.evaluate.evaluator import evaluate_workdir
    from genjax.evaluate.extractors import load_extractor

    extractor = load_extractor(f"classifier:{args.classifier}")
    path = args.out / "quality.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.recipes:
        for seed in args.seeds:
            workdir = args.out / "runs" / f"{name}_s{seed}"
            if not (workdir / "done").exists():
                continue
            ckpts = Checkpoints(workdir / "checkpoints", read_only=True)
            steps = ckpts.all_steps()
            ckpts.close()
            for step in steps:
                for which in args.generators:
                    key = f"{name}/{seed}/{step}/{which}"
                    if key in results:
                        continue
                    r = evaluate_workdir(workdir, num=args.num, seed=0, extractor=extractor,
                                         step=step, generator=which, write=False)
                    results[key] = {k: r["generated"][k]
                                    for k in ("fd", "precision", "recall", "is")}
                    results[key]["eval_seconds"] = r["seconds"]
                    results.setdefault("floor", {k: r["floor"][k] for k in ("fd", "recall")})
                    print(key, {k: round(v, 3) for k, v in results[key].items()}, flush=True)
                    path.write_text(json.dumps(results, indent=1))


def _timed(recipe: dict, steps: int, workdir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(_command(recipe, workdir, [f"--config.num_train_steps={steps}"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=_env())
    return time.perf_counter() - start


def time_recipes(args) -> None:
    import shutil

    path = args.out / "timing.json"
    timing = json.loads(path.read_text()) if path.exists() else {}
    scratch = args.out / "timing_runs"
    for repeat in range(args.repeats):
        for name in args.recipes:
            recipe = RECIPES[name][0]
            for steps in (args.short, args.long):
                workdir = scratch / f"{name}_{steps}"
                shutil.rmtree(workdir, ignore_errors=True)
                seconds = _timed(recipe, steps, workdir)
                shutil.rmtree(workdir, ignore_errors=True)
                timing.setdefault(name, {}).setdefault(str(steps), []).append(seconds)
                print(f"time {name} {steps} steps: {seconds:.1f}s", flush=True)
                path.write_text(json.dumps(timing, indent=1))


def fit(runs: dict) -> tuple[float, float]:
    """(start seconds, steps per second) from {steps: [seconds, ...]} at two step counts."""
    (n1, t1), (n2, t2) = sorted((int(n), statistics.median(t)) for n, t in runs.items())[:2]
    rate = (n2 - n1) / (t2 - t1)
    return t1 - n1 / rate, rate


def report(args) -> None:
    quality = json.loads((args.out / "quality.json").read_text())
    timing = json.loads((args.out / "timing.json").read_text())
    curves = {}  # (recipe, which) -> {seed: [(seconds, step, fd)]}
    floor = quality.pop("floor", None)
    for key, r in quality.items():
        name, seed, step, which = key.split("/")
        if name not in timing:
            continue
        start, rate = fit(timing[name])
        curves.setdefault((name, which), {}).setdefault(seed, []).append(
            (start + int(step) / rate, int(step), r["fd"], r["precision"], r["recall"]))
    rows = []
    for (name, which), seeds in sorted(curves.items()):
        start, rate = fit(timing[name])
        best = []
        for points in seeds.values():
            within = [p for p in sorted(points) if p[0] <= args.budget]
            if within:
                best.append(min(within, key=lambda p: p[2]))
        if not best:
            continue
        fds = [b[2] for b in best]
        rows.append({"recipe": name, "generator": which, "seeds": len(best),
                     "start_s": round(start, 1), "steps_per_s": round(rate, 1),
                     "best_fd_mean": round(statistics.mean(fds), 2),
                     "best_fd_range": [round(min(fds), 2), round(max(fds), 2)],
                     "at_steps": [b[1] for b in best], "at_seconds": [round(b[0]) for b in best],
                     "precision": [round(b[3], 2) for b in best],
                     "recall": [round(b[4], 2) for b in best]})
    rows.sort(key=lambda r: r["best_fd_mean"])
    (args.out / "report.json").write_text(json.dumps(rows, indent=1))
    print(f"Best FD within {args.budget:.0f} s (start-up included), per recipe and generator:")
    print(f"{'recipe':<16}{'gen':<5}{'start s':>8}{'steps/s':>8}{'FD mean':>9}  range"
          "        steps         precision    recall")
    for r in rows:
        print(f"{r['recipe']:<16}{r['generator']:<5}{r['start_s']:>8}{r['steps_per_s']:>8}"
              f"{r['best_fd_mean']:>9}  {str(r['best_fd_range']):<13}{str(r['at_steps']):<14}"
              f"{str(r['precision']):<13}{r['recall']}")
    _plot(curves, args)


def _plot(curves, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    names = [n for n in args.plot if any(k[0] == n for k in curves)]
    for i, name in enumerate(names):
        seeds = curves.get((name, "ema"), {})
        for j, points in enumerate(seeds.values()):
            points = sorted(points)
            ax.plot([p[0] for p in points], [p[2] for p in points], color=f"C{i}",
                    alpha=0.9 if j == 0 else 0.5, label=name if j == 0 else None,
                    marker=".")
    ax.axvline(args.budget, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("wall time of the whole command on 2 CPU cores (s, start-up included)")
    ax.set_ylabel("FD on the test split (lower is better)")
    ax.set_yscale("log")
    ticks = [5, 6, 8, 10, 15, 20, 30, 40]
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_title("DCGAN recipes on the embedded digits: FD against seconds (EMA generator)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "fd_vs_seconds.png")
    print(f"wrote {args.out / 'fd_vs_seconds.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phase", choices=("train", "evaluate", "time", "report"))
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--points", type=int, default=12, help="checkpoints per run")
    parser.add_argument("--classifier", default="runs/classifier_digits")
    parser.add_argument("--num", type=int, default=0,
                        help="generated images per evaluation (0: the protocol's default)")
    parser.add_argument("--generators", nargs="+", default=["ema", "raw"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=600)
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--plot", nargs="+", default=["old16", "plain16", "plain32",
                                                     "plain32_da", "plain32_sn", "plain32_r1"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    {"train": train, "evaluate": evaluate, "time": time_recipes, "report": report}[args.phase](args)


if __name__ == "__main__":
    main()
