"""The embedded paired datasets digits_upsample and photo_colour: their records against
independent recomputations, their splits (no test photograph in training), and how the
'paired' layout serves them."""

import hashlib
import importlib.resources
from types import SimpleNamespace

import ml_collections
import numpy as np
import pytest
from PIL import Image

from genjax import data
from genjax.data import photo_colour
from genjax.data.pipeline import classifier_dataset, dataset_source

SPLITS = {"digits_upsample": {"train": 1500, "test": 297}}


def _raw(name, split, data_dir):
    """Every record of a split as stored (uint8, not through any layout)."""
    source = dataset_source(name, split, data_dir)
    records = [source[i] for i in range(len(source))]
    return {key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]}


def _spec(name, data_dir, size, **kwargs):
    return data.DataSpec(name=name, split="train", eval_split="test", image_size=size,
                         layout="paired", data_dir=data_dir, **kwargs)


def _to_uint8(images):
    return np.rint((np.asarray(images, np.float64) + 1.0) * 127.5).astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


# ------------------------------------------------------------------ digits_upsample


def _round_half_even(x):
    return np.vectorize(lambda v: round(float(v)))(x)  # Python's round: ties to even


def test_digits_upsample_targets_are_the_images_layouts_16x16_digits(data_dir):
    images = data.DataSpec(name="digits", split="train", eval_split="test", image_size=16,
                           data_dir=data_dir)
    for split, size in SPLITS["digits_upsample"].items():
        raw = _raw("digits_upsample", split, data_dir)
        digits = data.load_split(images, split)
        assert raw["target"].shape == (size, 16, 16, 1) and raw["target"].dtype == np.uint8
        np.testing.assert_array_equal(raw["target"], _to_uint8(digits["image"]))
        np.testing.assert_array_equal(raw["label"], digits["label"])


def test_digits_upsample_inputs_are_4x4_block_means_repeated(data_dir):
    from skimage.measure import block_reduce

    raw = _raw("digits_upsample", "test", data_dir)
    targets = raw["target"].astype(np.float64)
    means = _round_half_even(block_reduce(targets, (1, 4, 4, 1), np.mean))
    assert means.shape == (297, 4, 4, 1)
    want = np.kron(means, np.ones((1, 4, 4, 1)))  # nearest upsampling back to 16x16
    np.testing.assert_array_equal(raw["input"], want.astype(np.uint8))
    # Genuinely a 4x4 image: constant on every block, and not the target.
    assert np.all(raw["input"][:, ::4, ::4] == raw["input"][:, 3::4, 3::4])
    assert np.mean(raw["input"] != raw["target"]) > 0.5


def test_digits_upsample_keeps_the_digits_split(data_dir):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    test = _raw("digits_upsample", "test", data_dir)
    train = _raw("digits_upsample", "train", data_dir)
    assert len(test["label"]) == 297 and len(train["label"]) == 1500
    # Each record's target is the 16x16 version of the scikit-learn digit the 'digits'
    # split puts there, so the digits' evaluation classifier never trained on a test one.
    test_index = data.digits.split_indices()["test"]
    eight = np.round(bunch.images[test_index] * 255 / 16).astype(np.uint8)
    resized = np.stack([np.asarray(Image.fromarray(x).resize((16, 16), Image.BILINEAR))
                        for x in eight])[..., None]
    np.testing.assert_array_equal(test["target"], resized)
    np.testing.assert_array_equal(test["label"], bunch.target[test_index])


# --------------------------------------------------------------------- photo_colour


def _photo(name):
    """The resized photograph, recomputed here from the file in the wheel."""
    photo = next(p for p in photo_colour.PHOTOS if p.name == name)
    with Image.open(importlib.resources.files(photo.package) / photo.file) as image:
        image = image.convert("RGB")
        w, h = image.size
        s = 160 / min(w, h)
        return np.asarray(image.resize((round(w * s), round(h * s)), Image.BILINEAR))


def test_photo_colour_split_sizes_and_held_out_photographs(data_dir):
    meta = data.meta(_spec("photo_colour", data_dir, 32))
    assert meta.image_channels == {"input": 1, "target": 3} and meta.num_classes is None
    counts = {}
    for split in ("train", "test"):
        raw = _raw("photo_colour", split, data_dir)
        names = {photo_colour.PHOTOS[i].name for i in np.unique(raw["photo"])}
        counts[split] = (len(raw["photo"]), names)
    assert counts["test"][1] == {"chelsea", "coffee"}
    assert counts["train"][1] == {"astronaut", "rocket", "retina", "ihc", "hubble_deep_field",
                                  "motorcycle_left", "motorcycle_right", "china", "flower"}
    # Every 32x32 window of a stride-16 grid on each photograph, none left out.
    for split in ("train", "test"):
        want = sum(((h - 32) // 16 + 1) * ((w - 32) // 16 + 1)
                   for h, w, _ in (_photo(n).shape for n in counts[split][1]))
        assert counts[split][0] == want == meta.num_examples[split]
    assert (counts["train"][0], counts["test"][0]) == (945, 252)


def test_no_test_photograph_patch_is_in_training(data_dir):
    train = _raw("photo_colour", "train", data_dir)["target"]
    seen = {hashlib.sha256(t.tobytes()).digest() for t in train}
    assert len(seen) == len(train)
    for name in photo_colour.TEST_PHOTOS:
        rgb = _photo(name)
        windows = np.lib.stride_tricks.sliding_window_view(rgb, (32, 32, 3))[..., 0, :, :, :]
        for row in windows:  # every offset, not only the grid's
            for window in row:
                assert hashlib.sha256(np.ascontiguousarray(window).tobytes()).digest() \
                    not in seen, name


def test_photo_colour_records_against_the_photographs_and_bt601_luma(data_dir):
    for split in ("test", "train"):
        raw = _raw("photo_colour", split, data_dir)
        photos = {}
        for i in range(0, len(raw["photo"]), 1 if split == "test" else 7):
            name = photo_colour.PHOTOS[raw["photo"][i]].name
            rgb = photos.setdefault(name, _photo(name))
            top, left = raw["top"][i], raw["left"][i]
            np.testing.assert_array_equal(raw["target"][i], rgb[top:top + 32, left:left + 32])
    # Luminance: Y = (299 R + 587 G + 114 B) / 1000 in exact integers, rounded; exact
    # ties (x.5) may go either way in floating point.
    rgb = raw["target"].astype(np.int64)
    exact = 299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2]
    quotient, remainder = np.divmod(exact, 1000)
    want = quotient + (remainder > 500)
    got = raw["input"][..., 0].astype(np.int64)
    tie = remainder == 500
    np.testing.assert_array_equal(got[~tie], want[~tie])
    assert np.all(np.abs(got[tie] - want[tie]) <= 1)
    # The same weights as PIL's 'L' conversion (ITU-R 601-2), up to its own rounding.
    pil = np.stack([np.asarray(Image.fromarray(t).convert("L")) for t in raw["target"]])
    assert np.max(np.abs(pil.astype(int) - got)) <= 1


# ------------------------------------------------------------------------- serving


def test_served_through_the_paired_layout(data_dir):
    digits = _spec("digits_upsample", data_dir, 16)
    meta = data.meta(digits)
    assert meta.num_classes == 10 and meta.image_channels == {"input": 1, "target": 1}
    assert meta.num_examples == SPLITS["digits_upsample"]
    test = data.load_split(digits, "test")
    raw = _raw("digits_upsample", "test", data_dir)
    np.testing.assert_array_equal(_to_uint8(test["input"]), raw["input"])
    np.testing.assert_array_equal(_to_uint8(test["target"]), raw["target"])
    np.testing.assert_array_equal(test["label"], raw["label"])

    photos = _spec("photo_colour", data_dir, 32, load_size=40)
    test = data.load_split(photos, "test")
    raw = _raw("photo_colour", "test", data_dir)
    assert test["input"].min() >= -1 and test["target"].max() <= 1
    np.testing.assert_array_equal(_to_uint8(test["target"]), raw["target"])
    np.testing.assert_array_equal(test["label"], np.zeros(252))
    # Training batches are jittered (resize to 40, random 32 crop, mirror), input and
    # target alike: the input stays the target's luminance, pixel for pixel.
    batch = next(data.training_pipeline(photos, global_batch_size=32, num_devices=2, seed=0))
    assert batch["input"].shape == (2, 16, 32, 32, 1)
    assert batch["target"].shape == (2, 16, 32, 32, 3)
    luma = (batch["target"] + 1) * 127.5 @ np.asarray(photo_colour.LUMA_WEIGHTS)
    assert np.max(np.abs(luma - (batch["input"][..., 0] + 1) * 127.5)) <= 2.0
    stored = {hashlib.sha256(t.tobytes()).digest()
              for t in _raw("photo_colour", "train", data_dir)["target"]}
    jittered = sum(hashlib.sha256(t.tobytes()).digest() not in stored
                   for t in _to_uint8(batch["target"].reshape(-1, 32, 32, 3)))
    assert jittered == 32  # resized and cropped: none is a stored patch as is


def test_a_paired_dataset_made_from_the_digits_uses_the_digits_classifier(tmp_path,
                                                                          monkeypatch):
    from genjax.evaluate import classifier_config, default_classifier_workdir
    from genjax.evaluate.evaluator import missing_classifier
    from genjax.tasks import Evaluation

    assert classifier_dataset("digits_upsample") == "digits"
    assert classifier_dataset("photo_colour") == "photo_colour"
    monkeypatch.chdir(tmp_path)
    config = ml_collections.ConfigDict({"image_size": 16, "dataset": {
        "name": "digits_upsample", "data_dir": ""}, "eval": {"classifier_workdir": ""}})
    assert str(default_classifier_workdir(config)) == "runs/classifier_digits"
    recipe = classifier_config(config)
    assert recipe.dataset.name == "digits" and recipe.image_size == 16
    task = SimpleNamespace(evaluators={"translation": Evaluation("translation",
                                                                 {"translate": None})})
    assert str(missing_classifier(config, task)) == "runs/classifier_digits"
    config.dataset.name = "photo_colour"
    assert missing_classifier(config, task) is None  # no classifier of photographs
