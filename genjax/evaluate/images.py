"""Real images for evaluation, read through the same pipeline as training batches (same
crop, resize and scaling), so real and generated images differ only in where they
came from."""

from __future__ import annotations

import numpy as np

from genjax import data

MAX_BATCH = 256


def split_size(name: str, split: str, data_dir: str | None = None) -> int:
    return len(data.dataset_source(name, split, data_dir))


def load_images(name: str, split: str, *, image_size: int, num: int | None = None,
                seed: int = 0, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [n, S, S, C] in [-1, 1], labels int32 [n]) of a split.

    All of it when `num` is None or at least the split's size (in record order);
    otherwise a random subset of `num` images without replacement, fixed by `seed`.
    """
    size = split_size(name, split, data_dir)
    subset = num is not None and num < size
    pipeline = data.make_pipeline(
        name, split, global_batch_size=min(MAX_BATCH, size), num_devices=1,
        image_size=image_size, seed=seed, data_dir=data_dir, shuffle=subset, repeat=False,
        drop_remainder=False, num_threads=0)
    count = num if subset else size
    images, labels, total = [], [], 0
    for batch in pipeline:
        images.append(batch["image"][0])
        labels.append(batch["label"][0])
        total += labels[-1].shape[0]
        if total >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]
