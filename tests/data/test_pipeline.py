"""Tests of the embedded digits dataset and the TFDS -> grain input pipeline (offline, no TF)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from genjax.data import (
    DatasetNotAvailableError,
    Pipeline,
    dataset_meta,
    dataset_source,
    make_pipeline,
    prepare_digits,
)
from genjax.data import digits as digits_lib
from genjax.data import pipeline as pipeline_lib


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    prepare_digits(data_dir)
    return str(data_dir)


def _pipeline(data_dir, **overrides):
    kwargs = dict(global_batch_size=64, num_devices=1, image_size=16, seed=0, data_dir=data_dir)
    kwargs.update(overrides)
    return make_pipeline("digits", "train", **kwargs)


def _take(pipeline, count):
    return [next(pipeline) for _ in range(count)]


def _train_labels(data_dir):
    return [int(record["label"]) for record in dataset_source("digits", "train", data_dir)]


def _assert_same_batches(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


# ----------------------------------------------------------------------------- digits


def test_digits_split_sizes_classes_and_pixels(digits_dir):
    meta = dataset_meta("digits", digits_dir)
    assert meta.num_examples == {"train": 1500, "test": 297}
    assert meta.image_shape == (8, 8, 1) and meta.num_classes == 10
    images, labels = digits_lib.sklearn_digits()
    indices = digits_lib.split_indices()
    assert sorted(np.concatenate(list(indices.values()))) == list(range(1797))
    for split, size in [("train", 1500), ("test", 297)]:
        source = dataset_source("digits", split, digits_dir)
        assert len(source) == size
        assert {int(source[i]["label"]) for i in range(size)} == set(range(10))
        for i in [0, 1, size // 2, size - 1]:
            record = source[i]
            assert record["image"].dtype == np.uint8 and record["image"].shape == (8, 8, 1)
            np.testing.assert_array_equal(record["image"], images[indices[split][i]])
            assert record["label"] == labels[indices[split][i]]
    # The records really are scikit-learn's pixels, rescaled from 0..16 to 0..255.
    from sklearn.datasets import load_digits

    raw = load_digits().images[indices["train"][0]]
    expected = np.round(raw * 255 / 16).astype(np.uint8)[..., None]
    np.testing.assert_array_equal(dataset_source("digits", "train", digits_dir)[0]["image"],
                                  expected)


def test_digits_preparation_is_deterministic_and_idempotent(digits_dir, tmp_path):
    files = lambda: {p: p.stat().st_mtime_ns for p in Path(digits_dir).rglob("*")}
    before = files()
    prepare_digits(digits_dir)  # already prepared: a no-op, nothing rewritten
    assert files() == before
    prepare_digits(tmp_path)
    for split in ["train", "test"]:
        first = dataset_source("digits", split, digits_dir)
        second = dataset_source("digits", split, tmp_path)
        assert [int(r["label"]) for r in first] == [int(r["label"]) for r in second]
        np.testing.assert_array_equal(first[5]["image"], second[5]["image"])


@pytest.mark.slow  # a fresh interpreter: TFDS's progress-bar switch is process-wide
def test_first_preparation_writes_no_progress_bars_into_a_pipe(tmp_path):
    """Output to a log file or a pipe gets TFDS's plain lines, not tqdm's carriage returns
    and cursor-movement codes."""
    code = f"from genjax.data import prepare_digits; prepare_digits({str(tmp_path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "prepared to" in log  # it did prepare (and print) here, into the pipe
    assert "\r" not in log and "\x1b[" not in log, repr(log[:2000])


# --------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("num_devices", [1, 8])
def test_batches_have_per_device_layout(digits_dir, num_devices):
    batch = next(_pipeline(digits_dir, num_devices=num_devices))
    per_device = 64 // num_devices
    assert batch["image"].shape == (num_devices, per_device, 16, 16, 1)
    assert batch["image"].dtype == np.float32
    assert batch["label"].shape == (num_devices, per_device) and batch["label"].dtype == np.int32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert batch["image"].min() == -1 and batch["image"].max() == 1  # digits use the full range


def test_device_split_is_a_reshape_of_the_global_batch(digits_dir):
    single = _take(_pipeline(digits_dir, num_devices=1), 3)
    eight = _take(_pipeline(digits_dir, num_devices=8), 3)
    for a, b in zip(single, eight):
        np.testing.assert_array_equal(a["image"][0], b["image"].reshape(64, 16, 16, 1))
        np.testing.assert_array_equal(a["label"][0], b["label"].reshape(64))


def test_unresized_images_are_the_records_scaled_to_unit_range(digits_dir):
    pipeline = _pipeline(digits_dir, image_size=8, shuffle=False, global_batch_size=32)
    batch = next(pipeline)
    source = dataset_source("digits", "train", digits_dir)
    expected = np.stack([source[i]["image"] for i in range(32)]) / 127.5 - 1
    np.testing.assert_allclose(batch["image"][0], expected, atol=1e-6)
    assert list(batch["label"][0]) == [int(source[i]["label"]) for i in range(32)]


def test_drop_remainder_and_epoch_length(digits_dir):
    dropped = _pipeline(digits_dir, repeat=False)
    assert dropped.steps_per_epoch == 1500 // 64
    assert len(list(dropped)) == 23
    kept = list(_pipeline(digits_dir, repeat=False, drop_remainder=False))
    assert len(kept) == 24 and kept[-1]["image"].shape == (1, 1500 - 23 * 64, 16, 16, 1)


def test_each_epoch_is_a_new_permutation(digits_dir):
    pipeline = _pipeline(digits_dir, global_batch_size=300)
    epochs = [np.concatenate([b["label"][0] for b in _take(pipeline, 5)]) for _ in range(2)]
    counts = np.bincount(_train_labels(digits_dir), minlength=10)
    for labels in epochs:  # every example exactly once per epoch
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), counts)
    assert not np.array_equal(epochs[0], epochs[1])


def test_seed_determines_the_batches(digits_dir):
    _assert_same_batches(_take(_pipeline(digits_dir, seed=7), 3),
                         _take(_pipeline(digits_dir, seed=7), 3))
    other = next(_pipeline(digits_dir, seed=8))
    assert not np.array_equal(next(_pipeline(digits_dir, seed=7))["label"], other["label"])


@pytest.mark.parametrize("num_threads", [0, 2])
def test_restored_state_continues_across_an_epoch_boundary(digits_dir, num_threads):
    # 1500 // 256 = 5 batches per epoch: saved after 4, the next 3 span epochs 0 and 1.
    kwargs = dict(global_batch_size=256, num_devices=8, seed=3, num_threads=num_threads,
                  prefetch_batches=2)
    original = _pipeline(digits_dir, **kwargs)
    assert isinstance(original, Pipeline) and original.steps_per_epoch == 5
    _take(original, 4)
    state = json.loads(json.dumps(original.get_state()))  # what a checkpoint stores
    expected = _take(original, 3)
    restored = _pipeline(digits_dir, **kwargs)
    restored.set_state(state)
    _assert_same_batches(expected, _take(restored, 3))


# ------------------------------------------------------------------ real TFDS datasets


@pytest.mark.parametrize(
    "name, channels, label",
    [("mnist", 1, True), ("cifar10", 3, True), ("celeb_a", 3, False)],  # celeb_a: 218x178
)
def test_mocked_tfds_datasets_are_resized_and_keep_channels(tmp_path, name, channels, label):
    # USE_CODE mocks `tfds.data_source` with random records shaped by the real builder's
    # features, so no files are needed.
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        meta = dataset_meta(name, tmp_path)
        assert meta.image_shape[-1] == channels and (meta.label_key is not None) == label
        pipeline = make_pipeline(name, "train", global_batch_size=8, num_devices=2,
                                 image_size=20, seed=0, data_dir=tmp_path)
        batch = next(pipeline)
    assert batch["image"].shape == (2, 4, 20, 20, channels)
    assert batch["image"].dtype == np.float32 and np.abs(batch["image"]).max() <= 1
    assert batch["label"].shape == (2, 4) and batch["label"].dtype == np.int32
    if not label:
        assert not batch["label"].any()


def test_unprepared_dataset_fails_fast_with_the_command(tmp_path, monkeypatch):
    """Offline, TFDS's download path would retry for minutes: it is never entered."""
    def no_download(*args, **kwargs):
        raise AssertionError("tried to download and prepare the dataset")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(DatasetNotAvailableError) as error:
        make_pipeline("mnist", "train", global_batch_size=8, num_devices=1, image_size=16,
                      seed=0, data_dir=tmp_path)
    message = str(error.value)
    assert "'mnist'" in message and str(tmp_path) in message
    assert f"tfds build mnist --data_dir={tmp_path} --file_format=array_record" in message


def test_dataset_prepared_only_as_tfrecord_asks_for_array_record(tmp_path):
    folder = tmp_path / "mnist" / "3.0.1"
    folder.mkdir(parents=True)
    (folder / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"")
    with pytest.raises(DatasetNotAvailableError, match="only in tfrecord format"):
        dataset_source("mnist", "train", tmp_path)


def test_unknown_dataset_name_suggests_and_says_how_to_list(tmp_path):
    with pytest.raises(DatasetNotAvailableError) as error:
        dataset_source("mnsit", "train", tmp_path)
    assert "'mnist'" in str(error.value) and "list_builders" in str(error.value)


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(global_batch_size=60, num_devices=8), "not divisible by num_devices=8"),
        (dict(global_batch_size=2000), "larger than split 'train'.*1500 examples"),
        (dict(global_batch_size=0), "global_batch_size must be a positive integer"),
        (dict(num_devices=0), "num_devices must be a positive integer"),
        (dict(image_size=0), "image_size must be a positive integer"),
        (dict(num_devices=8, drop_remainder=False), "do not divide among 8 devices"),
    ],
)
def test_bad_batch_layouts_are_clear_errors(digits_dir, overrides, match):
    with pytest.raises(ValueError, match=match):
        _pipeline(digits_dir, **overrides)


def test_resized_images_are_pil_bilinear_of_the_records(digits_dir):
    batch = next(_pipeline(digits_dir, image_size=20, shuffle=False, global_batch_size=16))
    source = dataset_source("digits", "train", digits_dir)
    for i in [0, 7, 15]:
        pil = Image.fromarray(source[i]["image"][..., 0]).resize((20, 20), Image.BILINEAR)
        np.testing.assert_allclose(batch["image"][0, i, ..., 0], np.asarray(pil) / 127.5 - 1,
                                   atol=1e-6)


@pytest.mark.parametrize("shape", [(30, 40, 1), (40, 30, 2), (30, 40, 3), (40, 30, 4)])
def test_preprocess_crops_the_centre_and_keeps_channels(shape):
    image = np.zeros(shape, np.uint8)
    long_axis = int(np.argmax(shape[:2]))
    centre = [slice(None)] * 3
    centre[long_axis] = slice(5, 35)
    image[tuple(centre)] = 255  # only the centred 30x30 square is white
    resized, label = pipeline_lib._preprocess(
        {"image": image}, image_key="image", label_key=None, image_size=12)
    assert resized.shape == (12, 12, shape[-1]) and resized.dtype == np.uint8 and label == 0
    assert (resized == 255).all()
