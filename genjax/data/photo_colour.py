"""The embedded `photo_colour` dataset: grey -> colour photo patches, pairs for pix2pix.

Patches cut from the real colour photographs that ship inside the scikit-image wheel
(`skimage/data`) and the scikit-learn wheel (`sklearn/datasets/images`), so the dataset
prepares offline in a few seconds. Each photograph is converted to RGB and resized
(PIL bilinear, antialiased) so that its shorter side is 160 pixels, then cut into 32x32
patches on a grid of stride 16 (neighbouring patches overlap by half); every patch is
kept. Input = the patch's luminance, ITU-R BT.601 luma weights
Y = 0.299 R + 0.587 G + 0.114 B, rounded to the nearest integer (ties to even); target
= the RGB patch.

Whole photographs are held out for the test split, so test patches come from scenes
never seen in training: 'chelsea' (a cat, skimage) and 'coffee' (a cup of coffee,
skimage), two everyday scenes whose colours follow the same rules as the training
photographs (no micrograph, fundus or deep-sky image is held out, since each is the only
one of its kind), and neither has a near-twin in training (the stereo pair
motorcycle_left/right stays together in training). Training: astronaut, rocket,
retina, ihc, hubble_deep_field, motorcycle_left, motorcycle_right (skimage), china,
flower (scikit-learn): 945 patches; test: 252 patches.

Records: `input` uint8 (32, 32, 1), `target` uint8 (32, 32, 3), and where the patch
comes from: `photo` (an index into PHOTOS), `top`, `left` (its corner in the resized
photograph). No class label. Patches are stored at 32x32; a config's image_size resizes
them (and the 'paired' layout's jitter resizes to load_size and crops).

JPEG photographs (rocket, retina, hubble_deep_field, china, flower) are decoded by
Pillow's libjpeg, whose builds may differ by a grey level here and there; the PNGs
decode exactly everywhere.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from genjax.data import digits as digits_lib
from genjax.data.pipeline import DatasetNotAvailableError

NAME = "photo_colour"
PHOTO_SIDE = 160  # Shorter side of each photograph after resizing.
PATCH = 32  # Side of the stored patches.
STRIDE = 16  # Step of the patch grid.
# ITU-R BT.601 luma weights (those of PIL's convert('L') and of JPEG).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class Photo(NamedTuple):
    name: str
    package: str  # The package whose wheel ships the file.
    file: str
    split: str


_SKIMAGE, _SKLEARN = "skimage.data", "sklearn.datasets.images"
PHOTOS = (
    Photo("astronaut", _SKIMAGE, "astronaut.png", "train"),
    Photo("rocket", _SKIMAGE, "rocket.jpg", "train"),
    Photo("retina", _SKIMAGE, "retina.jpg", "train"),
    Photo("ihc", _SKIMAGE, "ihc.png", "train"),
    Photo("hubble_deep_field", _SKIMAGE, "hubble_deep_field.jpg", "train"),
    Photo("motorcycle_left", _SKIMAGE, "motorcycle_left.png", "train"),
    Photo("motorcycle_right", _SKIMAGE, "motorcycle_right.png", "train"),
    Photo("china", _SKLEARN, "china.jpg", "train"),
    Photo("flower", _SKLEARN, "flower.jpg", "train"),
    Photo("chelsea", _SKIMAGE, "chelsea.png", "test"),
    Photo("coffee", _SKIMAGE, "coffee.png", "test"),
)
TEST_PHOTOS = tuple(p.name for p in PHOTOS if p.split == "test")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> uint8 [..., 1]: rint(0.299 R + 0.587 G + 0.114 B)."""
    weights = np.asarray(LUMA_WEIGHTS, np.float64)
    return np.rint(rgb.astype(np.float64) @ weights).clip(0, 255).astype(np.uint8)[..., None]


def photo_path(photo: Photo):
    """The photograph's file inside its package."""
    try:
        path = importlib.resources.files(photo.package) / photo.file
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise DatasetNotAvailableError(
            f"The photograph {photo.file!r} of the embedded dataset {NAME!r} is not where it "
            f"should be ({photo.package}); photo_colour is cut from the photographs that "
            "ship inside scikit-image and scikit-learn. Install them: pip install "
            "'scikit-image>=0.22' 'scikit-learn>=1.4.2'.")
    return path


def load_photo(photo: Photo) -> np.ndarray:
    """The photograph as uint8 RGB [H, W, 3], shorter side PHOTO_SIDE (PIL bilinear)."""
    with Image.open(photo_path(photo)) as image:
        image = image.convert("RGB")
        width, height = image.size
        scale = PHOTO_SIDE / min(width, height)
        image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
        return np.asarray(image)


def patch_corners(height: int, width: int) -> list[tuple[int, int]]:
    """(top, left) of every PATCH x PATCH window on the STRIDE grid, row by row."""
    return [(top, left) for top in range(0, height - PATCH + 1, STRIDE)
            for left in range(0, width - PATCH + 1, STRIDE)]


@functools.lru_cache(maxsize=1)
def _records() -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for split in ("train", "test"):
        targets, photos, tops, lefts = [], [], [], []
        for index, photo in enumerate(PHOTOS):
            if photo.split != split:
                continue
            rgb = load_photo(photo)
            for top, left in patch_corners(*rgb.shape[:2]):
                targets.append(rgb[top:top + PATCH, left:left + PATCH])
                photos.append(index)
                tops.append(top)
                lefts.append(left)
        targets = np.stack(targets)
        out[split] = {"input": luminance(targets), "target": targets,
                      "photo": np.asarray(photos, np.int64), "top": np.asarray(tops, np.int64),
                      "left": np.asarray(lefts, np.int64)}
    return out


def records(split: str) -> dict[str, np.ndarray]:
    """{'input', 'target', 'photo', 'top', 'left'} of a split, in record order (photo by
    photo in PHOTOS order, patches row by row): what the builder writes."""
    return {key: value.copy() for key, value in _records()[split].items()}


class PhotoColour(tfds.core.GeneratorBasedBuilder):
    """Grey -> colour 32x32 patches of the photographs shipped in scikit-image/-learn."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "input": tfds.features.Tensor(shape=(PATCH, PATCH, 1), dtype=np.uint8),
                "target": tfds.features.Tensor(shape=(PATCH, PATCH, 3), dtype=np.uint8),
                "photo": tfds.features.Tensor(shape=(), dtype=np.int64),
                "top": tfds.features.Tensor(shape=(), dtype=np.int64),
                "left": tfds.features.Tensor(shape=(), dtype=np.int64),
            }),
            supervised_keys=("input", "target"),
            homepage="https://scikit-image.org/docs/stable/api/skimage.data.html",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the wheels ship the photographs.
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        split_records = records(split)
        for position in range(len(split_records["photo"])):
            yield position, {key: value[position] for key, value in split_records.items()}


def prepare(data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """Prepares `photo_colour` under `data_dir` unless already there (a few seconds)."""
    return digits_lib.prepare_builder(PhotoColour, data_dir)
