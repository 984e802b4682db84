"""The 'translation' measurement: each figure against an independent oracle (hand
formulas in numpy/scipy float64), and the measurement on stand-in translators over the
embedded paired datasets: a perfect one, the no-learning baseline and deliberately
wrong ones, which must score worse."""

import json
import statistics

import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from genjax import data
from genjax.checkpoint import Quality
from genjax.errors import ConfigError, GenjaxError
from genjax.evaluate import Extractor, evaluator, metrics, translation
from genjax.tasks import Evaluation

# ------------------------------------------------------------------ the figures


def test_l1_and_psnr_by_hand():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (3, 5, 5, 2)), rng.uniform(-1, 1, (3, 5, 5, 2))
    diffs = [abs(x - y) for x, y in zip(a.ravel(), b.ravel())]
    assert translation.l1(a, b) == pytest.approx(sum(diffs) / len(diffs), rel=1e-12)
    mse = sum(d * d for d in diffs) / len(diffs)
    assert translation.psnr(a, b) == pytest.approx(10 * np.log10(4 / mse), rel=1e-12)
    assert translation.psnr(a, a) == float("inf")
    # A constant error of 0.2 in [-1, 1] is 25.5 grey levels: 20 log10(255 / 25.5) = 20 dB.
    assert translation.psnr(a, a + 0.2) == pytest.approx(20.0, abs=1e-9)


def _ssim_by_hand(x, y, sigma=1.5, data_range=2.0):
    """Wang et al. 2004 with Gaussian weights, in float64, from the formula."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    channel_means = []
    for k in range(x.shape[-1]):
        a, b = x[..., k], y[..., k]
        blur = lambda v: ndimage.gaussian_filter(v, sigma, truncate=3.5, mode="reflect")
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
        cov = blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
             / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
        channel_means.append(s[5:-5, 5:-5].mean())  # the 11x11 window's valid positions
    return np.mean(channel_means)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_against_the_formula(channels):
    rng = np.random.default_rng(channels)
    targets = rng.uniform(-1, 1, (4, 16, 20, channels))
    outputs = np.clip(targets + rng.normal(0, 0.3, targets.shape), -1, 1)
    want = np.mean([_ssim_by_hand(o, t) for o, t in zip(outputs, targets)])
    assert translation.ssim(outputs, targets) == pytest.approx(want, rel=1e-9)
    assert translation.ssim(targets, targets) == pytest.approx(1.0)
    blurred = ndimage.uniform_filter(targets, size=(1, 3, 3, 1))
    assert translation.ssim(blurred, targets) < 0.8
    # Below 11 pixels a side, a uniform window that fits.
    small = targets[:, :8, :8]
    assert translation.ssim_settings(8, 8)["win_size"] == 7
    assert translation.ssim(small, small) == pytest.approx(1.0)


def test_colourfulness_by_hand():
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (2, 3, 4, 3))
    got = translation.colourfulness(images)
    for image, value in zip(images, got):
        rgb = [[(c + 1) * 127.5 for c in pixel] for pixel in image.reshape(-1, 3)]
        rg = [r - g for r, g, _ in rgb]
        yb = [(r + g) / 2 - b for r, g, b in rgb]
        want = ((statistics.pstdev(rg) ** 2 + statistics.pstdev(yb) ** 2) ** 0.5
                + 0.3 * (statistics.fmean(rg) ** 2 + statistics.fmean(yb) ** 2) ** 0.5)
        assert value == pytest.approx(want, rel=1e-12)
    grey = np.repeat(images[..., :1], 3, axis=-1)
    np.testing.assert_allclose(translation.colourfulness(grey), 0.0, atol=1e-12)
    # Pure red (255, 0, 0): rg = 255, yb = 127.5, no spread: 0.3 * sqrt(255^2 + 127.5^2).
    red = np.broadcast_to(np.asarray([1.0, -1.0, -1.0]), (1, 2, 2, 3))
    assert translation.colourfulness(red)[0] == pytest.approx(0.3 * np.hypot(255, 127.5))


def test_histogram_intersection_and_lab_bins():
    p, q = np.asarray([0.5, 0.5, 0.0]), np.asarray([0.2, 0.3, 0.5])
    assert translation.histogram_intersection(p, q) == pytest.approx(0.2 + 0.3)
    assert translation.histogram_intersection(q, q) == pytest.approx(1.0)
    grey = translation.lab_histograms(np.zeros((2, 4, 4, 3)))
    centre = int(np.argmax(grey["a"]))
    assert grey["a"][centre] == 1.0 and grey["b"][centre] == 1.0 and len(grey["a"]) == 65
    assert centre == 32  # a = b = 0 is the middle of the bin centred on 0


def test_baseline_channels():
    grey = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 2, 2, 1)
    np.testing.assert_array_equal(translation.as_target_channels(grey, 3),
                                  np.concatenate([grey] * 3, axis=-1))
    assert translation.as_target_channels(grey, 1) is not None


# ------------------------------------------------- the measurement, stand-in networks


class _Centroids(Extractor):
    """An independent classifier of 16x16 digits: logits = minus the squared distance to
    each class's mean training image; features = 2x2 block means (64 numbers)."""

    name, sha256, input_shape, dataset = "centroids", "0" * 64, (16, 16, 1), "digits"

    def __init__(self, images, labels):
        flat = images.reshape(len(images), -1)
        self.means = np.stack([flat[labels == c].mean(0) for c in range(10)])

    def _forward(self, images):
        images = np.asarray(images)
        flat = images.reshape(images.shape[0], -1)
        pooled = images.reshape(-1, 8, 2, 8, 2).mean((2, 4)).reshape(images.shape[0], -1)
        return pooled, -((flat[:, None, :] - self.means[None]) ** 2).sum(-1)


def _config(name, size, data_dir):
    return ml_collections.ConfigDict({
        "task": "stand_in", "image_size": size,
        "dataset": {"name": name, "split": "train", "data_dir": data_dir},
        "eval": {"split": "test", "seed": 0, "num_samples": 0, "classifier_workdir": ""}})


def _spec(name, size, data_dir):
    return data.DataSpec(name=name, split="train", eval_split="test", image_size=size,
                         layout="paired", data_dir=data_dir)


def _lookup(pairs, pick=None):
    """A translator that knows the test pairs: each input -> its own target, or
    `pick(index)`'s target."""
    table = {x.tobytes(): i for i, x in enumerate(pairs["input"])}

    def translate(state, inputs):
        del state
        index = [table[x.tobytes()] for x in np.asarray(inputs)]
        return pairs["target"][[i if pick is None else pick(i) for i in index]]

    return translate


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    config, spec = _config("digits_upsample", 16, data_dir), _spec("digits_upsample", 16,
                                                                    data_dir)
    train, test = data.load_split(spec, "train"), data.load_split(spec, "test")
    extractor = _Centroids(train["target"], train["label"])
    return config, spec, train, test, extractor


def test_digits_perfect_baseline_and_wrong_translators(digits):
    config, spec, train, test, extractor = digits
    assert len({x.tobytes() for x in test["input"]}) == len(test["input"]) == 297
    measure = translation.TranslationEvaluator(config, spec, extractor)
    perfect = measure({"translate": _lookup(test)}, None, 7)
    # Each input given the target of a digit of the next class.
    first = {c: int(np.flatnonzero(test["label"] == c)[0]) for c in range(10)}
    wrong = measure({"translate": _lookup(test, lambda i: first[(test["label"][i] + 1) % 10])},
                    None, 7)
    out, base, real = perfect["outputs"], perfect["baseline"], perfect["targets"]
    assert out["l1"] == 0 and out["psnr"] == float("inf") and out["ssim"] == pytest.approx(1)
    assert out["fd"] == pytest.approx(0, abs=1e-6)
    # Accuracy on outputs = the stand-in classifier's on the real targets, by hand.
    logits = extractor.logits(test["target"])
    assert out["accuracy"] == real["accuracy"] == pytest.approx(
        np.mean(logits.argmax(1) == test["label"]))
    assert real["accuracy"] > 0.8
    # The baseline is the 4x4 input itself, figures by hand.
    assert base["l1"] == pytest.approx(np.mean(np.abs(test["input"] - test["target"])))
    mse = np.mean((test["input"].astype(np.float64) - test["target"]) ** 2)
    assert base["psnr"] == pytest.approx(10 * np.log10(4 / mse))
    feats = lambda x: extractor.features(x)  # noqa: E731
    assert base["fd"] == pytest.approx(metrics.frechet_distance(
        feats(test["target"]), feats(test["input"])), rel=1e-6)
    assert base["fd"] > real["fd"] > out["fd"]  # the real floor sits between
    # A translator that draws the wrong digit: worse in distortion and in accuracy.
    bad = wrong["outputs"]
    assert bad["l1"] > out["l1"] and bad["ssim"] < out["ssim"] and bad["psnr"] < base["psnr"]
    assert bad["accuracy"] < 0.2
    assert "colourfulness" not in out  # grey targets
    # What the loop and the command line read.
    scalars = evaluator.scalars(perfect)
    assert {"eval/l1", "eval/psnr", "eval/ssim", "eval/fd", "eval/accuracy",
            "eval_baseline/l1", "eval_targets/accuracy", "eval_targets/fd"} <= set(scalars)
    assert measure.quality == Quality("eval/l1", "min")
    assert Quality("eval/l1", "min").record(evaluator.scalars(wrong))["value"] == bad["l1"]
    text = evaluator.table(wrong)
    assert "input as output (baseline)" in text and "real targets" in text
    json.loads(json.dumps(wrong))
    assert perfect["protocol"]["num_pairs"] == 297 and perfect["kind"] == "translation"


def test_a_subset_and_the_entry(digits):
    config, spec, _, _, extractor = digits
    entry = Evaluation("translation", {"translate": lambda s, x: x})
    built = evaluator.measurement("translation").from_entry(config, spec, entry,
                                                           extractor=extractor, num=50, seed=3)
    result = built(entry.functions, None, 1)
    assert result["protocol"]["num_pairs"] == 50
    assert result["outputs"] == pytest.approx(result["baseline"])  # identity = baseline
    with pytest.raises(ConfigError, match="translate"):
        translation.TranslationEvaluator.from_entry(config, spec, Evaluation("translation", {}))
    with pytest.raises(GenjaxError, match="shape"):
        built({"translate": lambda s, x: x[:, :8]}, None, 1)
    with pytest.raises(GenjaxError, match="non-finite"):
        built({"translate": lambda s, x: x * np.nan}, None, 1)


def test_a_wrong_datasets_classifier_is_refused(digits):
    config, spec, train, _, _ = digits
    other = _Centroids(train["target"], train["label"])
    other.dataset = "mnist"
    with pytest.raises(ConfigError, match="mnist"):
        translation.TranslationEvaluator(config, spec, other)


def test_photos_colour_figures(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    config, spec = _config("photo_colour", 32, data_dir), _spec("photo_colour", 32, data_dir)
    test = data.load_split(spec, "test")
    measure = translation.TranslationEvaluator(config, spec)
    perfect = measure({"translate": _lookup(test)}, None, 2)
    swapped = measure({"translate": lambda s, x: _lookup(test)(s, x)[..., ::-1]}, None, 2)
    out, base, real, bad = (perfect["outputs"], perfect["baseline"], perfect["targets"],
                            swapped["outputs"])
    want = np.mean(translation.colourfulness(test["target"]))
    assert real["colourfulness"] == pytest.approx(want) and want > 10
    assert out["colourfulness_ratio"] == pytest.approx(1.0)
    assert out["lab_a_intersection"] == pytest.approx(1.0)
    assert out["lab_b_intersection"] == pytest.approx(1.0)
    # No learning: the grey input as RGB, colourless; its a/b mass all in the centre bin.
    assert base["colourfulness"] == pytest.approx(0, abs=1e-9)
    from skimage.color import rgb2lab
    lab = rgb2lab((test["target"].astype(np.float64) + 1) / 2)
    assert base["lab_a_intersection"] == pytest.approx(np.mean(np.abs(lab[..., 1]) < 2))
    assert base["l1"] == pytest.approx(np.mean(np.abs(
        np.repeat(test["input"], 3, -1) - test["target"])))
    # Red and blue swapped: wrong colours, as colourful but a worse colour distribution.
    assert bad["l1"] > 0.05 and bad["lab_b_intersection"] < 0.8
    assert "fd" not in out and "accuracy" not in out
    assert set(perfect["protocol"]["skipped"]) == {"fd", "accuracy"}
    assert "not measured: fd" in evaluator.table(perfect)
    # The README's no-learning figures: the baseline row, without any run.
    alone = translation.no_learning("photo_colour", 32, data_dir=data_dir)
    assert alone["outputs"] == pytest.approx(base)
    assert alone["baseline"] == pytest.approx(base)
