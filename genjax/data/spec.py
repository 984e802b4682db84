"""What a task's batches carry and where they come from: the `DataSpec`.

A task module's `data_spec(config) -> DataSpec` tells the data layer which features a
batch holds; the loop, the evaluators and the notebooks then ask the data layer for
batches of that spec without looking inside them:

  pipeline(spec, global_batch_size=..., num_devices=..., seed=...) -> Pipeline
      the resumable training pipeline of `spec.split`: per-device batches
      `{feature: array [devices, per_device, ...]}`.
  load_split(spec, split, num=None, seed=0) -> {feature: array [n, ...]}
      a whole held-out split (or a seeded random subset of `num` examples) in the
      training preprocessing, for evaluators.
  held_out_batch(spec, num, seed) -> {feature: array [num, ...]}
      one fixed batch of `spec.eval_split`: what the loop hands `task.visuals`.
  meta(spec) -> DatasetMeta
      shapes, classes and split sizes, before any batch is read.

Layouts and the features of their batches (images float32 NHWC in [-1, 1]):
  'images'    {'image', 'label'}: labelled images (label 0 where a dataset has none).
"""

from __future__ import annotations

import dataclasses

LAYOUTS = {
    "images": ("image", "label"),
}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Attributes:
      name: a TFDS dataset name ('mnist', 'celeb_a:2.1.0') or an embedded one ('digits').
      split: the split the training pipeline reads.
      eval_split: the held-out split that visuals and evaluators read.
      image_size: images are centre-cropped to a square and resized to this side.
      layout: one of LAYOUTS: which features a batch carries.
      data_dir: the TFDS data directory; None for TFDS's default.
      needs_labels: the task needs class labels (a dataset without them is an error).
    """

    name: str
    split: str
    eval_split: str
    image_size: int
    layout: str = "images"
    data_dir: str | None = None
    needs_labels: bool = False

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"DataSpec.layout must be one of {sorted(LAYOUTS)}, "
                             f"got {self.layout!r}.")

    @property
    def features(self) -> tuple[str, ...]:
        return LAYOUTS[self.layout]


def from_config(config, *, layout: str = "images", needs_labels: bool = False) -> DataSpec:
    """The spec of the shared config fields (dataset.*, image_size, eval.split)."""
    eval_split = config.eval.split if "eval" in config and "split" in config.eval else "test"
    return DataSpec(name=config.dataset.name, split=config.dataset.split,
                    eval_split=eval_split, image_size=config.image_size, layout=layout,
                    data_dir=config.dataset.data_dir or None, needs_labels=needs_labels)
