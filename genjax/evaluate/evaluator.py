"""Evaluation under a written protocol: what is compared with what, and how.

Generative runs (task 'gan'), `GenerativeEvaluator`:
  * generated: `num` images from the EMA generator (BatchNorm in evaluation mode, i.e.
    running averages, so each image depends on its own noise only), the noise drawn
    from `jax.random.key(seed)`: exactly the images of `python -m genjax.sample
    --workdir=DIR --num=num --seed=seed`. `num` defaults to eval.num_samples, and 0
    there means as many as the training split has, at most 10,000.
  * reference: the real images of eval.split (default 'test'), all of them up to 10,000
    (a seeded random subset beyond), preprocessed exactly as training batches are.
  * floor: `num` real images of the training split (a seeded subset if it is larger)
    compared with the same reference through the same metrics. Finite-sample metrics
    are biased (the Fréchet distance strongly so), so the floor, at the same counts, is
    what a perfect generator that had memorised the training set would score; a
    generated figure is read against it, never against 0.
  * metrics (`compare`): Fréchet distance, KID (mean, std over 100 subsets of
    min(1000, counts) samples), precision and recall (k=3), the IS-style score over 10
    splits and the class-frequency distance to the reference, all in the feature space
    of one extractor (default: the genjax classifier of the dataset, see
    `default_classifier_workdir`).
Classifier runs (task 'classifier'), `ClassifierEvaluator`: accuracy on all of
eval.split, in evaluation mode.
Autoencoder and VAE runs: `autoencoding.AutoencoderEvaluator` (compression, features,
likelihood and, for a VAE, the sample quality above).
Every result records its protocol (counts, splits, extractor name and weights
checksum, seed, generator, BatchNorm mode, metric settings, library versions).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from genjax.checkpoint import library_versions
from genjax.errors import ConfigError
from genjax.evaluate import images as images_lib
from genjax.evaluate import metrics
from genjax.evaluate.extractors import (ClassifierExtractor, Extractor,
                                        train_classifier_command, weights_sha256)

MAX_SAMPLES = 10_000  # Cap on generated and reference images when not given explicitly.
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
PR_NEIGHBOURS = 3
IS_SPLITS = 10
GENERATORS = ("ema", "raw")

# Eval settings of configs saved before they existed.
_EVAL_DEFAULTS = {"split": "test", "num_samples": 0, "seed": 0, "classifier_workdir": ""}


def eval_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    given = config.eval.to_dict() if "eval" in config else {}
    return {**_EVAL_DEFAULTS, **given}


def default_classifier_workdir(config: ml_collections.ConfigDict) -> Path:
    """eval.classifier_workdir, or runs/classifier_<dataset> (relative to the current
    directory, as train.py's default workdirs are): the classifier that
    `python train.py --config=configs/classifier.py --workdir=runs/classifier_<dataset>`
    trains."""
    given = eval_settings(config)["classifier_workdir"]
    if given:
        return Path(given)
    return Path("runs") / f"classifier_{re.sub(r'[^A-Za-z0-9_.-]+', '_', config.dataset.name)}"


def _data_dir(config) -> str | None:
    return config.dataset.data_dir or None


def compare(real_features, real_logits, fake_features, fake_logits, *, seed: int) -> dict:
    """Every metric of `fake` against `real` (features [N, D], logits [N, K] or None)."""
    kid, kid_std = metrics.kernel_inception_distance(
        real_features, fake_features, num_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE,
        seed=seed)
    precision, recall = metrics.precision_recall(real_features, fake_features, k=PR_NEIGHBOURS)
    out = {"fd": metrics.frechet_distance(real_features, fake_features), "kid": kid,
           "kid_std": kid_std, "precision": precision, "recall": recall}
    if fake_logits is not None:
        out["is"], out["is_std"] = metrics.inception_score(fake_logits, splits=IS_SPLITS)
        out["class_tv"] = metrics.class_distribution_distance(real_logits, fake_logits)
    return out


def _check_extractor(extractor: Extractor, config) -> None:
    dataset = getattr(extractor, "dataset", None)
    if dataset is not None and dataset != config.dataset.name:
        raise ConfigError(
            f"The feature extractor ({extractor.describe().get('workdir', extractor.name)}) "
            f"was trained on {dataset!r}, but this run is on {config.dataset.name!r}: its "
            "features would not describe these images. Train a classifier on this dataset ("
            + train_classifier_command(default_classifier_workdir(config), config.dataset.name)
            + ") and evaluate with it.")


class GenerativeEvaluator:
    """Generated images against real ones under one fixed protocol (module docstring).

    The real side (reference features and the floor) is computed once, at construction;
    each call then costs the generation and one pass of the extractor.
    """

    def __init__(self, config: ml_collections.ConfigDict, extractor: Extractor, *,
                 num: int | None = None, seed: int | None = None, generator: str = "ema"):
        if generator not in GENERATORS:
            raise ConfigError(f"generator must be one of {GENERATORS}, got {generator!r}.")
        _check_extractor(extractor, config)
        settings = eval_settings(config)
        self.config, self.extractor, self.generator = config, extractor, generator
        self.seed = settings["seed"] if seed is None else int(seed)
        name, data_dir = config.dataset.name, _data_dir(config)
        train_size = images_lib.split_size(name, config.dataset.split, data_dir)
        self.num = int(num or settings["num_samples"] or min(train_size, MAX_SAMPLES))
        self.split = settings["split"]
        reference, _ = images_lib.load_images(
            name, self.split, image_size=config.image_size, num=MAX_SAMPLES, seed=self.seed,
            data_dir=data_dir)
        floor, _ = images_lib.load_images(
            name, config.dataset.split, image_size=config.image_size, num=self.num,
            seed=self.seed, data_dir=data_dir)
        self.reference = extractor.features_and_logits(reference)
        self.floor = compare(*self.reference, *extractor.features_and_logits(floor),
                             seed=self.seed)
        self.counts = {"num_generated": self.num, "num_reference": int(reference.shape[0]),
                       "num_floor": int(floor.shape[0])}

    def generate(self, task, state) -> np.ndarray:
        if task.sample is None:
            raise ConfigError(f"Task {self.config.task!r} does not generate images; "
                              "genjax.evaluate measures generative runs.")
        if self.generator == "raw":  # the trained weights themselves, not their average
            state = state.replace(ema={"params": state.generator.params,
                                       "batch_stats": state.generator.batch_stats})
        return np.asarray(task.sample(state, jax.random.key(self.seed), self.num))

    def protocol(self) -> dict:
        c = self.config
        return {
            **self.counts,
            "dataset": c.dataset.name, "image_size": c.image_size,
            "reference_split": self.split, "floor_split": c.dataset.split,
            "floor": "real floor-split images vs the reference, same counts and metrics",
            "extractor": self.extractor.describe(),
            "seed": self.seed,
            "noise": f"jax.random.key({self.seed}) (= python -m genjax.sample "
                     f"--num={self.num} --seed={self.seed})",
            "generator": self.generator,
            "batchnorm": "eval (running averages)",
            "images": "float32 [-1, 1]; resized to the extractor's input if sizes differ",
            "fd": "Fréchet distance, float64, covariance ddof=1, trace sqrt via eigh of "
                  "S1^1/2 S2 S1^1/2",
            "kid": {"kernel": "(x.y/d + 1)^3", "estimator": "unbiased MMD^2",
                    "num_subsets": KID_SUBSETS,
                    "subset_size": min(KID_SUBSET_SIZE, self.num, self.counts["num_reference"],
                                       self.counts["num_floor"])},
            "precision_recall": {"k": PR_NEIGHBOURS, "method": "Kynkaenniemi et al. 2019"},
            "is": {"splits": IS_SPLITS, "from": "extractor softmax"},
            "class_tv": "total variation between argmax-class frequencies, vs the reference",
            "versions": library_versions(),
        }

    def __call__(self, task, state, step: int) -> dict:
        start = time.perf_counter()
        fake = self.generate(task, state)
        generated = compare(*self.reference, *self.extractor.features_and_logits(fake),
                            seed=self.seed)
        return {"kind": "generative", "task": self.config.task, "step": int(step),
                "generated": generated, "floor": self.floor, "protocol": self.protocol(),
                "seconds": round(time.perf_counter() - start, 2)}


class ClassifierEvaluator:
    """Accuracy and cross-entropy of a classifier on all of eval.split."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.split = eval_settings(config)["split"]
        self.images, self.labels = images_lib.load_images(
            config.dataset.name, self.split, image_size=config.image_size,
            data_dir=_data_dir(config))

    def __call__(self, task, state, step: int) -> dict:
        logits, _ = task.classify(state, self.images)
        logits = np.asarray(logits)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, self.labels).mean()
        return {
            "kind": "classification", "task": self.config.task, "step": int(step),
            "test_accuracy": float(np.mean(logits.argmax(1) == self.labels)),
            "test_loss": float(loss),
            "protocol": {"dataset": self.config.dataset.name, "split": self.split,
                         "num_examples": int(self.labels.shape[0]),
                         "image_size": self.config.image_size,
                         "batchnorm": "eval (running averages)", "dropout": "off",
                         "sha256": weights_sha256({"params": state.model.params,
                                                   "batch_stats": state.model.batch_stats}),
                         "versions": library_versions()},
        }


def write_result(workdir, result: dict, name: str | None = None) -> Path:
    """<workdir>/eval/<name>, written atomically. The default name is step_<step, 6
    digits>.json, like the sample grids (step_<step>_raw.json for the raw generator)."""
    folder = Path(workdir) / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    raw = "_raw" if result.get("protocol", {}).get("generator") == "raw" else ""
    path = folder / (name or f"step_{result['step']:06d}{raw}.json")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def scalars(result: dict) -> dict[str, float]:
    """TensorBoard scalars of a result: eval/<metric>, and eval_floor/<metric>."""
    if result["kind"] == "classification":
        return {"eval/accuracy": result["test_accuracy"], "eval/loss": result["test_loss"]}
    if result["kind"] == "autoencoder":
        from genjax.evaluate import autoencoding
        return autoencoding.scalars(result)
    out = {f"eval/{k}": v for k, v in result["generated"].items()}
    out.update({f"eval_floor/{k}": v for k, v in result["floor"].items()})
    return out


def make_evaluator(config: ml_collections.ConfigDict, task,
                   workdir) -> Callable[[Any, int], dict[str, float]] | None:
    """The loop's evaluation hook, or None when eval_every_steps is 0 (or absent).

    Built before training, so a missing extractor fails before anything is written.
    Calling it with a host state writes <workdir>/eval/step_<step>.json (and, at the
    last step of a classifier run, eval/classifier.json) and returns the scalars.
    """
    if not config.get("eval_every_steps", 0):
        return None
    if task.classify is not None:
        evaluator = ClassifierEvaluator(config)
    elif task.encode is not None:
        from genjax.evaluate.autoencoding import AutoencoderEvaluator
        evaluator = AutoencoderEvaluator(config)
    elif task.sample is not None:
        extractor_dir = default_classifier_workdir(config)
        evaluator = GenerativeEvaluator(
            config, ClassifierExtractor.from_workdir(extractor_dir, config.dataset.name))
    else:
        return None

    def evaluate(state, step: int) -> dict[str, float]:
        result = evaluator(task, state, step)
        write_result(workdir, result)
        if result["kind"] == "classification" and step == config.num_train_steps:
            write_result(workdir, result, "classifier.json")
        return scalars(result)

    return evaluate


def evaluate_workdir(workdir, num: int | None = None, seed: int | None = None, *,
                     extractor_workdir=None, extractor: Extractor | None = None,
                     step: int | None = None, generator: str = "ema",
                     write: bool = True) -> dict:
    """Evaluates a run's newest checkpoint (or `step`) and writes
    <workdir>/eval/step_<N>.json; returns the result (see the module docstring).

    A generative run is measured with `extractor`, else the classifier in
    `extractor_workdir`, else the one its config names (`default_classifier_workdir`).
    A classifier run gets its accuracy on eval.split (also as eval/classifier.json).
    """
    from genjax.sample import load_run  # lazily: `python -m genjax.sample` imports genjax

    config, task, state = load_run(workdir, step)
    if task.classify is not None:
        evaluator = ClassifierEvaluator(config)
    elif task.encode is not None:
        from genjax.evaluate.autoencoding import AutoencoderEvaluator
        if extractor is None and extractor_workdir:
            extractor = ClassifierExtractor.from_workdir(extractor_workdir, config.dataset.name)
        evaluator = AutoencoderEvaluator(config, extractor, num=num, seed=seed)
    else:
        if extractor is None:
            extractor = ClassifierExtractor.from_workdir(
                extractor_workdir or default_classifier_workdir(config), config.dataset.name)
        evaluator = GenerativeEvaluator(config, extractor, num=num, seed=seed,
                                        generator=generator)
    result = evaluator(task, state, int(state.step))
    result["workdir"] = str(Path(workdir).absolute())
    if write:
        result["path"] = str(write_result(workdir, result))
        if result["kind"] == "classification" and int(state.step) == config.num_train_steps:
            write_result(workdir, result, "classifier.json")
    return result
