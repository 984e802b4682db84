"""The embedded `digits_upsample` dataset: 4x4 -> 16x16 digits, pairs for pix2pix.

Each record is one of the embedded `digits` (`genjax.data.digits`) at 16x16, exactly as
the 'images' layout makes it (the 8x8 image resized with PIL's bilinear filter), and a
4x4 version of it that keeps only the mean of each 4x4 block, drawn back at 16x16 by
repeating each block mean over its block (nearest-neighbour upsampling), so that input
and target have the same size as pix2pix wants. Many different digits share one 4x4
input: the task is genuinely ambiguous, which is where an L1 loss alone gives blurry
averages and an adversarial loss sharp guesses.

Records: `input` uint8 (16, 16, 1), the block means rounded to the nearest integer (ties
to even, numpy's rint) and repeated 4x4; `target` uint8 (16, 16, 1); `label` 0..9, the
class of the digit. The splits are those of `digits` record for record (1,500 train /
297 test; record i of a split is the same scikit-learn image as record i of that split
of `digits`), so the evaluation classifier of the digits has never seen a test target.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from genjax.data import digits as digits_lib

NAME = "digits_upsample"
SIZE = 16  # The side of input and target: the digits at the 'images' layout's 16x16.
BLOCK = 4  # Side of the blocks averaged: 16x16 -> 4x4.
SHAPE = (SIZE, SIZE, 1)


def block_mean_upsampled(images: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """uint8 [N, S, S, C] -> uint8 [N, S, S, C]: each block x block square replaced by
    its mean, rounded to the nearest integer (ties to even)."""
    n, height, width, channels = images.shape
    if height % block or width % block:
        raise ValueError(f"Image sides {height}x{width} are not multiples of {block}.")
    blocks = images.astype(np.float64).reshape(n, height // block, block, width // block,
                                               block, channels)
    means = np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)
    return np.repeat(np.repeat(means, block, axis=1), block, axis=2)


@functools.lru_cache(maxsize=1)
def _pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, targets, labels) of all 1,797 digits, in scikit-learn's order."""
    # Imported here: the pipeline module imports this one to register the builder.
    from genjax.data.pipeline import _resize

    images, labels = digits_lib.sklearn_digits()
    targets = np.stack([_resize(image, SIZE) for image in images])
    return block_mean_upsampled(targets), targets, labels


def pairs(split: str) -> dict[str, np.ndarray]:
    """{'input', 'target', 'label'} of a split in record order (what the builder writes)."""
    inputs, targets, labels = _pairs()
    index = digits_lib.split_indices()[split]
    return {"input": inputs[index], "target": targets[index], "label": labels[index]}


class DigitsUpsample(tfds.core.GeneratorBasedBuilder):
    """The embedded digits at 16x16 (target) and their 4x4 block means (input)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "input": tfds.features.Tensor(shape=SHAPE, dtype=np.uint8),
                "target": tfds.features.Tensor(shape=SHAPE, dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=digits_lib.NUM_CLASSES),
            }),
            supervised_keys=("input", "target"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            disable_shuffling=True,  # record i of a split is record i of `digits`
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: scikit-learn ships the images.
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        records = pairs(split)
        for position in range(len(records["label"])):
            yield position, {"input": records["input"][position],
                             "target": records["target"][position],
                             "label": int(records["label"][position])}


def prepare(data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """Prepares `digits_upsample` under `data_dir` unless already there (about a second)."""
    return digits_lib.prepare_builder(DigitsUpsample, data_dir)
