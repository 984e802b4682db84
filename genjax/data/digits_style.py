"""The embedded `digits_style` dataset: unpaired digits in two styles, for CycleGAN.

Domain A is thin, upright digits; domain B is thick digits slanted to the right. Both are
drawn from the embedded `digits` (`genjax.data.digits`) by a known rendering, so every
test image's exact translation exists for evaluation, while training stays genuinely
unpaired: the digits' training split is cut into two disjoint stratified halves, one
drawn only in style A (trainA), the other only in style B (trainB), so no digit appears
in both domains.

The rendering of a source digit (uint8 8x8), at 16x16 (the 'images' layout's size for
digits, where a CycleGAN step is cheap on a CPU):
  1. resized to 24x24 with PIL's bilinear filter, padded by 4 to a 32x32 canvas (room
     for the slant and the thicker strokes), intensities in [0, 1];
  2. deslanted: a horizontal shear about the ink's centroid that zeroes the ink's
     row-column covariance, so every digit starts upright (`slant` below is 0);
  3. stroke width: A a grey erosion (3x3 minimum filter: thinner strokes), B a grey
     dilation (5x5 maximum filter: thicker strokes);
  4. slant: B a horizontal shear x' = x + SLANT_B·(r_c - r) about the centroid row r_c
     (rows grow downwards, so the top leans right by 0.3 pixel per row); A none;
  5. 2x2 block means (32x32 -> 16x16), scaled so that the brightest pixel is 1, and
     rounded to uint8 0..255.
Measured (`slant`, `ink_mass`; checked by the tests on every record): the moment slant
is 0.00 ± 0.03 in A and 0.30 ± 0.03 in B; B's ink mass is more than twice A's for every
digit.

Splits and records (`image` uint8 (16, 16, 1), `label` 0..9, `index` the scikit-learn
image it was drawn from, `translation` uint8 (16, 16, 1)):
  trainA  750 digits (half of the digits' training split, stratified), style A;
  trainB  the other 750, style B;
  testA   the digits' 297 test images in style A, `translation` the same digit in B;
  testB   the same 297 test images in style B, `translation` the same digit in A.
`translation` exists for evaluation only: in the training splits it is all zeros (no
training image has a counterpart). The unpaired layout serves `image` and `label` only.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from genjax.data import digits as digits_lib

NAME = "digits_style"
SIZE = 16
SHAPE = (SIZE, SIZE, 1)
DOMAINS = ("a", "b")
SPLITS = ("trainA", "trainB", "testA", "testB")
HALF_SEED = 0  # Seed of the stratified cut of the digits' training split into halves.
UPSAMPLED, PAD = 24, 4  # The source is drawn at 24x24 on a 32x32 canvas, then halved.
STROKE = {"a": -3, "b": 5}  # Odd size of the erosion (negative) or dilation (positive).
SLANT = {"a": 0.0, "b": 0.3}  # Horizontal shear per row: the slant each style is drawn with.


def slant(images) -> np.ndarray:
    """The moment slant of each image [N, H, W(, 1)] (float64 [N]): -cov(col, row) /
    var(row) of the ink (intensities as weights), rows growing downwards; 0 for upright
    digits, > 0 for digits whose top leans right (the shear that would deslant them)."""
    v = np.asarray(images, np.float64).reshape(len(images), *np.shape(images)[1:3])
    rows, cols = np.mgrid[:v.shape[1], :v.shape[2]]
    mass = v.sum((1, 2))
    rc = (v * rows).sum((1, 2)) / mass
    cc = (v * cols).sum((1, 2)) / mass
    dr, dc = rows - rc[:, None, None], cols - cc[:, None, None]
    return -(v * dr * dc).sum((1, 2)) / (v * dr * dr).sum((1, 2))


def ink_mass(images) -> np.ndarray:
    """The total intensity of each image [N, ...] in units of full pixels (float64 [N]):
    uint8 divided by 255, or [-1, 1] images mapped to [0, 1] when float."""
    x = np.asarray(images)
    x = x / 255.0 if x.dtype == np.uint8 else (x.astype(np.float64) + 1.0) / 2.0
    return x.reshape(len(x), -1).sum(1)


def _shear(v: np.ndarray, shear: float, row_centre: float) -> np.ndarray:
    """output(r, c) = input(r, c - shear·(row_centre - r)), bilinear, zeros outside."""
    from scipy import ndimage

    return ndimage.affine_transform(v, np.array([[1.0, 0.0], [shear, 1.0]]),
                                    offset=(0.0, -shear * row_centre), order=1)


def render(source: np.ndarray, domain: str) -> np.ndarray:
    """One source digit uint8 [8, 8, 1] drawn in style `domain` ('a' or 'b'): uint8
    [16, 16, 1] (the module docstring's steps)."""
    from PIL import Image
    from scipy import ndimage

    up = Image.fromarray(np.asarray(source, np.uint8)[..., 0]).resize(
        (UPSAMPLED, UPSAMPLED), Image.BILINEAR)
    v = np.pad(np.asarray(up, np.float64) / 255.0, PAD)
    rows = np.arange(v.shape[0])[:, None]
    row_centre = float((v * rows).sum() / v.sum())
    v = _shear(v, -float(slant(v[None])[0]), row_centre)  # upright
    stroke = STROKE[domain]
    v = (ndimage.grey_dilation(v, size=(stroke, stroke)) if stroke > 0
         else ndimage.grey_erosion(v, size=(-stroke, -stroke)))
    if SLANT[domain]:
        v = _shear(v, SLANT[domain], row_centre)
    v = v.reshape(SIZE, v.shape[0] // SIZE, SIZE, v.shape[1] // SIZE).mean((1, 3))
    v = np.clip(v / v.max(), 0.0, 1.0)
    return np.rint(v * 255.0).astype(np.uint8)[..., None]


@functools.lru_cache(maxsize=None)
def _rendered(domain: str) -> np.ndarray:
    """All 1,797 digits drawn in style `domain`, in scikit-learn's order."""
    images, _ = digits_lib.sklearn_digits()
    return np.stack([render(image, domain) for image in images])


@functools.lru_cache(maxsize=1)
def _indices() -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    _, labels = digits_lib.sklearn_digits()
    split = digits_lib.split_indices()
    train_a, train_b = train_test_split(split["train"], test_size=0.5,
                                        stratify=labels[split["train"]],
                                        random_state=HALF_SEED)
    return {"trainA": train_a, "trainB": train_b, "testA": split["test"],
            "testB": split["test"]}


def split_indices() -> dict[str, np.ndarray]:
    """Maps each split to the scikit-learn image of each of its records, in record order."""
    return {split: index.copy() for split, index in _indices().items()}


def records(split: str) -> dict[str, np.ndarray]:
    """{'image', 'label', 'index', 'translation'} of a split in record order (what the
    builder writes)."""
    _, labels = digits_lib.sklearn_digits()
    index = _indices()[split]
    domain = split[-1].lower()
    other = "b" if domain == "a" else "a"
    image = _rendered(domain)[index]
    translation = (_rendered(other)[index] if split.startswith("test")
                   else np.zeros_like(image))  # training images have no counterpart
    return {"image": image, "label": labels[index], "index": index.astype(np.int64),
            "translation": translation}


class DigitsStyle(tfds.core.GeneratorBasedBuilder):
    """Unpaired digits: thin upright (A) and thick slanted (B), exact test translations."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=SHAPE, dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=digits_lib.NUM_CLASSES),
                "index": tfds.features.Tensor(shape=(), dtype=np.int64),
                "translation": tfds.features.Tensor(shape=SHAPE, dtype=np.uint8),
            }),
            homepage="https://archive.ics.uci.edu/dataset/80",
            disable_shuffling=True,  # record i of a split is split_indices()[split][i]
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: scikit-learn ships the images.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        out = records(split)
        for position in range(len(out["label"])):
            yield position, {"image": out["image"][position],
                             "label": int(out["label"][position]),
                             "index": int(out["index"][position]),
                             "translation": out["translation"][position]}


def prepare(data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """Prepares `digits_style` under `data_dir` unless already there (a few seconds)."""
    return digits_lib.prepare_builder(DigitsStyle, data_dir)
