"""The 'generative' and 'classification' measurements, under a written protocol.

A task declares which it wants (`Task.evaluators`, `genjax.tasks.Evaluation`) and with
which of its functions; `genjax.evaluate.evaluator` builds and runs them by name.

'generative' (the GAN's), `GenerativeEvaluator`, on the task's `sample` function:
  * generated: `num` images of `sample(state, jax.random.key(seed), num)` (a GAN's EMA
    generator, or `which='raw'` for --generator=raw; BatchNorm in evaluation mode, i.e.
    running averages, so each image depends on its own noise only): exactly the images
    of `python -m genjax.sample --workdir=DIR --num=num --seed=seed`. `num` defaults to
    eval.num_samples, and 0 there means as many as the training split has, at most 10,000.
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
'classification' (the classifier's), `ClassifierEvaluator`, on `classify` and `weights`:
accuracy on all of eval.split, in evaluation mode.
'autoencoding' (autoencoders and VAEs): `genjax.evaluate.autoencoding`.
Real images come from the task's `data_spec` through `genjax.data.load_split`, in the
training preprocessing. Every result records its protocol (counts, splits, extractor
name and weights checksum, seed, generator, BatchNorm mode, metric settings, library versions).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from genjax import data
from genjax.checkpoint import Quality, library_versions
from genjax.errors import ConfigError
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
    # A paired dataset made from another's images (digits_upsample's targets are the
    # digits) is judged by that dataset's classifier.
    name = data.classifier_dataset(config.dataset.name)
    return Path("runs") / f"classifier_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"


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
    expected = data.classifier_dataset(config.dataset.name)
    if dataset is not None and dataset != expected:
        raise ConfigError(
            f"The feature extractor ({extractor.describe().get('workdir', extractor.name)}) "
            f"was trained on {dataset!r}, but this run's images are {expected!r}'s: its "
            "features would not describe these images. Train a classifier on this dataset ("
            + train_classifier_command(default_classifier_workdir(config), expected)
            + ") and evaluate with it.")


def generative_scalars(result: dict) -> dict[str, float]:
    """TensorBoard scalars of a generative result: eval/<metric>, and eval_floor/<metric>."""
    out = {f"eval/{k}": v for k, v in result["generated"].items()}
    out.update({f"eval_floor/{k}": v for k, v in result["floor"].items()})
    return out


def generative_table(result: dict) -> str:
    """The printed summary of `python -m genjax.evaluate` for a generative result."""
    p = result["protocol"]
    names = list(result["generated"])
    rows = [("generated", p["num_generated"], result["generated"]),
            (f"real {p['floor_split']} (floor)", p["num_floor"], result["floor"])]
    lines = [f"step {result['step']}, {p['generator']} generator vs {p['num_reference']} "
             f"{p['dataset']}/{p['reference_split']} images; extractor {p['extractor']['name']} "
             f"sha256 {p['extractor']['sha256'][:12]}, seed {p['seed']}",
             f"{'':>22} {'n':>6} " + " ".join(f"{n:>9}" for n in names)]
    for label, n, values in rows:
        lines.append(f"{label:>22} {n:>6} " + " ".join(f"{values[k]:>9.4g}" for k in names))
    return "\n".join(lines)


def classification_scalars(result: dict) -> dict[str, float]:
    return {"eval/accuracy": result["test_accuracy"], "eval/loss": result["test_loss"]}


def classification_table(result: dict) -> str:
    p = result["protocol"]
    return (f"step {result['step']}: accuracy {result['test_accuracy']:.4f} on "
            f"{p['num_examples']} images of {p['dataset']}/{p['split']}")



class GenerativeEvaluator:
    """Generated images against real ones under one fixed protocol (module docstring).

    The real side (reference features and the floor) is computed once, at construction;
    each call then costs the generation and one pass of the extractor.
    """

    kind = "generative"
    needs_classifier = True  # without an extractor given, the default classifier's features
    scalars = staticmethod(generative_scalars)
    table = staticmethod(generative_table)
    quality = Quality("eval/fd", "min")  # the run's best checkpoint is its lowest FD

    def __init__(self, config: ml_collections.ConfigDict, spec: data.DataSpec,
                 extractor: Extractor, *, num: int | None = None, seed: int | None = None,
                 generator: str = "ema"):
        if generator not in GENERATORS:
            raise ConfigError(f"generator must be one of {GENERATORS}, got {generator!r}.")
        _check_extractor(extractor, config)
        settings = eval_settings(config)
        self.config, self.extractor, self.generator = config, extractor, generator
        self.seed = settings["seed"] if seed is None else int(seed)
        train_size = data.split_size(spec, spec.split)
        self.num = int(num or settings["num_samples"] or min(train_size, MAX_SAMPLES))
        self.split = settings["split"]
        reference = data.load_split(spec, self.split, MAX_SAMPLES, self.seed)["image"]
        floor = data.load_split(spec, spec.split, self.num, self.seed)["image"]
        self.reference = extractor.features_and_logits(reference)
        self.floor = compare(*self.reference, *extractor.features_and_logits(floor),
                             seed=self.seed)
        self.counts = {"num_generated": self.num, "num_reference": int(reference.shape[0]),
                       "num_floor": int(floor.shape[0])}

    @classmethod
    def from_entry(cls, config, spec, entry, *, extractor: Extractor | None = None,
                   extractor_workdir=None, num=None, seed=None, generator: str = "ema",
                   **_):
        """The measurement a task's Evaluation('generative', {'sample': ...}) declares;
        the extractor is loaded (or its absence reported) here, before any training."""
        if extractor is None:
            extractor = ClassifierExtractor.from_workdir(
                extractor_workdir or default_classifier_workdir(config), config.dataset.name)
        return cls(config, spec, extractor, num=num, seed=seed, generator=generator)

    def generate(self, functions, state) -> np.ndarray:
        """`functions['sample']`'s images; with generator 'raw', those of the trained
        weights themselves (the task's `sample(..., which='raw')`), not their average."""
        variant = {} if self.generator == "ema" else {"which": self.generator}
        return np.asarray(functions["sample"](state, jax.random.key(self.seed), self.num,
                                              **variant))

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

    def __call__(self, functions, state, step: int) -> dict:
        start = time.perf_counter()
        fake = self.generate(functions, state)
        generated = compare(*self.reference, *self.extractor.features_and_logits(fake),
                            seed=self.seed)
        return {"kind": "generative", "task": self.config.task, "step": int(step),
                "generated": generated, "floor": self.floor, "protocol": self.protocol(),
                "seconds": round(time.perf_counter() - start, 2)}


class ClassifierEvaluator:
    """Accuracy and cross-entropy of a classifier on all of eval.split."""

    kind = "classification"
    scalars = staticmethod(classification_scalars)
    table = staticmethod(classification_table)
    quality = Quality("eval/accuracy", "max")

    def __init__(self, config: ml_collections.ConfigDict, spec: data.DataSpec):
        self.config = config
        self.split = eval_settings(config)["split"]
        examples = data.load_split(spec, self.split)
        self.images, self.labels = examples["image"], examples["label"]

    @classmethod
    def from_entry(cls, config, spec, entry, **_):
        return cls(config, spec)

    def __call__(self, functions, state, step: int) -> dict:
        logits, _ = functions["classify"](state, self.images)
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
                         "sha256": weights_sha256(functions["weights"](state)),
                         "versions": library_versions()},
        }
