"""The embedded `digits` dataset: scikit-learn's 8x8 handwritten digits as a TFDS dataset.

scikit-learn ships the 1,797 images of the UCI "Optical Recognition of Handwritten Digits"
test set inside its wheel, so this dataset prepares offline in about a second. It lets
every model in genjax train, test and run its notebooks without any download, through
exactly the same `tfds.data_source` -> grain path as a real TFDS dataset.

Records: `image` uint8 (8, 8, 1) in 0..255 (the original 0..16 grey levels rescaled with
round(v * 255 / 16)) and `label` 0..9. The train/test split is stratified and fixed
(1,500 / 297 images); `split_indices()` says which scikit-learn image each record is.
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np
import tensorflow_datasets as tfds

NAME = "digits"
IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10
TEST_SIZE = 297
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 8, 8, 1], labels int64 [N]) in scikit-learn's order."""
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn is slow to import

    bunch = load_digits()
    images = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    _, labels = _load_sklearn_digits()
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    return {"train": train, "test": test}


def split_indices() -> dict[str, np.ndarray]:
    """Maps each split to the scikit-learn image index of each of its records, in record order."""
    return {split: idx.copy() for split, idx in _split_indices().items()}


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The source images (uint8 [1797, 8, 8, 1], rescaled to 0..255) and labels (int64)."""
    images, labels = _load_sklearn_digits()
    return images.copy(), labels.copy()


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits, 1,500 train and 297 test images."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly rather than with `dataset_info_from_configs`, which expects
        # metadata files (README, citations, checksums) beside the module.
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    # A plain Tensor: an Image feature would need TensorFlow to PNG-encode.
                    "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            # Records stay in the order written (already a random permutation), so record i
            # of a split is scikit-learn image split_indices()[split][i].
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: scikit-learn ships the images.
        return {split: self._generate_examples(idx) for split, idx in _split_indices().items()}

    def _generate_examples(self, indices: np.ndarray):
        images, labels = _load_sklearn_digits()
        for position, index in enumerate(indices):
            yield position, {"image": images[index], "label": int(labels[index])}


def prepare_digits(data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """Prepares `digits` in array_record format under `data_dir` unless already there.

    Offline and fast (about a second). `data_dir=None` means TFDS's default data directory
    (`TFDS_DATA_DIR` or ~/tensorflow_datasets). Returns the prepared builder.
    """
    return prepare_builder(Digits, data_dir)


def prepare_builder(builder_class, data_dir: str | os.PathLike | None = None
                    ) -> tfds.core.DatasetBuilder:
    """Prepares an embedded dataset's builder (one that downloads nothing) in array_record
    format under `data_dir` unless already there; returns the prepared builder."""
    builder = builder_class(data_dir=None if data_dir is None else os.fspath(data_dir),
                            file_format="array_record")
    if not builder.is_prepared():
        if not sys.stderr.isatty():
            # TFDS draws tqdm bars on stderr; into a log file or a pipe they are only
            # cursor-movement codes and bar debris. (Global in TFDS, and never wanted
            # where nobody watches.)
            tfds.disable_progress_bar()
        # No GCS look-up: the dataset is not hosted there and the machine may be offline.
        config = tfds.download.DownloadConfig(try_download_gcs=False)
        builder.download_and_prepare(download_config=config)
    return builder
