"""Feature extractors: the networks whose feature space the metrics measure.

An extractor is any object with

    name: str                      what it is, e.g. 'genjax-classifier' or 'inception-v3'
    sha256: str                    checksum of the weights (see `weights_sha256`)
    input_shape: (H, W, C)         the images it was trained on
    features(images) -> [N, D]     float32 numpy; images float32 NHWC in [-1, 1]
    logits(images) -> [N, K]       class logits, or None if it has no classifier head
    describe() -> dict             the protocol record: name, checksum, shapes, ...

`Extractor` below implements `features`, `logits` and `describe` on top of one method,
`_forward(images) -> (features, logits or None)`, plus `prepare`, which brings any image
size to the input size (bilinear, antialiased; greyscale repeated to 3 channels when
the network wants colour). Figures are comparable only under the same extractor and
checksum, which is why both are written into every result.

genjax's default is `ClassifierExtractor`: a genjax classifier run (`configs/
classifier.py`) loaded from its workdir; its penultimate layer gives the features.

Plugging in Inception-v3 (standard FID) later, without changing anything else:
  1. Convert the FID Inception weights (pytorch-fid's `pt_inception-2015-12-05-6726825d
     .pth`, or the TF graph) once, outside genjax, to an `.npz` of named arrays (never a
     pickle); keep its sha256.
  2. Port the FID variant of Inception-v3 as a flax module (under genjax/models/), and
     write `InceptionExtractor(Extractor)` with name 'inception-v3-fid', sha256 of the
     .npz file, input_shape (299, 299, 3), and `_forward` returning the 2048-D pool3
     features and the 1008 logits.
  3. Pass it to `genjax.evaluate.evaluate_workdir(workdir, extractor=...)`, and register
     its factory in `EXTRACTORS` so that `load_extractor('inception:/path/weights.npz')`
     builds it from a string. (The command line, `python -m genjax.evaluate`, takes only
     `--extractor_workdir`, a genjax classifier run; it has no `--extractor` flag yet.)
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax.data.pipeline import classifier_dataset
from genjax.errors import CheckpointError, ConfigError
from genjax.run import load_run
from genjax.tasks import classifier


def weights_sha256(tree: Any) -> str:
    """sha256 over a pytree of arrays: for each leaf in flattening order (sorted keys for
    dicts), its path, dtype and shape, then its bytes (C order, native little-endian).
    The same weights give the same checksum on any machine."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@functools.partial(jax.jit, static_argnames="shape")
def _resize(images, shape):
    return jax.image.resize(images, shape, method="linear", antialias=True)


class Extractor:
    """Base class: subclasses set the attributes and implement `_forward`."""

    name: str = "extractor"
    sha256: str = ""
    input_shape: tuple[int, int, int] = (0, 0, 0)
    chunk: int = 500

    def _forward(self, images: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray | None]:
        raise NotImplementedError

    def prepare(self, images) -> jnp.ndarray:
        """Images float32 NHWC in [-1, 1] at the network's input size and channels."""
        images = jnp.asarray(images, jnp.float32)
        height, width, channels = self.input_shape
        if images.shape[-1] != channels:
            if images.shape[-1] == 1 and channels == 3:
                images = jnp.repeat(images, 3, axis=-1)
            else:
                raise ValueError(f"{self.name} takes {channels}-channel images, got "
                                 f"{images.shape[-1]} channels.")
        if images.shape[1:3] != (height, width):
            images = _resize(images, (images.shape[0], height, width, channels))
        return images

    def features_and_logits(self, images) -> tuple[np.ndarray, np.ndarray | None]:
        """One pass over `images` in chunks: (features [N, D], logits [N, K] or None)."""
        images = np.asarray(images)
        features, logits = [], []
        for start in range(0, images.shape[0], self.chunk):
            f, l = self._forward(self.prepare(images[start:start + self.chunk]))
            features.append(np.asarray(f, np.float32))
            logits.append(None if l is None else np.asarray(l, np.float32))
        has_logits = logits and logits[0] is not None
        return np.concatenate(features), (np.concatenate(logits) if has_logits else None)

    def features(self, images) -> np.ndarray:
        return self.features_and_logits(images)[0]

    def logits(self, images) -> np.ndarray | None:
        return self.features_and_logits(images)[1]

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256,
                "input_shape": list(self.input_shape)}


class ClassifierExtractor(Extractor):
    """A trained genjax classifier (task 'classifier'): features are its penultimate
    layer (ReLU units), logits its output, both in evaluation mode (running BatchNorm
    averages, no dropout). The checksum covers the parameters and the BatchNorm
    statistics, everything that determines the outputs."""

    name = "genjax-classifier"

    def __init__(self, classify: Callable, state: Any, *, weights: Any, input_shape,
                 dataset: str, workdir: str = "", step: int | None = None,
                 test_accuracy: float | None = None):
        """`classify(state, images) -> (logits, features)` and `weights`, the pytree that
        determines its outputs (checksummed), are the classifier task's functions'."""
        self._classify, self._state = classify, state
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dataset, self.workdir, self.step = dataset, workdir, step
        self.test_accuracy = test_accuracy
        self.sha256 = weights_sha256(weights)

    @classmethod
    def from_workdir(cls, workdir, dataset: str | None = None) -> "ClassifierExtractor":
        """The newest checkpoint of a classifier run, with its test accuracy if the run
        wrote `eval/classifier.json`. `dataset` only completes the command in the error
        for a workdir without a classifier."""
        workdir = Path(workdir)
        if not has_classifier(workdir):
            raise CheckpointError(missing_classifier_message(workdir, dataset))
        config, task, state = load_run(workdir)
        if not {"classify", "weights", "input_shape"} <= set(task.functions):
            raise ConfigError(
                f"{workdir} holds a {config.task!r} run, not a classifier: the feature "
                "extractor must be trained with configs/classifier.py.")
        accuracy = None
        report = workdir / "eval" / "classifier.json"
        if report.exists():
            accuracy = json.loads(report.read_text()).get("test_accuracy")
        return cls(task.classify, state, weights=task.weights(state),
                   input_shape=task.input_shape, dataset=config.dataset.name,
                   workdir=str(workdir.absolute()),
                   step=int(state.step), test_accuracy=accuracy)

    def _forward(self, images):
        logits, features = self._classify(self._state, images)
        return features, logits

    def describe(self) -> dict:
        return {**super().describe(), "dataset": self.dataset, "workdir": self.workdir,
                "step": self.step, "test_accuracy": self.test_accuracy,
                "layer": "penultimate (ReLU), eval-mode BatchNorm"}


def has_classifier(workdir) -> bool:
    """Whether `workdir` holds a run with a committed checkpoint (what `from_workdir` loads)."""
    workdir = Path(workdir)
    return (workdir / "config.json").exists() and _has_checkpoint(workdir)


def classifier_config(run_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The classifier that `genjax.evaluate` trains where a run's default one is missing:
    configs/classifier.py's recipe (`genjax.tasks.classifier.evaluation_recipe`) on the
    run's dataset (for a paired dataset made from another's images, that one: the digits
    for digits_upsample) and data directory; at the recipe's 16x16 for the embedded
    digits, at the run's image size for any other dataset."""
    config = classifier.evaluation_recipe()
    # A paired dataset made from another's images (digits_upsample) gets that one's.
    config.dataset.name = classifier_dataset(run_config.dataset.name)
    config.dataset.data_dir = run_config.dataset.data_dir
    if config.dataset.name != "digits":
        config.image_size = run_config.image_size
    return config


def _has_checkpoint(workdir: Path) -> bool:
    # A step folder gets its number only once its save committed (orbax's atomic rename;
    # older orbax releases write no commit_success.txt on a local disk).
    folder = workdir / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() and p.is_dir() for p in folder.iterdir())


def train_classifier_command(workdir, dataset: str | None = None) -> str:
    overrides = f" --config.dataset.name={dataset}" if dataset and dataset != "digits" else ""
    return f"python train.py --config=configs/classifier.py --workdir={workdir}{overrides}"


def missing_classifier_message(workdir, dataset: str | None = None) -> str:
    return (
        f"No trained classifier in {workdir}: genjax.evaluate measures images in the feature "
        "space of a genjax classifier trained on the same dataset, and the classifier named "
        "there (--extractor_workdir, or the config's eval.classifier_workdir) has not been "
        f"trained. Train it there (about a minute on the embedded digits):  "
        f"{train_classifier_command(workdir, dataset)}  -- or name an existing classifier "
        "run, or name none: genjax.evaluate then uses runs/classifier_<dataset> and trains "
        "it there first if it is missing.")


# Named extractor factories for `load_extractor('NAME:ARGUMENT')`; an Inception-v3
# extractor would register itself here (see the module docstring).
EXTRACTORS: dict[str, Callable[[str], Extractor]] = {
    "classifier": ClassifierExtractor.from_workdir,
}


def load_extractor(spec: str) -> Extractor:
    """`NAME:ARGUMENT` from `EXTRACTORS`, e.g. 'classifier:runs/classifier_digits'; a plain
    path is a classifier workdir."""
    name, sep, argument = spec.partition(":")
    if sep and name in EXTRACTORS:
        return EXTRACTORS[name](argument)
    return ClassifierExtractor.from_workdir(spec)
