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
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable

import ml_collections

from genjax import tasks as tasks_lib
from genjax.errors import ConfigError
from genjax.evaluate.extractors import Extractor, has_classifier
from genjax.evaluate.generative import default_classifier_workdir, eval_settings
from genjax.run import load_run

# Measurement name -> its class, 'module:Class', imported when a task declares it (the
# autoencoding measures pull in scikit-learn, which a GAN run need not load). Each class
# has `from_entry(config, spec, entry, **overrides)`, `__call__(functions, state, step)
# -> result`, the result's `kind`, and `scalars(result)` and `table(result)`.
MEASURES = {"generative": "genjax.evaluate.generative:GenerativeEvaluator",
            "classification": "genjax.evaluate.generative:ClassifierEvaluator",
            "autoencoding": "genjax.evaluate.autoencoding:AutoencoderEvaluator",
            "conditional": "genjax.evaluate.conditional:ConditionalEvaluator"}
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


def scalars(result: dict) -> dict[str, float]:
    """TensorBoard scalars of a result (eval/<metric>, ...), by its kind."""
    return measurement(_KINDS[result["kind"]]).scalars(result)


def table(result: dict) -> str:
    """The printed summary of a result, by its kind."""
    return measurement(_KINDS[result["kind"]]).table(result)


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


def missing_classifier(config: ml_collections.ConfigDict, task, *, extractor_workdir=None,
                       extractor: Extractor | None = None) -> Path | None:
    """Where the default evaluation classifier belongs, when the task's evaluators need one
    (a measurement with `needs_classifier`), nobody named one (no `extractor`,
    `extractor_workdir` or eval.classifier_workdir) and none is trained there yet; else
    None. A named classifier that is missing stays an error (`ClassifierExtractor.
    from_workdir`): the user said which one to use."""
    if extractor is not None or extractor_workdir or eval_settings(config)["classifier_workdir"]:
        return None
    if not any(entry.measure in MEASURES and getattr(measurement(entry.measure),
                                                     "needs_classifier", False)
               for entry in task.evaluators.values()):
        return None
    where = default_classifier_workdir(config)
    return None if has_classifier(where) else where


def make_evaluator(config: ml_collections.ConfigDict, task,
                   workdir) -> Callable[[Any, int], dict[str, float]] | None:
    """The loop's evaluation hook, or None when eval_every_steps is 0 (or absent) or the
    task declares no evaluator.

    Built before training, so a missing extractor fails before anything is written.
    Calling it with a host state writes the results under <workdir>/eval/ and returns
    their scalars.
    """
    if not config.get("eval_every_steps", 0) or not task.evaluators:
        return None
    evaluators = build(config, task)

    def evaluate(state, step: int) -> dict[str, float]:
        out = {}
        for result in _run_all(evaluators, state, step, workdir, config.num_train_steps):
            result.pop("path", None)
            out.update(scalars(result))
        return out

    return evaluate


def evaluate_workdir(workdir, num: int | None = None, seed: int | None = None, *,
                     extractor_workdir=None, extractor: Extractor | None = None,
                     step: int | None = None, generator: str = "ema",
                     write: bool = True,
                     train_classifier: Callable[[ml_collections.ConfigDict, Path], Any]
                     | None = None) -> dict:
    """Evaluates a run's newest checkpoint (or `step`) with the evaluators its task
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
