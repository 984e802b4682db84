"""The embedded unpaired dataset digits_style: its captions (thin upright A, thick slanted
B) against measurements made here independently, its disjoint halves, its exact test
translations, and how the 'unpaired' layout serves it."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn.datasets import load_digits

from genjax import data
from genjax.data import digits, digits_style
from genjax.data.pipeline import EMBEDDED
from genjax.data.pipeline import dataset_source


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def raw(data_dir):
    """Every record of every split as stored, read through TFDS."""
    out = {}
    for split in digits_style.SPLITS:
        source = dataset_source("digits_style", split, data_dir)
        records = [source[i] for i in range(len(source))]
        out[split] = {key: np.stack([np.asarray(r[key]) for r in records])
                      for key in records[0]}
    return out


def _moment_slant(image):
    """-cov(x, y)/var(y) of the ink, y the row index (downwards), written independently
    of the module: scipy's centre of mass, then the weighted moments."""
    v = image[..., 0].astype(np.float64)
    yc, xc = ndimage.center_of_mass(v)
    y, x = np.indices(v.shape)
    return -np.sum(v * (y - yc) * (x - xc)) / np.sum(v * (y - yc) ** 2)


def test_splits_are_disjoint_stratified_halves_and_the_digits_test_split(raw):
    labels = load_digits().target
    a, b = raw["trainA"]["index"], raw["trainB"]["index"]
    assert len(a) == len(b) == 750 and len(raw["testA"]["index"]) == 297
    assert not set(a) & set(b)  # no digit in both training domains
    split = digits.split_indices()
    assert sorted(np.concatenate([a, b])) == sorted(split["train"])
    assert not (set(a) | set(b)) & set(raw["testA"]["index"])
    np.testing.assert_array_equal(raw["testA"]["index"], split["test"])
    np.testing.assert_array_equal(raw["testB"]["index"], split["test"])
    for name, index in (("trainA", a), ("trainB", b)):
        np.testing.assert_array_equal(raw[name]["label"], labels[index])
        counts_a = np.bincount(labels[a], minlength=10)
        counts_b = np.bincount(labels[b], minlength=10)
        assert np.all(np.abs(counts_a - counts_b) <= 1)  # stratified


def test_captions_agree_with_measured_slant_and_ink(raw):
    for split in digits_style.SPLITS:
        images = raw[split]["image"]
        assert images.shape[1:] == (16, 16, 1) and images.dtype == np.uint8
        slants = np.array([_moment_slant(x) for x in images])
        want = 0.0 if split.endswith("A") else 0.3
        assert abs(slants.mean() - want) < 0.02, (split, slants.mean())
        assert np.all(np.abs(slants - want) < 0.15), (split, np.abs(slants - want).max())
    # Thick against thin: the same test digit has more than twice the ink in B.
    ink_a = raw["testA"]["image"].reshape(297, -1).sum(1, dtype=np.float64)
    ink_b = raw["testB"]["image"].reshape(297, -1).sum(1, dtype=np.float64)
    assert np.all(ink_b > 2.0 * ink_a)
    # and the training domains differ the same way in distribution
    train_a = raw["trainA"]["image"].reshape(750, -1).sum(1, dtype=np.float64)
    train_b = raw["trainB"]["image"].reshape(750, -1).sum(1, dtype=np.float64)
    assert train_a.max() < train_b.min()
    # the module's own measures (used by the evaluators) agree with these
    np.testing.assert_allclose(digits_style.slant(raw["testB"]["image"]),
                               [_moment_slant(x) for x in raw["testB"]["image"]], atol=1e-9)
    np.testing.assert_allclose(digits_style.ink_mass(raw["testA"]["image"]), ink_a / 255.0)


def test_test_translations_are_the_same_digit_in_the_other_style(raw):
    a, b = raw["testA"], raw["testB"]
    np.testing.assert_array_equal(a["translation"], b["image"])
    np.testing.assert_array_equal(b["translation"], a["image"])
    # Independently: thicken and slant the A images crudely here (a 3x3 maximum filter
    # and a per-row shift of 0.3 pixel per row at 16x16); each lands nearest its own
    # translation among all 297 B images far more often than chance (1/297).
    def crude_b(image):
        v = ndimage.grey_dilation(image[..., 0].astype(np.float64), size=(3, 3))
        rows = np.arange(16)
        return np.stack([ndimage.shift(v[r], 0.3 * (7.5 - r), order=1) for r in rows])
    guess = np.stack([crude_b(x) for x in a["image"]]).reshape(297, -1)
    guess /= np.linalg.norm(guess, axis=1, keepdims=True)
    targets = b["image"].reshape(297, -1).astype(np.float64)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    nearest = np.argmax(guess @ targets.T, axis=1)
    assert np.mean(nearest == np.arange(297)) > 0.5  # 0.68 measured; a shuffle ~0
    # Training records have no counterpart.
    assert not raw["trainA"]["translation"].any() and not raw["trainB"]["translation"].any()


def test_served_by_the_unpaired_layout(data_dir, raw):
    spec = data.DataSpec(name="digits_style", split="train", eval_split="test",
                         image_size=16, layout="unpaired", data_dir=data_dir, jitter=False)
    meta = data.meta(spec)
    assert meta.num_classes == 10 and meta.image_channels == {"a": 1, "b": 1}
    pipeline = data.training_pipeline(spec, global_batch_size=750, num_devices=2, seed=0)
    batch = next(iter(pipeline))
    assert set(batch) == {"a", "b", "a_label", "b_label"}
    assert batch["a"].shape == (2, 375, 16, 16, 1)

    def key(images):  # the multiset of images, as sorted rows of bytes
        if images.dtype != np.uint8:
            images = np.rint((np.asarray(images, np.float64) + 1) * 127.5).astype(np.uint8)
        return sorted(row.tobytes() for row in images.reshape(len(images), -1))
    a = batch["a"].reshape(750, 16, 16, 1)
    b = batch["b"].reshape(750, 16, 16, 1)
    assert key(a) == key(raw["trainA"]["image"])  # one epoch of A is exactly trainA
    assert key(b) == key(raw["trainB"]["image"])
    held = data.load_split(spec, "test")
    assert len(held["a"]) == len(held["b"]) == 297
    np.testing.assert_array_equal(held["a_label"], raw["testA"]["label"])


def test_registered_by_name(data_dir):
    assert "digits_style" in EMBEDDED
    with pytest.raises(data.DatasetNotAvailableError, match="digits_style"):
        dataset_source("digits_stlye", "trainA", data_dir)  # the message lists it


def test_unpaired_measurement_against_an_oracle_and_the_identity(data_dir, raw):
    """The 'unpaired' measurement with two fake translators: the exact oracle (L1 0, the
    target domain's slant) and the identity (the no-learning figures, cycle error 0)."""
    from genjax import tasks
    from genjax.evaluate.unpaired import UnpairedEvaluator
    from genjax.tasks import cyclegan

    config = tasks.defaults("cyclegan")
    config.dataset.data_dir = data_dir
    spec = cyclegan.data_spec(config)
    evaluator = UnpairedEvaluator(config, spec)
    to_float = lambda x: x.astype(np.float32) / np.float32(127.5) - 1  # noqa: E731
    a, b = raw["testA"]["image"], raw["testB"]["image"]

    def oracle(state, images, direction):
        # look each image up among the test records of its domain
        pool, other = (a, b) if direction == "a2b" else (b, a)
        keys = {to_float(x).tobytes(): i for i, x in enumerate(pool)}
        return np.stack([to_float(other[keys[np.asarray(x, np.float32).tobytes()]])
                         for x in images])

    result = evaluator({"translate": oracle}, None, 7)
    assert result["a2b"]["l1"] == 0 and result["b2a"]["l1"] == 0
    assert result["a2b"]["cycle_error"] == 0
    np.testing.assert_allclose(result["a2b"]["slant"], result["a2b"]["target_slant"], atol=1e-6)
    np.testing.assert_allclose(result["a2b"]["slant"], np.mean([_moment_slant(x) for x in b]),
                               atol=1e-6)
    np.testing.assert_allclose(result["a2b"]["no_learning"]["l1"],
                               np.mean(np.abs(to_float(a).astype(np.float64) - to_float(b))),
                               rtol=1e-6)
    identity = evaluator({"translate": lambda state, x, d: np.asarray(x)}, None, 7)
    assert identity["b2a"]["cycle_error"] == 0
    np.testing.assert_allclose(identity["b2a"]["l1"], identity["b2a"]["no_learning"]["l1"])
    scalars = UnpairedEvaluator.scalars(result)
    assert scalars["eval/l1"] == 0 and evaluator.quality.metric == "eval/l1"
    assert "a2b" in UnpairedEvaluator.table(result)
