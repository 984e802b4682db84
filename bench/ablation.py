"""Ablations of a family's recipes at the same budget and several seeds: the tables of
the README's family sections.

    python bench/ablation.py STUDY train    --out=DIR   # every recipe x seed
    python bench/ablation.py STUDY evaluate --out=DIR   # the task's own measurement
    python bench/ablation.py STUDY time     --out=DIR   # iterations/s (quiet machine!)
    python bench/ablation.py STUDY report   --out=DIR   # table.md and summary.json

Studies (STUDIES below):
- `cgan`: how D sees the label (concat / projection / AC-GAN), each with and without
  the matching-aware term, on configs/cgan.py; the 'conditional' measurement (label
  accuracy, overall FD, intra-class FD, diversity within a class, D's matched-vs-
  mismatched AUC on real test pairs) in the features of the evaluation classifier
  `--classifier`.
- `pix2pix` (grey -> colour photo patches, configs/pix2pix.py) and `pix2pix_digits`
  (4x4 -> 16x16 digits, configs/pix2pix_digits.py): the paper's Tables 1-2, L1 only /
  GAN only / L1 + GAN, and the U-Net against the same encoder-decoder without skips; the
  'translation' measurement (L1, PSNR, SSIM; colourfulness and Lab histogram overlap of
  the photographs; FD and the classifier's accuracy against the input's label of the
  digits).
- `cyclegan` (thin upright <-> thick slanted digits, configs/cyclegan.py): the paper's
  Table 4 at one budget, the full loss against no cycle (the GAN alone: the identity
  term, weighed λ·μ, goes with it), no identity term, no image pool, and one direction's
  cycle only (forward A->B->A, backward B->A->B); the 'unpaired' measurement (L1 and
  SSIM to the exact translations, the class kept (the accuracy against the source
  labels of an SVC that knows both styles), FD to the target domain in the evaluation
  classifier's features, slant, ink mass and cycle error) in both directions.

Phases:
- `train` runs `train.py --config=<the study's config>` with each recipe's overrides and
  seed for `--steps` iterations (every recipe the same), with evaluation during training
  off.
- `evaluate` measures the final checkpoint with the task's declared measurement
  (`python -m genjax.evaluate`'s protocol, `--num` images, seed 0).
- `time` runs each recipe exactly as a user would (`train.py`, fresh workdir) at two
  iteration counts, interleaved, and fits t(N) = start + N / rate (medians of the
  repeats): the whole command's wall time at the ablation's budget is start + steps/rate.
- `report` writes `table.md` and `summary.json` (means and ranges over seeds).

Quality and time are measured apart so that only `time` needs a quiet machine. The
recipes set every studied field explicitly, so they do not depend on the defaults of
the study's config at the time of running.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Study:
    config: str  # relative to the repository root
    recipes: dict  # name -> {config field: value}
    steps: int  # the default budget (iterations), the same for every recipe
    recipe_columns: tuple  # (header, config field) shown for each recipe
    columns: tuple  # (header, figure, digits) of the table
    figures: Callable[[dict], dict]  # a measurement's result -> {figure: value}
    floor: Callable[[dict], dict]  # ... -> the reference row's figures (or {})
    floor_label: str = "*reference*"
    needs_classifier: bool = True


def _conditional_figures(r: dict) -> dict:
    cond = r["conditional"]
    return {"fd": r["generated"]["fd"], "label_accuracy": cond["label_accuracy"],
            "intra_fd_mean": cond["intra_fd_mean"], "diversity_mean": cond["diversity_mean"],
            "d_match_auc": cond.get("d_match_auc")}


def _conditional_floor(r: dict) -> dict:
    cond = r["conditional"]
    return {"fd": r["floor"]["fd"], "intra_fd_mean": cond["floor"]["intra_fd_mean"],
            "diversity_mean": cond["floor"]["diversity_mean"],
            "label_accuracy": cond["real_accuracy"]}


def _translation_figures(r: dict) -> dict:
    return dict(r["outputs"])


def _translation_floor(r: dict) -> dict:
    return {k: v for k, v in r["targets"].items() if isinstance(v, (int, float))}


def _unpaired_figures(r: dict) -> dict:
    return {f"{direction}_{k}": v for direction in ("a2b", "b2a")
            for k, v in r[direction].items() if isinstance(v, float)}


def _unpaired_floor(r: dict) -> dict:
    out = {}
    for direction in ("a2b", "b2a"):
        row = r[direction]
        out.update({f"{direction}_l1": 0.0, f"{direction}_ssim": 1.0,
                    f"{direction}_cycle_error": 0.0,
                    f"{direction}_fd": row.get("fd_floor"),
                    f"{direction}_accuracy": row.get("exact_accuracy"),
                    f"{direction}_content_accuracy": row.get("exact_content_accuracy"),
                    f"{direction}_slant": row.get("target_slant"),
                    f"{direction}_ink": row.get("target_ink")})
    return out


# The paper's Tables 1-2 (Isola et al. 2017): the loss and the generator's skips.
PIX2PIX_RECIPES = {
    "l1": {"gan_weight": 0.0, "l1_weight": 100.0, "model.skips": True},
    "gan": {"gan_weight": 1.0, "l1_weight": 0.0, "model.skips": True},
    "l1_gan": {"gan_weight": 1.0, "l1_weight": 100.0, "model.skips": True},
    "encdec_l1": {"gan_weight": 0.0, "l1_weight": 100.0, "model.skips": False},
    "encdec_l1_gan": {"gan_weight": 1.0, "l1_weight": 100.0, "model.skips": False},
}
PIX2PIX_RECIPE_COLUMNS = (("G's losses: adversarial weight", "gan_weight"),
                          ("L1 weight", "l1_weight"), ("U-Net skips", "model.skips"))

STUDIES = {
    "cgan": Study(
        config="configs/cgan.py",
        # configs/cgan.py supplies the rest: 16x16 digits, widths 64/32, both lr 2e-4
        recipes={f"{conditioning}_w{weight:g}": {"model.conditioning": conditioning,
                                                 "matching_weight": weight}
                 for conditioning in ("concat", "projection", "acgan")
                 for weight in (0.0, 0.5)},
        steps=2000,
        recipe_columns=(("D conditioning", "model.conditioning"),
                        ("matching weight", "matching_weight")),
        columns=(("label accuracy", "label_accuracy", 3), ("FD", "fd", 2),
                 ("intra-class FD", "intra_fd_mean", 2), ("diversity", "diversity_mean", 2),
                 ("D's matched/mismatched AUC", "d_match_auc", 3)),
        figures=_conditional_figures, floor=_conditional_floor,
        floor_label="*real test digits (floor)*"),
    "pix2pix": Study(
        config="configs/pix2pix.py", recipes=PIX2PIX_RECIPES, steps=800,
        recipe_columns=PIX2PIX_RECIPE_COLUMNS,
        columns=(("L1", "l1", 3), ("PSNR", "psnr", 2), ("SSIM", "ssim", 3),
                 ("colourfulness / targets'", "colourfulness_ratio", 2),
                 ("Lab a overlap", "lab_a_intersection", 2),
                 ("Lab b overlap", "lab_b_intersection", 2)),
        figures=_translation_figures, floor=_translation_floor,
        floor_label="*true colours*", needs_classifier=False),
    "pix2pix_digits": Study(
        config="configs/pix2pix_digits.py", recipes=PIX2PIX_RECIPES, steps=1000,
        recipe_columns=PIX2PIX_RECIPE_COLUMNS,
        columns=(("L1", "l1", 3), ("PSNR", "psnr", 2), ("SSIM", "ssim", 3), ("FD", "fd", 2),
                 ("classifier accuracy", "accuracy", 3)),
        figures=_translation_figures, floor=_translation_floor,
        floor_label="*real 16x16 digits*"),
    "cyclegan": Study(
        config="configs/cyclegan.py",
        # The paper's Table 4 (Zhu et al. 2017); configs/cyclegan.py supplies the rest.
        recipes={name: {"cycle_weight": cycle_weight, "identity_weight": identity,
                        "pool_size": pool, "cycle": cycle}
                 for name, cycle_weight, identity, pool, cycle in (
                     ("full", 10.0, 0.5, 50, "both"),
                     ("no_cycle", 0.0, 0.5, 50, "both"),
                     ("no_identity", 10.0, 0.0, 50, "both"),
                     ("no_pool", 10.0, 0.5, 0, "both"),
                     ("forward_cycle", 10.0, 0.5, 50, "forward"),
                     ("backward_cycle", 10.0, 0.5, 50, "backward"))},
        steps=2000,
        recipe_columns=(("cycle λ", "cycle_weight"), ("identity μ", "identity_weight"),
                        ("pool", "pool_size"), ("cycles", "cycle")),
        columns=(("a→b L1", "a2b_l1", 3), ("b→a L1", "b2a_l1", 3),
                 ("a→b SSIM", "a2b_ssim", 2), ("b→a SSIM", "b2a_ssim", 2),
                 ("a→b class kept", "a2b_content_accuracy", 3),
                 ("b→a class kept", "b2a_content_accuracy", 3),
                 ("a→b FD", "a2b_fd", 2), ("b→a FD", "b2a_fd", 2),
                 ("a→b slant", "a2b_slant", 2), ("a→b ink", "a2b_ink", 0),
                 ("b→a ink", "b2a_ink", 0),
                 ("a→b→a cycle error", "a2b_cycle_error", 3),
                 ("b→a→b cycle error", "b2a_cycle_error", 3)),
        figures=_unpaired_figures, floor=_unpaired_floor,
        floor_label="*exact translations / real target digits*"),
}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _command(study: Study, recipe: dict, workdir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / study.config}",
            f"--workdir={workdir}", *[f"--config.{k}={v}" for k, v in recipe.items()],
            "--config.eval_every_steps=0", *extra]


def train(study: Study, args) -> None:
    for seed in args.seeds:  # seed-major: a stopped study has every recipe at seed 0 first
        for name in args.recipes:
            workdir = args.out / "runs" / f"{name}_s{seed}"
            if (workdir / "done").exists():
                continue
            extra = [f"--config.seed={seed}", f"--config.num_train_steps={args.steps}",
                     f"--config.checkpoint_every_steps={args.steps}",
                     f"--config.sample_every_steps={args.steps}",
                     f"--config.log_every_steps={max(1, args.steps // 10)}"]
            print(f"== train {name} seed {seed}: {args.steps} iterations", flush=True)
            start = time.perf_counter()
            with open(args.out / f"train_{name}_s{seed}.log", "w") as log:
                code = subprocess.run(_command(study, study.recipes[name], workdir, extra),
                                      stdout=log, stderr=subprocess.STDOUT,
                                      env=_env()).returncode
            if code:
                print(f"   failed (exit {code}), see {log.name}", flush=True)
            else:
                (workdir / "done").write_text(f"{time.perf_counter() - start:.1f}\n")


def evaluate(study: Study, args) -> None:
    sys.path.insert(0, str(ROOT))
    from genjax.evaluate.evaluator import evaluate_workdir
    from genjax.evaluate.extractors import load_extractor

    extractor = (load_extractor(f"classifier:{args.classifier}")
                 if study.needs_classifier else None)
    path = args.out / "quality.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for seed in args.seeds:
        for name in args.recipes:
            workdir = args.out / "runs" / f"{name}_s{seed}"
            key = f"{name}/{seed}"
            if key in results or not (workdir / "done").exists():
                continue
            r = evaluate_workdir(workdir, num=args.num, seed=0, extractor=extractor,
                                 write=False)
            results[key] = {"step": r["step"], **study.figures(r)}
            results.setdefault("floor", study.floor(r))
            print(key, {k: round(v, 3) for k, v in results[key].items() if v is not None},
                  flush=True)
            path.write_text(json.dumps(results, indent=1))


def _timed(study: Study, recipe: dict, steps: int, workdir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(_command(study, recipe, workdir, [f"--config.num_train_steps={steps}",
                                                     f"--config.checkpoint_every_steps={steps}",
                                                     f"--config.sample_every_steps={steps}"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=_env())
    return time.perf_counter() - start


def time_recipes(study: Study, args) -> None:
    import shutil

    path = args.out / "timing.json"
    timing = json.loads(path.read_text()) if path.exists() else {}
    for _ in range(args.repeats):
        for name in args.recipes:
            for steps in (args.short, args.long):
                workdir = args.out / "timing_runs" / name
                shutil.rmtree(workdir, ignore_errors=True)
                seconds = _timed(study, study.recipes[name], steps, workdir)
                timing.setdefault(name, {}).setdefault(str(steps), []).append(seconds)
                print(f"{name} {steps} iterations: {seconds:.1f} s", flush=True)
                path.write_text(json.dumps(timing, indent=1))


def fit(runs: dict) -> tuple[float, float]:
    """(start seconds, iterations per second) of t(N) = start + N / rate through the
    medians at the two lengths."""
    (n1, t1), (n2, t2) = sorted((int(n), statistics.median(ts)) for n, ts in runs.items())
    rate = (n2 - n1) / (t2 - t1)
    return t1 - n1 / rate, rate


def _span(values) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "n": len(values)}


def _cell(span: dict, digits: int) -> str:
    if span["mean"] is None:
        return "-"
    if span["n"] == 1 or round(span["min"], digits) == round(span["max"], digits):
        return f"{span['mean']:.{digits}f}"
    return f"{span['min']:.{digits}f}–{span['max']:.{digits}f}"


def report(study: Study, args) -> None:
    quality = json.loads((args.out / "quality.json").read_text())
    timing_path = args.out / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    floor = quality.get("floor", {})
    summary = {"config": study.config, "steps": args.steps, "num": args.num, "floor": floor,
               "recipes": {}}
    for name in args.recipes:
        rows = {k: v for k, v in quality.items() if k.split("/")[0] == name}
        entry = {figure: _span(r.get(figure) for r in rows.values())
                 for _, figure, _ in study.columns}
        entry["overrides"] = study.recipes[name]
        entry["seeds"] = sorted(int(k.split("/")[1]) for k in rows)
        if name in timing and len(timing[name]) == 2:
            start, rate = fit(timing[name])
            entry.update(iterations_per_second=rate, start_seconds=start,
                         command_seconds=start + args.steps / rate)
        summary["recipes"][name] = entry
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))

    headers = [h for h, _ in study.recipe_columns] + [h for h, _, _ in study.columns]
    headers += ["seeds", "it/s", "command s"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name in args.recipes:
        e = summary["recipes"][name]
        recipe = study.recipes[name]
        cells = [f"{recipe[field]:g}" if isinstance(recipe[field], float) else str(recipe[field])
                 for _, field in study.recipe_columns]
        cells += [_cell(e[figure], digits) for _, figure, digits in study.columns]
        cells.append(str(len(e["seeds"])))
        cells += ([f"{e['iterations_per_second']:.1f}", f"{e['command_seconds']:.0f}"]
                  if "iterations_per_second" in e else ["-", "-"])
        lines.append("| " + " | ".join(cells) + " |")
    if floor:
        cells = [study.floor_label] + [""] * (len(study.recipe_columns) - 1)
        cells += [f"{floor[figure]:.{digits}f}" if floor.get(figure) is not None else ""
                  for _, figure, digits in study.columns]
        lines.append("| " + " | ".join(cells + ["", "", ""]) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("phase", choices=("train", "evaluate", "time", "report"))
    parser.add_argument("--out", type=Path, default=None,
                        help="Directory of the study's runs and results (default: ablation_STUDY).")
    parser.add_argument("--recipes", nargs="*", default=None)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--classifier", default="runs/classifier_digits")
    parser.add_argument("--short", type=int, default=50)
    parser.add_argument("--long", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    study = STUDIES[args.study]
    args.out = args.out or Path(f"ablation_{args.study}")
    args.recipes = args.recipes or list(study.recipes)
    args.steps = args.steps or study.steps
    args.out.mkdir(parents=True, exist_ok=True)
    unknown = set(args.recipes) - set(study.recipes)
    if unknown:
        parser.error(f"unknown recipes {sorted(unknown)}; known: {list(study.recipes)}")
    {"train": train, "evaluate": evaluate, "time": time_recipes,
     "report": report}[args.phase](study, args)


if __name__ == "__main__":
    main()
