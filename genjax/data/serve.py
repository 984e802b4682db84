"""Batches of a `DataSpec` (see `genjax.data.spec`): the data layer's entry points.

TFDS 'images' specs are served by `pipeline.py` exactly as before the other layouts
existed; every other spec (the 'paired', 'unpaired' and 'captioned' layouts, and any
'folder:PATH') by `layouts.py`, through the same grain graph."""

from __future__ import annotations

import numpy as np

from genjax.data import layouts
from genjax.data import pipeline as pipeline_lib
from genjax.data.spec import DataSpec

MAX_EVAL_BATCH = 256  # Records read per batch when loading a held-out split.


def _tfds_images(spec: DataSpec) -> bool:
    layouts.check_name(spec)
    return spec.layout == "images" and spec.folder is None


def meta(spec: DataSpec) -> pipeline_lib.DatasetMeta:
    """The dataset's shapes, classes and split sizes (and a 'captioned' dataset's
    vocabulary); a clear error for a dataset that is unknown, not prepared, or lacks the
    labels the task needs."""
    if _tfds_images(spec):
        result = pipeline_lib.dataset_meta(spec.name, data_dir=spec.data_dir)
    else:
        result = layouts.layout_meta(spec)
    if spec.needs_labels and result.num_classes is None:
        raise pipeline_lib.DatasetNotAvailableError(
            f"Dataset {spec.name!r} has no class labels, which this task needs. Use a "
            "labelled dataset (e.g. 'digits', 'mnist', 'cifar10', or a folder with one "
            "subfolder per class).")
    return result


def training_pipeline(spec: DataSpec, *, global_batch_size: int, num_devices: int, seed: int,
             **options) -> pipeline_lib.Pipeline:
    """The resumable training pipeline of `spec.split` (options: see `make_pipeline`)."""
    if not _tfds_images(spec):
        return layouts.make_pipeline(spec, global_batch_size=global_batch_size,
                                     num_devices=num_devices, seed=seed, **options)
    return pipeline_lib.make_pipeline(
        spec.name, spec.split, global_batch_size=global_batch_size, num_devices=num_devices,
        image_size=spec.image_size, seed=seed, data_dir=spec.data_dir, **options)


def split_size(spec: DataSpec, split: str) -> int:
    """Records in `split`; for 'unpaired', the larger domain's count (its epoch)."""
    if not _tfds_images(spec):
        return max(layouts.split_sizes(spec, split).values())
    return len(pipeline_lib.dataset_source(spec.name, split, spec.data_dir))


def load_split(spec: DataSpec, split: str, num: int | None = None,
               seed: int = 0) -> dict[str, np.ndarray]:
    """`{feature: [n, ...]}` of a split in the training preprocessing (never jittered):
    all of it (in record order) when `num` is None or at least the split's size, else a
    random subset of `num` examples without replacement, fixed by `seed`. 'captioned'
    adds 'caption' (numpy str [n], the captions the tokens encode); 'unpaired' reads
    each domain on its own, so 'a' and 'b' may differ in count."""
    if not _tfds_images(spec):
        return layouts.load_split(spec, split, num, seed)
    size = split_size(spec, split)
    subset = num is not None and num < size
    batches = pipeline_lib.make_pipeline(
        spec.name, split, global_batch_size=min(MAX_EVAL_BATCH, size), num_devices=1,
        image_size=spec.image_size, seed=seed, data_dir=spec.data_dir, shuffle=subset,
        repeat=False, drop_remainder=False, num_threads=0)
    count = num if subset else size
    parts, total = [], 0
    for batch in batches:
        parts.append({key: value[0] for key, value in batch.items()})
        total += len(parts[-1][spec.features[0]])
        if total >= count:
            break
    return {key: np.concatenate([p[key] for p in parts])[:count] for key in parts[0]}


def held_out_batch(spec: DataSpec, num: int, seed: int) -> dict[str, np.ndarray]:
    """One fixed batch of `spec.eval_split` (a subset fixed by `seed`), for visuals:
    the layout's features only (numbers; a 'captioned' batch's strings are left out)."""
    batch = load_split(spec, spec.eval_split, num=num, seed=seed)
    return {key: batch[key] for key in spec.features}
