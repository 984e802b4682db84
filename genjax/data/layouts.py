"""The 'paired', 'unpaired' and 'captioned' layouts, and 'images' from a folder.

Every layout is the same grain graph as the 'images' pipeline (`pipeline.py`): a
random-access source (a TFDS data_source or an image folder) -> `.seed(seed)` -> index
shuffle (a new permutation every epoch) -> a per-record transform -> batch -> repeat.
The transform is a `random_map`: grain seeds its generator from (seed, position in the
stream), and the position counts across epochs, so a record's jitter, mirroring and
drawn caption are a pure function of (seed, epoch, index) and a restored pipeline
continues with exactly the batches the original would have produced. Images are
cropped and resized as in 'images' (`_center_square`, `_resize`) and scaled to [-1, 1]
per batch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import grain
import numpy as np
import tensorflow_datasets as tfds

from genjax.data import folders
from genjax.data import pipeline as pipeline_lib
from genjax.data.spec import FOLDER_PREFIX, DataSpec
from genjax.data.text import Tokenizer

MAX_EVAL_BATCH = 256  # Records read per batch when loading a held-out split.
DOMAINS = ("a", "b")
# The ClassLabel TFDS's cycle_gan datasets carry says which domain a record is from
# (A or B), which the split already says: it is no class label.
_DOMAIN_LABEL_NAMES = ["A", "B"]


# --------------------------------------------------------------------- naming


def is_folder(spec: DataSpec) -> bool:
    """True for a 'folder:PATH' name (whose directory must exist)."""
    folder = spec.folder
    if folder is None:
        return False
    if not folder.is_dir():
        raise pipeline_lib.DatasetNotAvailableError(
            f"The dataset {spec.name!r} names the folder {folder}, which does not exist "
            f"(the current directory is {os.getcwd()}). Give the path of an existing "
            f"directory after '{FOLDER_PREFIX}'.")
    return True


def check_name(spec: DataSpec) -> None:
    """A clear error for a name that is neither a TFDS name nor 'folder:' + a directory,
    raised before TFDS's own 'not a TFDS dataset name' message would be."""
    if is_folder(spec):
        return
    if Path(spec.name).expanduser().is_dir():
        try:
            pipeline_lib._builder(spec.name, spec.data_dir)
        except pipeline_lib.DatasetNotAvailableError:
            raise pipeline_lib.DatasetNotAvailableError(
                f"{spec.name!r} is not a TFDS dataset name but a directory. To read an "
                f"image folder, name it '{FOLDER_PREFIX}{spec.name}' (see genjax.data.spec "
                "for the folder layouts).") from None


def domain_split(split: str, domain: str) -> str:
    """'train' -> 'trainA' (TFDS slices keep their place: 'train[:10]' -> 'trainA[:10]')."""
    base, bracket, rest = split.partition("[")
    return base + domain.upper() + bracket + rest


# ----------------------------------------------------------------- TFDS helpers


def _tfds_features(spec: DataSpec):
    return pipeline_lib._builder(spec.name, spec.data_dir).info


def _class_label(features, key: str = "label", *, ignore_domains: bool = False):
    label = features[key] if key in features else None
    if not isinstance(label, tfds.features.ClassLabel):
        return None
    if ignore_domains and list(label.names) == _DOMAIN_LABEL_NAMES:
        return None
    return label


def _num_classes(label) -> int | None:
    return None if label is None else label.num_classes


def _image_channels(features, key: str, name: str) -> int:
    if key not in features:
        raise pipeline_lib.DatasetNotAvailableError(
            f"TFDS dataset {name!r} has no feature {key!r} (it has "
            f"{sorted(features.keys())}). Name its image features in the DataSpec "
            "(input_feature / target_feature for 'paired').")
    shape = tuple(features[key].shape)
    if len(shape) not in (2, 3):
        raise pipeline_lib.DatasetNotAvailableError(
            f"Feature {key!r} of TFDS dataset {name!r} has shape {shape}, not an image's.")
    return 1 if len(shape) == 2 else shape[-1]


def _tfds_captions(record: Mapping[str, Any]) -> list[str]:
    """The captions of a TFDS record: coco_captions' {'captions': {'text': [...]}}, or a
    'captions' sequence of strings, or one 'caption'."""
    if "captions" in record:
        value = record["captions"]
        value = value["text"] if isinstance(value, Mapping) else value
    elif "caption" in record:
        value = [record["caption"]]
    else:
        raise pipeline_lib.DatasetNotAvailableError(
            f"A captioned TFDS dataset needs a 'captions' or 'caption' feature; this one "
            f"has {sorted(record)}.")
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.ravel(value)
            if not isinstance(v, Mapping)]


@functools.lru_cache(maxsize=8)
def _tfds_training_captions(name: str, split: str, data_dir: str | None) -> tuple[str, ...]:
    # Reads every record (images included: TFDS's partial decoding needs TensorFlow);
    # cached, and a vocabulary_file saves it across runs.
    source = pipeline_lib.dataset_source(name, split, data_dir)
    return tuple(c for i in range(len(source)) for c in _tfds_captions(source[i]))


# --------------------------------------------------------------- folder helpers


def _first_channels(spec: DataSpec, files) -> int:
    return spec.channels if spec.channels is not None else folders.channels_of(files[0])


def _images_folder_classes(root: Path) -> list[str]:
    names = set()
    for split in folders.subfolders(root):
        names.update(p.name for p in folders.subfolders(split))
    return sorted(names)


def _paired_two_folders(root: Path) -> bool:
    return (root / "A").is_dir() and (root / "B").is_dir()


def _captioned_files(root: Path, split: str, classes):
    base = folders.require_dir(root / split, f"split {split!r}")
    images_dir = folders.require_dir(base / "images", f"the images of split {split!r}")
    text_dir = folders.require_dir(base / "text", f"the caption files of split {split!r}")
    files, labels, _ = folders.labelled_images(images_dir, f"images of split {split!r}",
                                               classes)
    return files, folders.read_captions(images_dir, text_dir, files), labels


def _captioned_classes(root: Path) -> list[str]:
    names = set()
    for split in folders.subfolders(root):
        if (split / "images").is_dir():
            names.update(p.name for p in folders.subfolders(split / "images"))
    return sorted(names)


# --------------------------------------------------------------------------- meta


def _tokenizer(spec: DataSpec, training_captions: Callable[[], list[str]]) -> Tokenizer:
    if spec.vocabulary_file and Path(spec.vocabulary_file).exists():
        saved = Tokenizer.load(spec.vocabulary_file)
        return Tokenizer(saved.vocabulary, spec.max_tokens)
    tokenizer = Tokenizer.build(training_captions(), spec.max_tokens)
    if spec.vocabulary_file:
        tokenizer.save(spec.vocabulary_file)
    return tokenizer


def layout_meta(spec: DataSpec) -> pipeline_lib.DatasetMeta:
    """The DatasetMeta of a spec served by this module (every layout but TFDS 'images')."""
    return _folder_meta(spec) if is_folder(spec) else _tfds_meta(spec)


def _meta(spec, channels: dict[str, int], num_classes, num_examples, tokenizer=None):
    first = next(iter(channels.values()))
    return pipeline_lib.DatasetMeta(
        name=spec.name, image_shape=(None, None, first), num_classes=num_classes,
        num_examples=num_examples, image_key=next(iter(channels)),
        label_key="label" if num_classes else None, image_channels=channels,
        vocabulary=None if tokenizer is None else tokenizer.vocabulary,
        max_tokens=None if tokenizer is None else tokenizer.max_tokens)


def _folder_meta(spec: DataSpec) -> pipeline_lib.DatasetMeta:
    root = spec.folder
    if spec.layout == "images":
        classes = _images_folder_classes(root)
        files, _, _ = folders.labelled_images(root / spec.split, f"split {spec.split!r}",
                                              classes or None)
        counts = {s.name: folders.count_images(s) for s in folders.subfolders(root)}
        return _meta(spec, {"image": _first_channels(spec, files)}, len(classes) or None,
                     counts)
    if spec.layout == "paired":
        if _paired_two_folders(root):
            inputs, targets = _paired_files(spec, spec.split)
            counts = {s: folders.count_images(root / "A" / s)
                      for s in folders.split_dirs(root / "A")}
            channels = {"input": _first_channels(spec, inputs),
                        "target": _first_channels(spec, targets)}
        else:
            files = folders.list_images(root / spec.split, f"split {spec.split!r}")
            counts = {s: folders.count_images(root / s) for s in folders.split_dirs(root)}
            both = _first_channels(spec, files)
            channels = {"input": both, "target": both}
        return _meta(spec, channels, None, counts)
    if spec.layout == "unpaired":
        channels = {}
        for domain in DOMAINS:
            split = domain_split(spec.split, domain)
            files = folders.list_images(root / split, f"domain {domain.upper()} of split "
                                                      f"{spec.split!r}")
            channels[domain] = _first_channels(spec, files)
        counts = {s: folders.count_images(root / s) for s in folders.split_dirs(root)}
        return _meta(spec, channels, None, counts)
    # captioned
    classes = _captioned_classes(root)
    files, captions, _ = _captioned_files(root, spec.split, classes or None)
    counts = {s: folders.count_images(root / s / "images") for s in folders.split_dirs(root)
              if (root / s / "images").is_dir()}
    tokenizer = _tokenizer(spec, lambda: [c for cs in captions for c in cs])
    return _meta(spec, {"image": _first_channels(spec, files)}, len(classes) or None,
                 counts, tokenizer)


def _tfds_meta(spec: DataSpec) -> pipeline_lib.DatasetMeta:
    info = _tfds_features(spec)
    features = info.features
    counts = {split: info.splits[split].num_examples for split in info.splits}
    if spec.layout == "paired":
        channels = {"input": _image_channels(features, spec.input_feature, spec.name),
                    "target": _image_channels(features, spec.target_feature, spec.name)}
        if spec.direction == "BtoA":
            channels = {"input": channels["target"], "target": channels["input"]}
        label = _class_label(features)
        return _meta(spec, channels, _num_classes(label), counts)
    if spec.layout == "unpaired":
        channel = _image_channels(features, "image", spec.name)
        label = _class_label(features, ignore_domains=True)
        return _meta(spec, {"a": channel, "b": channel}, _num_classes(label), counts)
    if spec.layout == "captioned":
        label = _class_label(features)
        tokenizer = _tokenizer(spec, lambda: list(_tfds_training_captions(
            spec.name, spec.split, spec.data_dir)))
        return _meta(spec, {"image": _image_channels(features, "image", spec.name)},
                     _num_classes(label), counts, tokenizer)
    raise AssertionError(spec.layout)  # TFDS 'images' is served by pipeline.py


# ------------------------------------------------------------------------ sources


def _paired_files(spec: DataSpec, split: str):
    root = spec.folder
    inputs, targets = folders.match_pairs(
        folders.require_dir(root / "A" / split, f"inputs A of split {split!r}"),
        folders.require_dir(root / "B" / split, f"targets B of split {split!r}"))
    return (inputs, targets) if spec.direction == "AtoB" else (targets, inputs)


def open_split(spec: DataSpec, split: str, meta) -> dict[str, Any]:
    """{role: random-access source} of a split: {'': source}, or {'a', 'b'} ('unpaired')."""
    channels = meta.image_channels
    if is_folder(spec):
        root = spec.folder
        if spec.layout == "images":
            classes = _images_folder_classes(root) or None
            files, labels, _ = folders.labelled_images(root / split, f"split {split!r}",
                                                       classes)
            return {"": folders.ImageSource(files, labels, channels["image"])}
        if spec.layout == "paired":
            if _paired_two_folders(root):
                inputs, targets = _paired_files(spec, split)
                return {"": folders.PairedFilesSource(
                    inputs, targets, (channels["input"], channels["target"]))}
            files = folders.list_images(root / split, f"split {split!r}")
            return {"": folders.SideBySideSource(files, channels["input"], spec.direction)}
        if spec.layout == "unpaired":
            return {domain: folders.ImageSource(
                files := folders.list_images(root / domain_split(split, domain),
                                             f"domain {domain.upper()} of split {split!r}"),
                [0] * len(files), channels[domain]) for domain in DOMAINS}
        files, captions, labels = _captioned_files(root, split,
                                                   _captioned_classes(root) or None)
        return {"": folders.CaptionedSource(files, captions, labels, channels["image"])}
    if spec.layout == "unpaired":
        return {domain: pipeline_lib.dataset_source(spec.name, domain_split(split, domain),
                                                    spec.data_dir) for domain in DOMAINS}
    return {"": pipeline_lib.dataset_source(spec.name, split, spec.data_dir)}


# -------------------------------------------------------------------- transforms


def _as_image(value, what: str) -> np.ndarray:
    image = np.asarray(value)
    if image.dtype != np.uint8:
        raise ValueError(f"genjax expects uint8 images, but {what!r} is {image.dtype}.")
    return image[..., None] if image.ndim == 2 else image


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """The centred square resized to size x size: the held-out preprocessing."""
    return pipeline_lib._resize(pipeline_lib._center_square(image), size)


@dataclasses.dataclass(frozen=True)
class Jitter:
    """pix2pix's augmentation: resize to load_size, crop size x size at (top, left),
    mirror left-right when `flip`. One Jitter applied to both images of a pair keeps
    them aligned pixel for pixel."""

    load_size: int
    size: int
    top: int
    left: int
    flip: bool

    @classmethod
    def draw(cls, rng: np.random.Generator, load_size: int, size: int) -> "Jitter":
        top, left = rng.integers(0, load_size - size + 1, size=2)
        return cls(load_size, size, int(top), int(left), bool(rng.random() < 0.5))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = _fit(image, self.load_size)
        image = image[self.top: self.top + self.size, self.left: self.left + self.size]
        return np.ascontiguousarray(image[:, ::-1] if self.flip else image)


def _images_fn(*, roles: Mapping[str, str], label_key: str | None, spec: DataSpec,
               train: bool) -> Callable[[dict, np.random.Generator], dict]:
    """A random_map transform: {out_name: uint8 image} for {out_name: record key} of
    `roles`, all with one jitter draw, plus 'label'."""
    jitter = train and spec.jitter

    def transform(record, rng):
        images = {out: _as_image(record[key], key) for out, key in roles.items()}
        if jitter:
            crop = Jitter.draw(rng, spec.crop_load_size, spec.image_size)
            images = {out: crop(image) for out, image in images.items()}
        else:
            images = {out: _fit(image, spec.image_size) for out, image in images.items()}
        images["label"] = record[label_key] if label_key is not None else 0
        return images

    return transform


def _captioned_fn(*, spec: DataSpec, tokenizer: Tokenizer, label_key: str | None,
                  train: bool, keep_text: bool, folder: bool):
    image_fn = _images_fn(roles={"image": "image"}, label_key=label_key, spec=spec,
                          train=train)

    def transform(record, rng):
        captions = record["captions"] if folder else _tfds_captions(record)
        if not captions:
            raise pipeline_lib.DatasetNotAvailableError(
                "A record of the captioned dataset has no caption; every image needs one.")
        caption = captions[int(rng.integers(len(captions)))]  # drawn before the jitter
        example = image_fn(record, rng)
        example["tokens"] = tokenizer.encode(caption)
        if keep_text:
            example["caption"] = caption
        return example

    return transform


def _collate(examples, *, image_keys) -> dict[str, np.ndarray]:
    batch = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        if key in image_keys:  # 0..255 -> [-1, 1] exactly as the 'images' layout does
            batch[key] = np.stack(values).astype(np.float32) / np.float32(127.5) - np.float32(1)
        elif key == "caption":
            batch[key] = np.asarray(values, dtype=str)
        else:
            batch[key] = np.asarray(values, dtype=np.int32)
    return batch


def _transform(spec: DataSpec, meta, *, train: bool, keep_text: bool = False):
    folder = is_folder(spec)
    label_key = "label" if (folder or meta.label_key) else None
    if spec.layout == "paired":
        if folder:
            roles = {"input": "input", "target": "target"}
        else:
            roles = {"input": spec.input_feature, "target": spec.target_feature}
            if spec.direction == "BtoA":
                roles = {"input": spec.target_feature, "target": spec.input_feature}
        return _images_fn(roles=roles, label_key=label_key, spec=spec, train=train)
    if spec.layout in ("unpaired", "images"):
        return _images_fn(roles={"image": "image"}, label_key=label_key, spec=spec,
                          train=train and spec.layout == "unpaired")
    tokenizer = Tokenizer.from_meta(meta)
    return _captioned_fn(spec=spec, tokenizer=tokenizer, label_key=label_key, train=train,
                         keep_text=keep_text, folder=folder)


def _image_keys(spec: DataSpec) -> tuple[str, ...]:
    return {"paired": ("input", "target")}.get(spec.layout, ("image",))


def _domain_seed(seed: int, index: int) -> int:
    """Each domain of 'unpaired' its own seed, so equal-sized domains are not shuffled in
    step (grain hashes it once more in `.seed()`)."""
    return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0])


def _batched(source, transform, *, seed: int, shuffle: bool, batch_size: int,
             drop_remainder: bool, image_keys, num_processes: int = 1,
             process_index: int = 0) -> grain.MapDataset:
    """Batches of `batch_size` (the global batch); with `num_processes` > 1, this
    process's rows of each (`pipeline.process_share`)."""
    dataset = grain.MapDataset.source(source).seed(int(seed))
    if shuffle:
        dataset = dataset.shuffle()  # index shuffle: a new permutation every epoch
    dataset = dataset.random_map(transform)
    collate = functools.partial(_collate, image_keys=image_keys)
    if num_processes > 1:
        return pipeline_lib.process_share(dataset, batch_size, num_processes, process_index,
                                          collate)
    return dataset.batch(batch_size, drop_remainder=drop_remainder, batch_fn=collate)


def _renamed(domain: str):
    def rename(batch):
        return {domain: batch["image"], f"{domain}_label": batch["label"]}
    return rename


# ---------------------------------------------------------------------- serving


def make_pipeline(spec: DataSpec, *, global_batch_size: int, num_devices: int, seed: int,
                  shuffle: bool = True, repeat: bool = True, drop_remainder: bool = True,
                  num_threads: int = pipeline_lib.DEFAULT_NUM_THREADS,
                  prefetch_batches: int = pipeline_lib.DEFAULT_PREFETCH_BATCHES,
                  num_processes: int = 1, process_index: int = 0,
                  ) -> pipeline_lib.Pipeline:
    """The resumable training pipeline of `spec.split` for any spec but TFDS 'images'.

    'unpaired': each domain is shuffled, batched and repeated on its own and the two
    streams are zipped, so `steps_per_epoch` is the larger domain's batch count; without
    `repeat`, both stop after the smaller domain's batches.
    """
    pipeline_lib._check_layout(global_batch_size, num_devices, spec.image_size,
                               num_processes, process_index)
    pipeline_lib._check_multiprocess(num_processes, drop_remainder)
    meta = layout_meta(spec)
    sources = open_split(spec, spec.split, meta)
    if spec.layout == "images" and is_folder(spec):
        return pipeline_lib.pipeline_from_source(
            sources[""], meta, spec.split, global_batch_size=global_batch_size,
            num_devices=num_devices, image_size=spec.image_size, seed=seed, shuffle=shuffle,
            repeat=repeat, drop_remainder=drop_remainder, num_threads=num_threads,
            prefetch_batches=prefetch_batches, num_processes=num_processes,
            process_index=process_index)
    transform = _transform(spec, meta, train=True)
    parts = []
    for index, (role, source) in enumerate(sources.items()):
        split = domain_split(spec.split, role) if role else spec.split
        pipeline_lib._check_fits(spec.name, split, len(source), global_batch_size,
                                 num_devices, drop_remainder)
        dataset = _batched(source, transform,
                           seed=_domain_seed(seed, index) if role else seed, shuffle=shuffle,
                           batch_size=global_batch_size, drop_remainder=drop_remainder,
                           image_keys=_image_keys(spec), num_processes=num_processes,
                           process_index=process_index)
        parts.append(dataset.map(_renamed(role)) if role else dataset)
    steps_per_epoch = max(len(part) for part in parts)
    if repeat:
        parts = [part.repeat() for part in parts]
    elif len(parts) > 1:
        parts = [part[: min(len(p) for p in parts)] for part in parts]
    if len(parts) == 1:
        dataset = parts[0]
    else:
        dataset = grain.experimental.ZipMapDataset(parts).map(
            lambda batches: {k: v for batch in batches for k, v in batch.items()})
    read_options = grain.ReadOptions(num_threads=num_threads,
                                     prefetch_buffer_size=prefetch_batches)
    return pipeline_lib.Pipeline(
        iter(dataset.to_iter_dataset(read_options)), meta=meta, num_devices=num_devices,
        per_device_batch=global_batch_size // (num_devices * num_processes),
        image_size=spec.image_size, steps_per_epoch=steps_per_epoch)


def split_sizes(spec: DataSpec, split: str) -> dict[str, int]:
    """{role: records} of a split ({'': n}, or {'a': n_a, 'b': n_b})."""
    return {role: len(source) for role, source in
            open_split(spec, split, layout_meta(spec)).items()}


def load_split(spec: DataSpec, split: str, num: int | None = None,
               seed: int = 0) -> dict[str, np.ndarray]:
    """`serve.load_split` for any spec but TFDS 'images': no jitter; 'captioned' adds the
    drawn 'caption' strings; 'unpaired' reads each domain on its own (own count)."""
    meta = layout_meta(spec)
    transform = _transform(spec, meta, train=False, keep_text=True)
    result = {}
    for index, (role, source) in enumerate(open_split(spec, split, meta).items()):
        size = len(source)
        subset = num is not None and num < size
        dataset = _batched(source, transform,
                           seed=_domain_seed(seed, index) if role else seed, shuffle=subset,
                           batch_size=min(MAX_EVAL_BATCH, size), drop_remainder=False,
                           image_keys=_image_keys(spec))
        if role:
            dataset = dataset.map(_renamed(role))
        count = num if subset else size
        parts, total = [], 0
        for i in range(len(dataset)):
            parts.append(dataset[i])
            total += len(next(iter(parts[-1].values())))
            if total >= count:
                break
        result.update({key: np.concatenate([p[key] for p in parts])[:count]
                       for key in parts[0]})
    return result
