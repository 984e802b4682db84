"""What a task's batches carry and where they come from: the `DataSpec`.

A task module's `data_spec(config) -> DataSpec` tells the data layer which features a
batch holds; the loop, the evaluators and the notebooks then ask the data layer for
batches of that spec without looking inside them:

  training_pipeline(spec, global_batch_size=..., num_devices=..., seed=...) -> Pipeline
      the resumable training pipeline of `spec.split`: per-device batches
      `{feature: array [devices, per_device, ...]}`.
  load_split(spec, split, num=None, seed=0) -> {feature: array [n, ...]}
      a whole held-out split (or a seeded random subset of `num` examples) in the
      training preprocessing without random jitter, for evaluators.
  held_out_batch(spec, num, seed) -> {feature: array [num, ...]}
      one fixed batch of `spec.eval_split`: what the loop hands `task.visuals`.
  meta(spec) -> DatasetMeta
      shapes, classes, split sizes (and a captioned dataset's vocabulary), before any
      batch is read.

Layouts and the features of their batches (images float32 NHWC in [-1, 1], S =
image_size; labels int32, 0 where a source has none; `meta.num_classes` is None then):
  'images'     {'image' [S,S,C], 'label' []}: labelled images.
  'paired'     {'input' [S,S,Ci], 'target' [S,S,Ct], 'label' []}: pix2pix pairs. In the
               training pipeline both images get the same random jitter (resize to
               `load_size`, random crop back to S) and the same mirroring, drawn from
               (seed, epoch, position); held-out reads are never jittered.
  'unpaired'   {'a' [S,S,Ca], 'b' [S,S,Cb], 'a_label' [], 'b_label' []}: two domains
               (CycleGAN), each shuffled on its own every epoch; jittered like 'paired'
               but independently per domain. Split 'train' means the domain splits
               'trainA' and 'trainB' ('test' -> 'testA', 'testB'). An epoch is the
               larger domain's number of batches; the smaller domain simply wraps.
               `load_split` returns each domain's own count (min(num, its size)).
  'captioned'  {'image' [S,S,C], 'tokens' int32 [max_tokens], 'label' []}: images with
               captions (text-to-image). One caption per image is drawn per epoch
               from (seed, epoch, position), tokenised by a word-level vocabulary built
               from the training split's captions (`meta.vocabulary`; see
               `genjax.data.text.Tokenizer`), padded with 0. `load_split` also returns
               'caption' (the drawn strings, numpy str [n]); `held_out_batch` and the
               pipeline carry numbers only.

Where data come from (`DataSpec.name`):
  - a TFDS dataset name ('mnist', 'celeb_a:2.1.0', 'cycle_gan/horse2zebra',
    'coco_captions'), read from its prepared array_record files; or an embedded one,
    prepared offline on first use: 'digits' ('images'), 'digits_upsample' and
    'photo_colour' ('paired': 4x4 -> 16x16 digits; grey -> colour photo patches),
    'captioned_digits' ('captioned': colour digits with known attributes, and a split of
    attribute combinations never seen in training; `genjax.data.captioned_digits`);
  - 'folder:PATH', a directory of image files (PNG, JPEG, BMP, GIF, TIFF, WebP; decoded
    with PIL, greyscale or RGB; a folder's channel count is its first image's unless
    `channels` says) laid out per layout, one subfolder per split:
      'images'     PATH/<split>/<class>/*.png (classes: the sorted union of the class
                   folders of all splits), or PATH/<split>/*.png without labels
                   (torchvision's ImageFolder, per split).
      'paired'     PATH/<split>/*.jpg, each file input and target side by side (A|B, as
                   facades, maps and edges2shoes are distributed); or two folders
                   PATH/A/<split>/ and PATH/B/<split>/ whose files are matched by name
                   (the layout pix2pix's combine_A_and_B.py reads). `direction` 'AtoB'
                   makes A the input, 'BtoA' B.
      'unpaired'   PATH/trainA/, PATH/trainB/, PATH/testA/, PATH/testB/ (CycleGAN's).
      'captioned'  PATH/<split>/images/<x>.jpg with PATH/<split>/text/<x>.txt, one
                   caption per line (Reed et al.'s CUB-200 / Oxford-102 layout; images
                   may sit in class subfolders images/<class>/<x>.jpg, the text files
                   then in text/<class>/<x>.txt, and the classes become labels).
  A name that is neither a TFDS name nor 'folder:' + an existing directory is an error
  that says which it was taken for.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

LAYOUTS = {
    "images": ("image", "label"),
    "paired": ("input", "target", "label"),
    "unpaired": ("a", "b", "a_label", "b_label"),
    "captioned": ("image", "tokens", "label"),
}

FOLDER_PREFIX = "folder:"
DIRECTIONS = ("AtoB", "BtoA")
# pix2pix resizes 256x256 images to 286 before its random 256 crop; other sizes keep the ratio.
LOAD_SIZE_RATIO = 286 / 256


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Attributes:
      name: a TFDS dataset name ('mnist', 'celeb_a:2.1.0', 'cycle_gan/horse2zebra'), an
        embedded one ('digits', 'digits_upsample', 'photo_colour'), or 'folder:PATH'
        (see the module docstring).
      split: the split the training pipeline reads.
      eval_split: the held-out split that visuals and evaluators read.
      image_size: images are centre-cropped to a square and resized to this side.
      layout: one of LAYOUTS: which features a batch carries.
      data_dir: the TFDS data directory; None for TFDS's default.
      needs_labels: the task needs class labels (a dataset without them is an error).
      direction: 'paired' only: 'AtoB' (A, the left half or folder A, is the input) or
        'BtoA', as pix2pix's --direction.
      input_feature, target_feature: 'paired' from TFDS only: the two image features
        (e.g. 'lr' and 'hr' of div2k).
      jitter: 'paired', 'unpaired', 'captioned': the training pipeline resizes to
        `load_size`, crops a random S x S window and mirrors half of the images (as
        pix2pix, CycleGAN and Reed et al. do). Never applied to held-out reads, and
        never to 'images' (whose preprocessing stays exactly as it was).
      load_size: the side images are resized to before the random crop; None means
        round(image_size * 286 / 256) (pix2pix's 286 for 256).
      channels: the channel count (1 or 3) folder images are converted to; None means
        the first image's. TFDS datasets keep their own.
      max_tokens: 'captioned': the length captions are cut or zero-padded to.
      vocabulary_file: 'captioned': a JSON file holding the tokenizer's vocabulary. If it
        exists it is used as is; otherwise the vocabulary is built from the training
        split's captions and written there (None: built, not written; it still travels
        with a run inside `meta`).
    """

    name: str
    split: str
    eval_split: str
    image_size: int
    layout: str = "images"
    data_dir: str | None = None
    needs_labels: bool = False
    direction: str = "AtoB"
    input_feature: str = "input"
    target_feature: str = "target"
    jitter: bool = True
    load_size: int | None = None
    channels: int | None = None
    max_tokens: int = 32
    vocabulary_file: str | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"DataSpec.layout must be one of {sorted(LAYOUTS)}, "
                             f"got {self.layout!r}.")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"DataSpec.direction must be 'AtoB' or 'BtoA', got "
                             f"{self.direction!r}.")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"DataSpec.channels must be None, 1 or 3, got {self.channels!r}.")
        if self.load_size is not None and self.load_size < self.image_size:
            raise ValueError(f"DataSpec.load_size={self.load_size} is smaller than "
                             f"image_size={self.image_size}; the random crop needs room.")
        if self.max_tokens <= 0:
            raise ValueError(f"DataSpec.max_tokens must be positive, got {self.max_tokens}.")

    @property
    def features(self) -> tuple[str, ...]:
        return LAYOUTS[self.layout]

    @property
    def folder(self) -> Path | None:
        """The directory of a 'folder:PATH' name, else None."""
        if not self.name.startswith(FOLDER_PREFIX):
            return None
        return Path(self.name[len(FOLDER_PREFIX):]).expanduser().absolute()

    @property
    def crop_load_size(self) -> int:
        """The side images are resized to before the random crop."""
        if self.load_size is not None:
            return self.load_size
        return max(self.image_size, round(self.image_size * LOAD_SIZE_RATIO))


_OPTIONAL_DATASET_FIELDS = ("direction", "input_feature", "target_feature", "jitter",
                            "load_size", "channels", "max_tokens", "vocabulary_file")


def from_config(config, *, layout: str = "images", needs_labels: bool = False,
                **fields) -> DataSpec:
    """The spec of the shared config fields (dataset.*, image_size, eval.split).

    The layout options (`direction`, `jitter`, `max_tokens`, ...) come from `fields`,
    else from `config.dataset.<field>` where a task's config has one, else DataSpec's
    defaults; empty strings and 0 in the config mean the default."""
    eval_split = config.eval.split if "eval" in config and "split" in config.eval else "test"
    for field in _OPTIONAL_DATASET_FIELDS:
        if field not in fields and field in config.dataset:
            value = config.dataset[field]
            if value not in ("", None) and not (field in ("load_size", "channels") and
                                                value == 0):
                fields[field] = value
    return DataSpec(name=config.dataset.name, split=config.dataset.split,
                    eval_split=eval_split, image_size=config.image_size, layout=layout,
                    data_dir=config.dataset.data_dir or None, needs_labels=needs_labels,
                    **fields)
