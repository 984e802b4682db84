"""The embedded captioned_digits dataset: its captions against measurements made here
independently (colorsys hue, scipy moments, ink order of the same handwritten digit), its
held-out combinations, its splits, its determinism, and how the 'captioned' layout
serves it."""

import colorsys

import numpy as np
import pytest
from scipy import ndimage
from sklearn.datasets import load_digits

from genjax import data
from genjax.data import captioned_digits as cd
from genjax.data import digits
from genjax.data.pipeline import EMBEDDED, dataset_source

SPLITS = ("train", "test", "heldout")
PALETTE = {"red": 0, "yellow": 60, "green": 120, "cyan": 180, "blue": 240, "magenta": 300}
# The caption words, written out here by hand (not read from the module).
WORDS = {
    "label": {**{w: i for i, w in enumerate("zero one two three four five six seven eight "
                                            "nine".split())}, **{str(i): i for i in range(10)}},
    "colour": {"red": 0, "yellow": 1, "green": 2, "cyan": 3, "turquoise": 3, "blue": 4,
               "magenta": 5, "purple": 5},
    "thickness": {"thin": 0, "fine": 0, "slim": 0, "regular": 1, "medium": 1, "normal": 1,
                  "bold": 2, "thick": 2, "heavy": 2},
    "slant": {"left": 0, "upright": 1, "straight": 1, "right": 2},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def raw(data_dir):
    """Every record of every split as stored, read back through TFDS."""
    out = {}
    for split in SPLITS:
        source = dataset_source("captioned_digits", split, data_dir)
        records = [source[i] for i in range(len(source))]
        out[split] = {key: np.stack([np.asarray(r[key]) for r in records])
                      for key in records[0] if key != "captions"}
        out[split]["captions"] = [[c.decode() if isinstance(c, bytes) else str(c)
                                   for c in r["captions"]] for r in records]
    return out


def _combos(split):
    return {tuple(int(x) for x in row) for row in
            zip(split["label"], split["colour"], split["thickness"], split["slant"])}


def test_splits_sizes_base_digits_and_balance(raw):
    labels = load_digits().target
    assert [len(raw[s]["label"]) for s in SPLITS] == [1500, 297, 297]
    split = digits.split_indices()
    np.testing.assert_array_equal(raw["train"]["index"], split["train"])
    np.testing.assert_array_equal(raw["test"]["index"], split["test"])
    np.testing.assert_array_equal(raw["heldout"]["index"], split["test"])
    assert not set(raw["train"]["index"]) & set(raw["test"]["index"])  # disjoint digits
    for s in SPLITS:
        np.testing.assert_array_equal(raw[s]["label"], labels[raw[s]["index"]])
        counts = np.bincount(raw[s]["label"], minlength=10)
        assert counts.min() >= 0.9 * counts.max(), (s, counts)
        assert raw[s]["image"].shape[1:] == (32, 32, 3) and raw[s]["image"].dtype == np.uint8
    # within each class of train, every colour, thickness and slant about equally often
    train = raw["train"]
    for d in range(10):
        in_class = train["label"] == d
        for attribute, levels in (("colour", 6), ("thickness", 3), ("slant", 3)):
            counts = np.bincount(train[attribute][in_class], minlength=levels)
            assert counts.min() >= 0.7 * counts.max(), (d, attribute, counts)


def test_held_out_combinations_never_in_train_or_test(raw):
    train, test, held = (_combos(raw[s]) for s in SPLITS)
    # the rule, written out: digit d, colour c -> (thickness, slant) = divmod((d+2c)%9, 3)
    rule = {(d, c, ((d + 2 * c) % 9) // 3, ((d + 2 * c) % 9) % 3)
            for d in range(10) for c in range(6)}
    assert held == rule and len(held) == 60
    assert not held & train and not held & test
    assert test <= train  # the ordinary test split asks only for seen combinations
    assert len(train) == 540 - 60  # every seen combination has training images
    # only the whole combination is new: its parts all occur in training
    for d, c, t, s in held:
        assert any(x[:2] == (d, c) for x in train)
        assert any((x[0], x[2], x[3]) == (d, t, s) for x in train)
        assert any(x[1:] == (c, t, s) for x in train)
    assert all(cd.is_held_out(*x) for x in held) and not any(cd.is_held_out(*x) for x in train)


def _hue_colorsys(image):
    """The mean hue of the pixels brighter than half, by colorsys, circular, unweighted."""
    pixels = image.reshape(-1, 3) / 255.0
    ink = pixels[pixels.max(1) >= 0.5]
    hues = np.array([colorsys.rgb_to_hsv(*p)[0] for p in ink]) * 2 * np.pi
    return np.rad2deg(np.arctan2(np.sin(hues).mean(), np.cos(hues).mean())) % 360


def _moment_slant(image):
    v = image.max(-1).astype(np.float64)
    yc, xc = ndimage.center_of_mass(v)
    y, x = np.indices(v.shape)
    return -np.sum(v * (y - yc) * (x - xc)) / np.sum(v * (y - yc) ** 2)


def _parse(caption):
    found = {}
    for word in caption.lower().replace(",", " ").replace(":", " ").replace("-", " ").split():
        for attribute, table in WORDS.items():
            if word in table:
                assert found.setdefault(attribute, table[word]) == table[word], caption
    return found


def test_captions_agree_with_the_images(raw):
    hues = np.array(list(PALETTE.values()), np.float64)
    for s in SPLITS:
        split = raw[s]
        for i in range(0, len(split["label"]), 7 if s == "train" else 1):
            image = split["image"][i]
            truth = {k: int(split[k][i]) for k in WORDS}
            assert len(set(split["captions"][i])) == 5
            for caption in split["captions"][i]:
                assert _parse(caption) == truth, (caption, truth)
                assert cd.parse_caption(caption) == truth
            # colour: colorsys hue of the ink is within 5 degrees of the named colour
            hue = _hue_colorsys(image)
            gap = np.abs((hue - hues + 180) % 360 - 180)
            assert gap.argmin() == truth["colour"] and gap.min() < 5, (s, i, hue, truth)
            # slant: the moment shear is the named shear (-0.3, 0, 0.3) within 0.12 (the
            # levels are 0.3 apart; 99% of records lie within 0.07)
            assert abs(_moment_slant(image) - 0.3 * (truth["slant"] - 1)) < 0.12, (s, i)
    # thickness: the same handwritten digit in test and heldout; where the named
    # thicknesses differ, the thicker one always has more ink (bold > 1.3 x regular >
    # 1.3 x thin)
    test, held = raw["test"], raw["heldout"]
    ink_t = test["image"].max(-1).reshape(297, -1).sum(1, dtype=np.float64)
    ink_h = held["image"].max(-1).reshape(297, -1).sum(1, dtype=np.float64)
    step = held["thickness"].astype(int) - test["thickness"].astype(int)
    ratio = ink_h / ink_t
    assert np.all(ratio[step > 0] > 1.3) and np.all(ratio[step < 0] < 1 / 1.3)
    assert (step != 0).sum() > 150
    # no drawing is cut by the canvas: the border rows and columns stay nearly black
    for s in SPLITS:
        v = raw[s]["image"].max(-1).astype(np.float64)
        border = np.concatenate([v[:, 0], v[:, -1], v[:, :, 0], v[:, :, -1]], axis=1)
        assert border.max(1).mean() < 30, s


def test_vocabulary_is_small_and_captions_vary(raw):
    words = {w for s in SPLITS for caps in raw[s]["captions"] for c in caps
             for w in c.lower().replace(",", " ").replace(":", " ").replace("-", " ").split()}
    assert len(words) <= 60, sorted(words)
    firsts = {c.split()[0] for caps in raw["train"]["captions"] for c in caps}
    assert len(firsts) >= 8  # word order varies: captions start with many different words
    assert len({c for caps in raw["train"]["captions"] for c in caps}) > 3000


def test_measurement_ceiling_on_real_images(raw):
    """The measurement functions on the real records (what a perfect generator scores),
    and colour_of against colorsys on images of random hues."""
    for s in ("test", "heldout"):
        split = raw[s]
        measured = cd.measure(split["image"], split["label"])
        assert np.mean(measured["colour"] == split["colour"]) == 1.0
        assert np.mean(measured["slant"] == split["slant"]) == 1.0
        assert np.mean(measured["thickness"] == split["thickness"]) >= 0.97
        # float images in [-1, 1] measure the same
        as_float = split["image"].astype(np.float32) / 127.5 - 1
        np.testing.assert_array_equal(cd.measure(as_float, split["label"])["thickness"],
                                      measured["thickness"])
    rng = np.random.default_rng(0)
    hues = rng.uniform(0, 360, 50)
    images = np.zeros((50, 8, 8, 3), np.uint8)
    for i, h in enumerate(hues):
        images[i, 2:6, 2:6] = np.round(np.array(colorsys.hsv_to_rgb(h / 360, 0.9, 0.9)) * 255)
    np.testing.assert_allclose(cd.ink_hue(images), hues, atol=0.5)
    want = np.round(hues / 60).astype(int) % 6
    np.testing.assert_array_equal(cd.colour_of(images), want)
    assert cd.colour_of(np.zeros((1, 4, 4, 3), np.uint8))[0] == -1  # no ink


def test_relative_measurements_follow_the_class():
    """Thickness and slant are read against the class's own calibrated levels."""
    cal = cd.calibration()
    assert np.all(np.diff(cal.thickness, axis=1) > 0.25)  # log-mass levels well apart
    np.testing.assert_allclose(cal.slant, np.tile([-0.3, 0.0, 0.3], (10, 1)), atol=0.02)


def test_builder_is_deterministic(raw):
    cd.records.cache_clear()
    cd._attributes.cache_clear()
    for s in SPLITS:
        again = cd.records(s)
        np.testing.assert_array_equal(again["image"], raw[s]["image"])
        for key in ("label", "colour", "thickness", "slant", "index"):
            np.testing.assert_array_equal(again[key], raw[s][key])
        assert again["captions"].tolist() == raw[s]["captions"]


def test_parse_caption_rejects_incomplete_or_contradictory_captions():
    assert cd.parse_caption("A bold RED seven, leaning right") == {
        "label": 7, "colour": 0, "thickness": 2, "slant": 2}
    with pytest.raises(ValueError, match="slant"):
        cd.parse_caption("a bold red seven")
    with pytest.raises(ValueError, match="two values of colour"):
        cd.parse_caption("a bold red green seven leaning right")


def test_served_by_the_captioned_and_images_layouts(data_dir, raw):
    assert "captioned_digits" in EMBEDDED
    spec = data.DataSpec(name="captioned_digits", split="train", eval_split="test",
                         image_size=32, layout="captioned", data_dir=data_dir, jitter=False)
    meta = data.meta(spec)
    assert meta.num_classes == 10 and meta.image_channels == {"image": 3}
    assert meta.num_examples == {"train": 1500, "test": 297, "heldout": 297}
    tokenizer = data.Tokenizer.from_meta(meta)
    assert tokenizer.size <= 62
    held = data.load_split(spec, "heldout")
    np.testing.assert_array_equal(np.rint((held["image"] + 1) * 127.5).astype(np.uint8),
                                  raw["heldout"]["image"])
    np.testing.assert_array_equal(held["label"], raw["heldout"]["label"])
    for i, caption in enumerate(held["caption"]):
        assert caption in raw["heldout"]["captions"][i]
        assert tokenizer.decode(held["tokens"][i]) == " ".join(
            caption.lower().replace(",", " ").replace(":", " ").replace("-", " ").split())
    batch = next(data.training_pipeline(spec, global_batch_size=8, num_devices=2, seed=0))
    assert batch["tokens"].shape == (2, 4, 32) and batch["image"].shape == (2, 4, 32, 32, 3)
    # the classifier (the 'images' layout) reads the same records with their digit
    images = data.DataSpec(name="captioned_digits", split="train", eval_split="test",
                           image_size=32, data_dir=data_dir)
    assert data.meta(images).num_classes == 10
    test = data.load_split(images, "test")
    np.testing.assert_array_equal(test["label"], raw["test"]["label"])
