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


class _Centroids:
    """A stand-in classifier of 16x16 digits (not genjax's): logits = minus the squared
    distance to each class's mean image of both training domains; features = 2x2 block
    means (64 numbers)."""

    name, sha256, input_shape = "centroids", "0" * 64, (16, 16, 1)

    def __init__(self, raw):
        images = np.concatenate([raw["trainA"]["image"], raw["trainB"]["image"]])
        labels = np.concatenate([raw["trainA"]["label"], raw["trainB"]["label"]])
        flat = images.reshape(len(images), -1).astype(np.float64) / 127.5 - 1
        self.means = np.stack([flat[labels == c].mean(0) for c in range(10)])

    def features_and_logits(self, images):
        images = np.asarray(images, np.float64)
        flat = images.reshape(len(images), -1)
        pooled = images.reshape(-1, 8, 2, 8, 2).mean((2, 4)).reshape(len(images), -1)
        return pooled, -((flat[:, None, :] - self.means[None]) ** 2).sum(-1)

    def features(self, images):
        return self.features_and_logits(images)[0]


def _frechet(x, y):
    """Float64 Fréchet distance by scipy's matrix square root (the independent oracle)."""
    from scipy import linalg
    mx, my = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(cx @ cy).real
    return float(((mx - my) ** 2).sum() + np.trace(cx + cy - 2 * root))


def test_unpaired_measurement_fd_and_accuracy_with_an_extractor(data_dir, raw):
    """With a feature extractor: FD of the outputs to the *target* domain's test images
    (the oracle translator scores ~0, the identity the no-learning FD), the floor from
    the target domain's training images, and the classifier's accuracy against the
    *source* labels (the oracle scores the exact translations' accuracy)."""
    from genjax import tasks
    from genjax.evaluate.unpaired import UnpairedEvaluator
    from genjax.tasks import cyclegan

    config = tasks.defaults("cyclegan")
    config.dataset.data_dir = data_dir
    spec = cyclegan.data_spec(config)
    extractor = _Centroids(raw)
    evaluator = UnpairedEvaluator(config, spec, extractor)
    to_float = lambda x: x.astype(np.float32) / np.float32(127.5) - 1  # noqa: E731
    a, b = to_float(raw["testA"]["image"]), to_float(raw["testB"]["image"])
    by_bytes = {direction: {x.tobytes(): y for x, y in zip(*pair)}
                for direction, pair in (("a2b", (a, b)), ("b2a", (b, a)))}

    def oracle(state, images, direction):
        return np.stack([by_bytes[direction][np.asarray(x, np.float32).tobytes()]
                         for x in images])

    result = evaluator({"translate": oracle}, None, 3)
    feats_a, feats_b = extractor.features(a), extractor.features(b)
    assert abs(result["a2b"]["fd"]) < 1e-6 and abs(result["b2a"]["fd"]) < 1e-6
    np.testing.assert_allclose(result["a2b"]["no_learning"]["fd"], _frechet(feats_b, feats_a),
                               rtol=1e-4)
    np.testing.assert_allclose(result["b2a"]["no_learning"]["fd"], _frechet(feats_a, feats_b),
                               rtol=1e-4)
    train_b = data.load_split(spec, "train", len(b), evaluator.seed)["b"]
    np.testing.assert_allclose(result["a2b"]["fd_floor"],
                               _frechet(feats_b, extractor.features(train_b)), rtol=1e-4)
    labels = raw["testA"]["label"]
    expected = np.mean(extractor.features_and_logits(b)[1].argmax(1) == labels)
    assert result["a2b"]["accuracy"] == pytest.approx(expected)
    assert result["a2b"]["accuracy"] == result["a2b"]["exact_accuracy"]
    identity = evaluator({"translate": lambda state, x, d: np.asarray(x)}, None, 3)
    np.testing.assert_allclose(identity["a2b"]["fd"], identity["a2b"]["no_learning"]["fd"],
                               rtol=1e-6)
    assert identity["a2b"]["fd"] > 10 * max(result["a2b"]["fd_floor"], 1e-3)
    assert UnpairedEvaluator.scalars(result)["eval/fd"] < 1e-6
    assert UnpairedEvaluator.needs_classifier(config)


def test_unpaired_measurement_content_accuracy_knows_both_styles(data_dir, raw):
    """content_accuracy: an SVC fitted on both domains' training pixels judges the class
    of each output against its *source* label. The oracle translator scores the exact
    translations' accuracy (checked against an SVC fitted here), the identity the
    inputs', and a translator that returns another class's digit scores near zero."""
    from sklearn.svm import SVC

    from genjax import tasks
    from genjax.evaluate.unpaired import UnpairedEvaluator
    from genjax.tasks import cyclegan

    config = tasks.defaults("cyclegan")
    config.dataset.data_dir = data_dir
    evaluator = UnpairedEvaluator(config, cyclegan.data_spec(config))
    to_float = lambda x: x.astype(np.float32) / np.float32(127.5) - 1  # noqa: E731
    train = np.concatenate([raw["trainA"]["image"], raw["trainB"]["image"]])
    svc = SVC().fit(to_float(train).astype(np.float64).reshape(len(train), -1),
                    np.concatenate([raw["trainA"]["label"], raw["trainB"]["label"]]))
    a, b = to_float(raw["testA"]["image"]), to_float(raw["testB"]["image"])
    labels = raw["testA"]["label"]  # testB holds the same digits in the same order
    lookup = {"a2b": dict(zip([x.astype(np.float32).tobytes() for x in a], b)),
              "b2a": dict(zip([x.astype(np.float32).tobytes() for x in b], a))}

    def oracle(state, images, direction):
        return np.stack([lookup[direction][np.asarray(x, np.float32).tobytes()]
                         for x in images]).astype(np.float32)

    result = evaluator({"translate": oracle}, None, 1)
    expected = np.mean(svc.predict(b.reshape(len(b), -1)) == labels)
    assert result["a2b"]["content_accuracy"] == pytest.approx(expected)
    assert result["a2b"]["exact_content_accuracy"] == pytest.approx(expected)
    assert expected > 0.85  # it knows the thick slanted style
    assert np.trace(np.asarray(result["a2b"]["content_confusion"])) == round(expected * len(b))
    identity = evaluator({"translate": lambda state, x, d: np.asarray(x)}, None, 1)
    assert identity["a2b"]["content_accuracy"] == pytest.approx(
        np.mean(svc.predict(a.reshape(len(a), -1)) == labels))
    # Another class's digit (the next test record with a different label) in the right style.
    other = {i: next(j for j in range(i + 1, i + len(labels))
                     if labels[j % len(labels)] != labels[i]) % len(labels)
             for i in range(len(labels))}
    index = {"a2b": {x.tobytes(): i for i, x in enumerate(a)},
             "b2a": {x.tobytes(): i for i, x in enumerate(b)}}

    def swapped(state, images, direction):
        there = b if direction == "a2b" else a
        return np.stack([there[other[index[direction][np.asarray(x, np.float32).tobytes()]]]
                         for x in images])

    wrong = evaluator({"translate": swapped}, None, 1)
    assert wrong["a2b"]["content_accuracy"] < 0.15
