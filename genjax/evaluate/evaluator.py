"""Runs the evaluators a task declares, by name: in the training loop and from a workdir.

A task's `evaluators` are `{name: Evaluation(measure, functions, options)}`
(`genjax.tasks.Evaluation`, as big_vision's `config.evals`): `measure` names one of
`MEASURES` below, which is built once per run from the config, the task's `data_spec` and
the entry's options (the real images are read then), and called with the entry's task
functions and a host state. Measurements never read a state's layout; they call the task
functions they are given. A new family declares entries over these measurements (or
adds a measurement here); nothing dispatches on the task's name.

Results go to <workdir>/eval/: the first evaluator a task declares writes
step_<step, 6 digits>.json (step_<step>_raw.json for --generator=raw), each further one
<name>_step_<step>.json; an entry with the option 'final' also writes its last step's
result under that name (the classifier's eval/classifier.json).

Each measurement declares its `quality`, the one figure by which the training loop keeps
a run's best checkpoint (`genjax.checkpoint.Quality`): 'generative' the Fréchet distance
(lower is better), 'classification' the accuracy, 'autoencoding' a VAE's IWAE bound and
an autoencoder's PSNR (higher is better), 'translation' the mean L1 distance of the
outputs to the targets (lower is better), 'captions' the rate of generated images whose
measured attributes are all right on the test captions (higher is better), 'retrieval'
the mean recall@1 of caption -> image and image -> caption (higher is better). The
first evaluator a task declares decides.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable

import ml_collections

from genjax import tasks as tasks_lib
from genjax.checkpoint import Quality
from genjax.errors import ConfigError
from genjax.evaluate.extractors import Extractor, has_classifier
from genjax.evaluate.generative import default_classifier_workdir, eval_settings
from genjax.run import load_run

# Measurement name -> its class, 'module:Class', imported when a task declares it (the
# autoencoding measures pull in scikit-learn, which a GAN run need not load). Each class
# has `from_entry(config, spec, entry, **overrides)`, `__call__(functions, state, step)
# -> result`, the result's `kind`, `scalars(result)`, `table(result)`, and `quality`
# (a Quality over its scalars, or None for a measurement with no single figure).
MEASURES = {"generative": "genjax.evaluate.generative:GenerativeEvaluator",
            "classification": "genjax.evaluate.generative:ClassifierEvaluator",
            "autoencoding": "genjax.evaluate.autoencoding:AutoencoderEvaluator",
            "conditional": "genjax.evaluate.conditional:ConditionalEvaluator",
            "translation": "genjax.evaluate.translation:TranslationEvaluator",
            "unpaired": "genjax.evaluate.unpaired:UnpairedEvaluator",
            "captions": "genjax.evaluate.captions:CaptionsEvaluator",
            "retrieval": "genjax.evaluate.captions:RetrievalEvaluator"}
_KINDS = {"generative": "generative", "classification": "classification",
          "autoencoder": "autoencoding", "conditional": "conditional"}  # a result's kind -> the measurement that made it


def measurement(name: str):
    """The class of the measurement `name` (a key of MEASURES)."""
    module, _, cls = MEASURES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build(config: ml_collections.ConfigDict, task, **overrides) -> list[tuple[str, Any, Any]]:
    """[(name, measurement, entry)] of the task's declared evaluators, in their order.
    `overrides` (extractor, extractor_workdir, num, seed, generator) come from the
    command line; a measurement takes those it knows."""
    spec = tasks_lib.data_spec(config)
    out = []
    for name, entry in task.evaluators.items():
        if entry.measure not in MEASURES:
            raise ConfigError(f"Task {task.name!r} declares the evaluator {name!r} with the "
                              f"measurement {entry.measure!r}, which genjax.evaluate does not "
                              f"have; it has: {', '.join(MEASURES)}.")
        built = measurement(entry.measure).from_entry(config, spec, entry, **overrides)
        out.append((name, built, entry))
    return out


def _measurement_of(result: dict):
    """The class of the measurement that made `result` (a kind named as its measure
    needs no entry in _KINDS)."""
    return measurement(_KINDS.get(result["kind"], result["kind"]))


def scalars(result: dict) -> dict[str, float]:
    """TensorBoard scalars of a result (eval/<metric>, ...), by its kind."""
    return _measurement_of(result).scalars(result)


def table(result: dict) -> str:
    """The printed summary of a result, by its kind."""
    return _measurement_of(result).table(result)


def result_name(index: int, name: str, result: dict) -> str:
    raw = "_raw" if result.get("protocol", {}).get("generator") == "raw" else ""
    prefix = "" if index == 0 else f"{name}_"
    return f"{prefix}step_{result['step']:06d}{raw}.json"


def write_result(workdir, result: dict, name: str | None = None) -> Path:
    """<workdir>/eval/<name>, written atomically (default: step_<step, 6 digits>.json,
    like the sample grids; step_<step>_raw.json for the raw generator)."""
    folder = Path(workdir) / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or result_name(0, "", result))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def write_best(workdir, best: dict) -> Path:
    """<workdir>/eval/best.json, written atomically: the best checkpoint's step, figure
    (metric, value, mode 'min'/'max') and where its checkpoint and evaluation are."""
    step = best["step"]
    record = {**best, "checkpoint": f"checkpoints/{step}",
              "eval": f"eval/{result_name(0, '', {'step': step})}"}
    return write_result(workdir, record, "best.json")


def _run_all(evaluators, state, step: int, workdir, last_step: int | None,
             write: bool = True, extra: dict | None = None) -> list[dict]:
    results = []
    for index, (name, measurement, entry) in enumerate(evaluators):
        result = measurement(entry.functions, state, step)
        result.update(extra or {})
        if write:
            result["path"] = str(write_result(workdir, result, result_name(index, name, result)))
            final = entry.options.get("final")
            if final and step == last_step:
                write_result(workdir, result, final)
        results.append(result)
    return results


def _needs_classifier(measure_class, config) -> bool:
    """A measurement's `needs_classifier`: a constant, or a function of the config (the
    'translation' measurement needs one for the digits, none for photographs)."""
    needs = getattr(measure_class, "needs_classifier", False)
    return bool(needs(config) if callable(needs) else needs)


def missing_classifier(config: ml_collections.ConfigDict, task, *, extractor_workdir=None,
                       extractor: Extractor | None = None) -> Path | None:
    """Where the default evaluation classifier belongs, when the task's evaluators need one
    (a measurement with `needs_classifier`), nobody named one (no `extractor`,
    `extractor_workdir` or eval.classifier_workdir) and none is trained there yet; else
    None. A named classifier that is missing stays an error (`ClassifierExtractor.
    from_workdir`): the user said which one to use."""
    if extractor is not None or extractor_workdir or eval_settings(config)["classifier_workdir"]:
        return None
    if not any(entry.measure in MEASURES and _needs_classifier(measurement(entry.measure),
                                                               config)
               for entry in task.evaluators.values()):
        return None
    where = default_classifier_workdir(config)
    return None if has_classifier(where) else where


class LoopEvaluator:
    """The loop's evaluation hook: called with a host state and its step, it runs the
    task's evaluators, writes their results under <workdir>/eval/ and returns their
    scalars. `quality` is the figure of the first evaluator (None if it has none)."""

    def __init__(self, evaluators, workdir, last_step: int):
        self.evaluators, self.workdir, self.last_step = evaluators, workdir, last_step
        self.quality: Quality | None = getattr(evaluators[0][1], "quality", None)

    def __call__(self, state, step: int) -> dict[str, float]:
        out = {}
        for (_, measurement, _), result in zip(
                self.evaluators, _run_all(self.evaluators, state, step, self.workdir,
                                          self.last_step)):
            out.update(measurement.scalars(result))
        return out


def make_evaluator(config: ml_collections.ConfigDict, task, workdir) -> LoopEvaluator | None:
    """The loop's evaluation hook, or None when eval_every_steps is 0 (or absent) or the
    task declares no evaluator.

    Built before training, so a missing extractor fails before anything is written.
    """
    if not config.get("eval_every_steps", 0) or not task.evaluators:
        return None
    return LoopEvaluator(build(config, task), workdir, config.num_train_steps)


def evaluate_workdir(workdir, num: int | None = None, seed: int | None = None, *,
                     extractor_workdir=None, extractor: Extractor | None = None,
                     step: int | str | None = None, generator: str = "ema",
                     write: bool = True,
                     train_classifier: Callable[[ml_collections.ConfigDict, Path], Any]
                     | None = None) -> dict:
    """Evaluates a run's newest checkpoint (or `step`: a step number, 'latest' or 'best',
    as `genjax.load_run` takes it) with the evaluators its task
    declares, writes their results under <workdir>/eval/ and returns the first (see the
    module docstring; a task with several returns the others under 'others').

    A generative measurement uses `extractor`, else the classifier in
    `extractor_workdir`, else the one the config names (`default_classifier_workdir`).
    Where that default is missing, `train_classifier(config, where)` trains it first
    (`genjax.loop.train_evaluation_classifier`, as the command line does); without it,
    the missing classifier is an error that says how to train it.
    """
    config, task, state = load_run(workdir, step)
    if not task.evaluators:
        raise ConfigError(f"Task {task.name!r} declares no evaluator: genjax.evaluate has "
                          "nothing to measure in this run.")
    where = missing_classifier(config, task, extractor_workdir=extractor_workdir,
                               extractor=extractor)
    if where is not None and train_classifier is not None:
        train_classifier(config, where)
    evaluators = build(config, task, extractor=extractor, extractor_workdir=extractor_workdir,
                       num=num, seed=seed, generator=generator)
    results = _run_all(evaluators, state, int(state.step), workdir, config.num_train_steps,
                       write, {"workdir": str(Path(workdir).absolute())})
    first = results[0]
    if len(results) > 1:
        first["others"] = results[1:]
    return first
