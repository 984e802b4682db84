"""TFDS `data_source` -> grain input pipelines that yield per-device batches of images.

A pipeline reads a prepared TFDS dataset with random access (array_record files, no
TensorFlow), shuffles it per epoch with grain's index shuffle, crops every image to a
centred square, resizes it (bilinear, antialiased when shrinking) and scales it to
[-1, 1]. Batches come out as `{'image': float32 [devices, per_device, S, S, C],
'label': int32 [devices, per_device]}`. Everything is a pure function of
(seed, step), so a pipeline's state is one integer and a restored pipeline continues
with exactly the batches the original would have produced.

Several processes: with `num_processes` > 1, process `process_index` reads and prepares
only its own consecutive rows of every global batch (rows [p*b, (p+1)*b) of it, b =
global batch / processes), so the processes together feed exactly the batches one
process would, and its `devices` axis holds its own devices only.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import shlex
from typing import Any, Mapping, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from genjax.errors import GenjaxError

# One background thread prefetches whole batches while the training step runs. Batches are
# computed by index, so thread scheduling never changes their order or content. More threads
# pay off only when decoding and resizing dominate (JPEG datasets such as CelebA, on hosts
# with spare cores); on 2 cores they slow small-image datasets through GIL contention.
DEFAULT_NUM_THREADS = 1
DEFAULT_PREFETCH_BATCHES = 8  # grain's default buffer (500 elements) is 500 *batches* here.


class DatasetNotAvailableError(GenjaxError, RuntimeError):
    """The dataset is unknown to TFDS or not prepared (in array_record format) locally."""


# The embedded datasets: TFDS builders that genjax prepares offline on first use, by name
# -> 'module:prepare function' (imported then: importing a builder's module registers it
# with TFDS).
EMBEDDED = {
    "digits": "genjax.data.digits:prepare_digits",
    "digits_upsample": "genjax.data.digits_upsample:prepare",
    "photo_colour": "genjax.data.photo_colour:prepare",
    "digits_style": "genjax.data.digits_style:prepare",
    "captioned_digits": "genjax.data.captioned_digits:prepare",
}


# An embedded paired dataset whose targets are the images of an 'images' dataset -> that
# dataset: its evaluation classifier (runs/classifier_<that dataset>) is the one that
# judges translated images. The splits are the same, so it never saw a test target.
TARGETS_OF = {"digits_upsample": "digits", "digits_style": "digits"}


def classifier_dataset(name: str) -> str:
    """The dataset whose evaluation classifier judges images of `name`: `name` itself,
    or for a paired dataset in TARGETS_OF the dataset its targets come from."""
    return TARGETS_OF.get(name, name)


def prepare_embedded(name: str, data_dir: str | os.PathLike | None = None):
    """Prepares the embedded dataset `name` (a key of EMBEDDED) unless already prepared."""
    module, _, function = EMBEDDED[name].partition(":")
    return getattr(importlib.import_module(module), function)(data_dir)


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What a model needs to know about a dataset before it sees a batch.

    Attributes:
      name: the dataset name as given (e.g. 'mnist', 'celeb_a:2.1.0').
      image_shape: (H, W, C) of the stored images; H and W are None when they vary.
      num_classes: number of label classes, or None when the dataset has no class label.
      num_examples: examples per split, e.g. {'train': 60000, 'test': 10000}; empty when
        the dataset is not prepared yet (TFDS learns the counts while preparing).
      image_key: the feature that holds the image.
      label_key: the feature that holds the class label, or None.
      image_channels: the channel count of each image feature of the batches, e.g.
        {'input': 1, 'target': 3} for a 'paired' dataset; None for 'images' (whose
        channels are image_shape[-1]).
      vocabulary: a 'captioned' dataset's token id -> word list
        (`genjax.data.text.Tokenizer`), saved with a run's metadata; else None.
      max_tokens: the length of a 'captioned' dataset's token sequences; else None.
    """

    name: str
    image_shape: tuple[int | None, int | None, int]
    num_classes: int | None
    num_examples: Mapping[str, int]
    image_key: str = "image"
    label_key: str | None = "label"
    image_channels: Mapping[str, int] | None = None
    vocabulary: tuple[str, ...] | None = None
    max_tokens: int | None = None

    def __post_init__(self):  # JSON (a run's saved metadata) gives lists back
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(self.vocabulary))


# --------------------------------------------------------------------------- sources


def _base_name(name: str) -> str:
    """'celeb_a:2.1.0' -> 'celeb_a'; 'mnist/config:1.0.0' -> 'mnist'."""
    dataset_name, _ = tfds.core.naming.parse_builder_name_kwargs(name)
    return dataset_name.name


def _unknown_name_message(name: str) -> str:
    known = tfds.list_builders(with_community_datasets=False)  # the community index needs TF
    close = difflib.get_close_matches(_base_name(name), known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"{name!r} is not a TFDS dataset name.{hint} genjax's embedded datasets are "
        f"{', '.join(repr(e) for e in EMBEDDED)}; "
        "list the TFDS names with `python -c \"import tensorflow_datasets as tfds; "
        "print(tfds.list_builders(with_community_datasets=False))\"` or see the TFDS "
        "catalog (https://www.tensorflow.org/datasets/catalog/overview)."
    )


def _builder(name: str, data_dir: str | os.PathLike | None) -> tfds.core.DatasetBuilder:
    """The TFDS builder for `name`, preparing an embedded dataset on first use."""
    data_dir = None if data_dir is None else os.fspath(data_dir)
    try:
        if _base_name(name) in EMBEDDED:
            prepare_embedded(_base_name(name), data_dir)
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetNotAvailableError(_unknown_name_message(name)) from None
    except (AssertionError, ValueError) as error:  # unknown version or config
        raise DatasetNotAvailableError(f"Cannot load TFDS dataset {name!r}: {error}") from None
    except ImportError as error:
        # Some builders (coco_captions, ...) import TensorFlow; their prepared files read
        # without it, through the builder TFDS makes from the files' metadata.
        try:
            return tfds.core.read_only_builder.builder_from_files(name, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError:
            raise DatasetNotAvailableError(
                f"TFDS's builder of {name!r} needs {error.name or 'a missing module'} "
                f"({error}), and {name!r} is not prepared in "
                f"{data_dir or 'the default TFDS data directory'} to be read without it. "
                f"Prepare it once where TensorFlow is installed (pip install tensorflow && "
                f"tfds build {shlex.quote(name)} --file_format=array_record) and pass its "
                "data_dir.") from None


def _formats_on_disk(builder: tfds.core.DatasetBuilder) -> set[str]:
    """The record formats ('array_record', 'tfrecord', ...) present in the builder's folder."""
    folder = epath.Path(builder.data_dir)
    if not folder.exists():
        return set()
    formats = {f.value for f in tfds.core.FileFormat}
    # Shards are named '{name}-{split}.{format}-{shard:05d}-of-{count:05d}'.
    found = {path.name.split(".")[-1].split("-")[0] for path in folder.iterdir()}
    return found & formats


def _not_prepared_message(name: str, builder, formats: set[str]) -> str:
    # The root TFDS resolved: the given data_dir, else TFDS_DATA_DIR as read when TFDS was
    # imported, else ~/tensorflow_datasets.
    root = os.fspath(builder.data_dir_root)
    command = (
        f"pip install tensorflow && tfds build {shlex.quote(name)} "
        f"--data_dir={shlex.quote(root)} --file_format=array_record"
    )
    if formats:
        found = (
            f"is prepared in {root} (in {builder.data_dir}) only in "
            f"{', '.join(sorted(formats))} format, which has no random access"
        )
        command += " --overwrite"
    else:
        found = f"is not prepared in the data directory {root} (searched {builder.data_dir})"
    return (
        f"The TFDS dataset {name!r} {found}. genjax reads TFDS datasets with "
        "tfds.data_source, which needs them prepared in array_record format; preparing "
        "one of TFDS's own datasets needs TensorFlow once (genjax itself does not). "
        f"Prepare it with:  {command}  -- or pass the data_dir (or set TFDS_DATA_DIR) of a "
        "directory where it is already prepared."
    )


def dataset_source(name: str, split: str, data_dir: str | os.PathLike | None = None):
    """A random-access source (`len`, `[i]` -> dict of numpy arrays) over a prepared split.

    `name` may carry a config and version ('mnist', 'celeb_a:2.1.0'); `split` may be any
    TFDS split string ('train', 'train[:90%]'). `data_dir=None` uses TFDS's default
    (`TFDS_DATA_DIR` or ~/tensorflow_datasets). The embedded datasets (EMBEDDED) are
    prepared on first use; any other dataset must already be prepared in array_record
    format, otherwise `DatasetNotAvailableError` says how to prepare it (this never
    downloads: offline, TFDS's download path retries the network for minutes).
    """
    builder = _builder(name, data_dir)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except ImportError:  # the builder's code needs TensorFlow: read the prepared files
        return builder.as_data_source(split=split)
    except Exception as error:
        # TFDS's own message for a missing dataset talks about the TFRECORD format; only
        # when the array_record files are really absent is the cause ours to explain.
        formats = _formats_on_disk(builder)
        if tfds.core.FileFormat.ARRAY_RECORD.value in formats:
            raise
        message = _not_prepared_message(name, builder, formats)
        raise DatasetNotAvailableError(message) from error


def dataset_meta(name: str, data_dir: str | os.PathLike | None = None) -> DatasetMeta:
    """Image shape, classes and split sizes of a dataset, from its TFDS metadata."""
    info = _builder(name, data_dir).info
    features = info.features
    if "image" not in features:
        raise ValueError(
            f"TFDS dataset {name!r} has no 'image' feature (it has {sorted(features.keys())}); "
            "genjax pipelines need image datasets."
        )
    shape = tuple(features["image"].shape)
    if len(shape) == 2:  # a greyscale Tensor feature without a channel axis
        shape += (1,)
    label = features["label"] if "label" in features else None
    is_class_label = isinstance(label, tfds.features.ClassLabel)
    return DatasetMeta(
        name=name,
        image_shape=shape,
        num_classes=label.num_classes if is_class_label else None,
        num_examples={split: info.splits[split].num_examples for split in info.splits},
        label_key="label" if is_class_label else None,
    )


# ------------------------------------------------------------------------ transforms


def _center_square(image: np.ndarray) -> np.ndarray:
    """Crops the centred square of an [H, W, C] image (a view; CelebA is 218x178)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes a square uint8 [s, s, C] image to [size, size, C] with PIL's BILINEAR.

    PIL rather than a batched numpy contraction: PIL's filter is antialiased when
    shrinking, runs single-threaded without the GIL, and is faster on large images. The
    small matrix products of a numpy resize go to OpenBLAS, whose threads spin against
    the training step's threads: measured here under load, 12 ms instead of 0.07 ms for
    a batch of 64 digits.
    """
    if image.shape[0] == size:
        return image
    image = np.ascontiguousarray(image)

    def resize_2d(plane):  # PIL modes: 'L' (H, W), 'RGB' (H, W, 3), 'RGBA' (H, W, 4)
        return np.asarray(Image.fromarray(plane).resize((size, size), Image.BILINEAR))

    if image.shape[-1] in (3, 4):
        return resize_2d(image)
    return np.stack([resize_2d(image[..., k]) for k in range(image.shape[-1])], axis=-1)


def _preprocess(example: dict[str, Any], *, image_key: str, label_key: str | None,
                image_size: int) -> tuple[np.ndarray, Any]:
    """Per-record step: the square-cropped, resized uint8 image and the label."""
    image = np.asarray(example[image_key])
    if image.dtype != np.uint8:
        raise ValueError(f"genjax expects uint8 images, but {image_key!r} is {image.dtype}.")
    if image.ndim == 2:
        image = image[..., None]
    label = example[label_key] if label_key is not None else 0
    return _resize(_center_square(image), image_size), label


def _collate(examples: Sequence[tuple[np.ndarray, Any]]) -> dict[str, np.ndarray]:
    """Per-batch step: stack and scale 0..255 to [-1, 1] in one vectorised operation."""
    images = np.stack([image for image, _ in examples]).astype(np.float32)
    # Division, not multiplication by 1/127.5: 255 / 127.5 is exactly 2, so 255 maps to 1.
    scaled = images / np.float32(127.5) - np.float32(1)
    labels = np.asarray([label for _, label in examples], dtype=np.int32)
    return {"image": scaled, "label": labels}


# -------------------------------------------------------------------------- pipeline


class Pipeline(grain.DatasetIterator):
    """Iterator of per-device batches; a grain `DatasetIterator`, so checkpointable.

    `get_state()` returns a small JSON-serialisable dict and `set_state(state)` puts a
    freshly made pipeline (same arguments) where the saved one was; it also works with
    `grain.checkpoint.CheckpointSave` / `CheckpointRestore` in an orbax checkpoint.

    Attributes:
      meta: the dataset's `DatasetMeta`.
      num_devices, per_device_batch, image_size, num_channels: the batch layout.
      steps_per_epoch: batches in one pass over the split.
    """

    def __init__(self, parent: grain.DatasetIterator, *, meta: DatasetMeta, num_devices: int,
                 per_device_batch: int, image_size: int, steps_per_epoch: int):
        super().__init__(parent)
        self.meta = meta
        self.num_devices = num_devices
        self.per_device_batch = per_device_batch
        self.image_size = image_size
        self.num_channels = meta.image_shape[-1]
        self.steps_per_epoch = steps_per_epoch

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._parent)
        # Row-major split of the global batch: device d gets examples [d*b, (d+1)*b).
        return {key: value.reshape(self.num_devices, -1, *value.shape[1:])
                for key, value in batch.items()}

    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state)


def _check_layout(global_batch_size: int, num_devices: int, image_size: int,
                  num_processes: int = 1, process_index: int = 0) -> None:
    for label, value in [("global_batch_size", global_batch_size),
                         ("num_devices", num_devices), ("image_size", image_size),
                         ("num_processes", num_processes)]:
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{label} must be a positive integer, got {value!r}.")
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process_index must be in 0..{num_processes - 1}, got "
                         f"{process_index}.")
    total = num_devices * num_processes
    if global_batch_size % total:
        nearest = total * max(1, global_batch_size // total)
        where = (f"num_devices={num_devices}" if num_processes == 1 else
                 f"{total} devices ({num_processes} processes x {num_devices} devices)")
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by {where}: every "
            f"device must get the same number of examples. Use a multiple of {total}, "
            f"e.g. {nearest}."
        )


def process_share(dataset, global_batch_size: int, num_processes: int, process_index: int,
                  batch_fn) -> Any:
    """`dataset` (a grain MapDataset of examples) in batches of this process's rows of
    each global batch (`drop_remainder`): global batch k is the process batches
    k*P .. k*P+P-1, in order, and process p takes batch k*P+p."""
    local = global_batch_size // num_processes
    batches = dataset.batch(local, drop_remainder=True, batch_fn=batch_fn)
    if num_processes == 1:
        return batches
    steps = len(dataset) // global_batch_size
    return batches[: steps * num_processes][process_index::num_processes]


def _check_multiprocess(num_processes: int, drop_remainder: bool) -> None:
    if num_processes > 1 and not drop_remainder:
        raise ValueError("A pipeline shared by several processes drops the last, partial "
                         "batch of each epoch: use drop_remainder=True.")


def _check_fits(name: str, split: str, size: int, global_batch_size: int, num_devices: int,
                drop_remainder: bool) -> None:
    if global_batch_size > size:
        raise ValueError(
            f"global_batch_size={global_batch_size} is larger than split {split!r} of "
            f"{name!r}, which has {size} examples; use a batch of at most {size}."
        )
    remainder = size % global_batch_size
    if not drop_remainder and remainder % num_devices:
        raise ValueError(
            f"With drop_remainder=False the last batch of split {split!r} ({size} examples) "
            f"has {remainder} examples, which do not divide among {num_devices} devices; "
            "use drop_remainder=True or a batch size that leaves a divisible remainder."
        )


def make_pipeline(
    name: str,
    split: str,
    *,
    global_batch_size: int,
    num_devices: int,
    image_size: int,
    seed: int,
    data_dir: str | os.PathLike | None = None,
    shuffle: bool = True,
    repeat: bool = True,
    drop_remainder: bool = True,
    num_threads: int = DEFAULT_NUM_THREADS,
    prefetch_batches: int = DEFAULT_PREFETCH_BATCHES,
    num_processes: int = 1,
    process_index: int = 0,
) -> Pipeline:
    """A deterministic, resumable pipeline of per-device batches from a TFDS split.

    Yields `{'image': float32 [num_devices, global_batch_size // num_devices, image_size,
    image_size, C] in [-1, 1], 'label': int32 [num_devices, global_batch_size //
    num_devices]}` (labels are zeros when the dataset has none). Images keep their channel
    count; non-square ones are centre-cropped to a square first. With `shuffle`, each
    epoch is a different permutation, all determined by `seed`. With `repeat`, the
    iterator never ends; without, it ends after one epoch. `num_threads` threads compute
    up to `prefetch_batches` batches ahead (0 threads: compute on demand). With
    `num_processes` > 1 (training only: `drop_remainder`), this process's share of each
    global batch (module docstring), `num_devices` being this process's devices.

    Raises:
      ValueError: for a batch size that is not a positive multiple of num_devices, or
        larger than the split.
      DatasetNotAvailableError: for an unknown or unprepared dataset (see dataset_source).
    """
    _check_layout(global_batch_size, num_devices, image_size, num_processes, process_index)
    source = dataset_source(name, split, data_dir)
    meta = dataset_meta(name, data_dir)
    return pipeline_from_source(
        source, meta, split, global_batch_size=global_batch_size, num_devices=num_devices,
        image_size=image_size, seed=seed, shuffle=shuffle, repeat=repeat,
        drop_remainder=drop_remainder, num_threads=num_threads,
        prefetch_batches=prefetch_batches, num_processes=num_processes,
        process_index=process_index)


def pipeline_from_source(source, meta: DatasetMeta, split: str, *, global_batch_size: int,
                         num_devices: int, image_size: int, seed: int, shuffle: bool = True,
                         repeat: bool = True, drop_remainder: bool = True,
                         num_threads: int = DEFAULT_NUM_THREADS,
                         prefetch_batches: int = DEFAULT_PREFETCH_BATCHES,
                         num_processes: int = 1, process_index: int = 0) -> Pipeline:
    """`make_pipeline` over any random-access source of `{image_key, label_key}` records
    (a TFDS data_source, an image folder)."""
    _check_layout(global_batch_size, num_devices, image_size, num_processes, process_index)
    _check_multiprocess(num_processes, drop_remainder)
    _check_fits(meta.name, split, len(source), global_batch_size, num_devices, drop_remainder)

    # `.seed()` rather than `shuffle(seed=...)`: grain then hashes the seed (SeedSequence)
    # before the shuffle adds the epoch to it, so seeds s and s+1 do not produce the same
    # permutations one epoch apart.
    dataset = grain.MapDataset.source(source).seed(int(seed))
    if shuffle:
        dataset = dataset.shuffle()  # index shuffle: a new permutation every epoch
    dataset = dataset.map(functools.partial(
        _preprocess, image_key=meta.image_key, label_key=meta.label_key, image_size=image_size))
    # Batch before repeat so epochs never mix inside a batch; repeat after batch still
    # reshuffles, because batch k of epoch e reads shuffled indices of epoch e.
    if num_processes > 1:
        dataset = process_share(dataset, global_batch_size, num_processes, process_index,
                                _collate)
    else:
        dataset = dataset.batch(global_batch_size, drop_remainder=drop_remainder,
                                batch_fn=_collate)
    steps_per_epoch = len(dataset)
    if repeat:
        dataset = dataset.repeat()
    read_options = grain.ReadOptions(num_threads=num_threads,
                                     prefetch_buffer_size=prefetch_batches)
    iterator = iter(dataset.to_iter_dataset(read_options))
    return Pipeline(iterator, meta=meta, num_devices=num_devices,
                    per_device_batch=global_batch_size // (num_devices * num_processes),
                    image_size=image_size, steps_per_epoch=steps_per_epoch)
