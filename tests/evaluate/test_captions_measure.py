"""The 'captions' and 'retrieval' measurements against oracles: a generator that returns
the real image of each caption (rates = the real ceiling), one that paints every digit in
the wrong colour (colour rate 0), hand-made interpolations of known Spearman rho, and
perfect, attribute-shifted and random embeddings for retrieval."""

import collections

import jax
import ml_collections
import numpy as np
import pytest

from genjax import data
from genjax.data import captioned_digits as cd
from genjax.errors import ConfigError
from genjax.evaluate import captions as captions_lib
from genjax.evaluate.evaluator import MEASURES, measurement


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, name="captioned_digits"):
    return ml_collections.ConfigDict({
        "task": "text2image", "image_size": 32,
        "dataset": {"name": name, "split": "train", "data_dir": data_dir},
        "eval": {"split": "test", "num_samples": 0, "seed": 0, "classifier_workdir": ""}})


def _spec(data_dir):
    return data.DataSpec(name="captioned_digits", split="train", eval_split="test",
                         image_size=32, layout="captioned", data_dir=data_dir, jitter=False)


def _value_key(image):
    """The drawing of an image whatever its colour: its value channel, as bytes."""
    v = np.asarray(image)
    if v.dtype != np.uint8:
        v = np.rint((v.astype(np.float32) + 1) * 127.5).astype(np.uint8)
    return v.max(-1).tobytes()


class OracleClassifier:
    """An extractor that knows every real drawing's digit (by its value channel, so a
    recoloured drawing keeps its digit); features: 4x4 block means of the value channel
    and the mean colour."""

    name, sha256, dataset = "oracle", "0" * 64, "captioned_digits"

    def __init__(self):
        self.labels = {}
        for split in cd.SPLITS:
            r = cd.records(split)
            for image, label in zip(r["image"], r["label"]):
                self.labels[_value_key(image)] = int(label)

    def features_and_logits(self, images):
        images = np.asarray(images, np.float32)
        v = images.max(-1)
        blocks = v.reshape(len(v), 4, 8, 4, 8).mean((2, 4)).reshape(len(v), -1)
        features = np.concatenate([blocks, images.mean((1, 2))], axis=1)
        logits = np.zeros((len(images), 10), np.float32)
        for i, image in enumerate(images):
            logits[i, self.labels.get(_value_key(image), 0)] = 1
        return features, logits

    def describe(self):
        return {"name": self.name}


def _oracle_generate(spec, recolour=None):
    """generate(state, tokens, key): the real record each caption belongs to (captions
    of the test and heldout splits, first come first served in record order)."""
    tokenizer = data.Tokenizer.from_meta(data.meta(spec))
    queues = collections.defaultdict(collections.deque)
    for split in ("test", "heldout"):
        r = cd.records(split)
        for image, texts in zip(r["image"], r["captions"]):
            for text in texts:
                queues[tokenizer.encode(str(text)).tobytes()].append(image)

    def generate(state, tokens, key):
        assert isinstance(key, jax.Array)
        out = np.stack([queues[np.asarray(t, np.int32).tobytes()].popleft() for t in tokens])
        if recolour is not None:
            out = recolour(out)
        return out.astype(np.float32) / 127.5 - 1

    return generate


def _interpolate(order=None):
    """interpolate(...): the thin real drawing of the path's digit at an intensity that
    rises with the weight (or follows `order`)."""
    calls = []

    def interpolate(state, tokens_a, tokens_b, weights, key):
        calls.append((np.asarray(tokens_a), np.asarray(tokens_b), np.asarray(weights), key))
        w = float(weights[0])
        level = w if order is None else order[int(round(w * 5))] / 5
        base = cd.records("test")["image"][:len(tokens_a)].astype(np.float32)
        return (base * (0.3 + 0.7 * level)) / 127.5 - 1

    return interpolate, calls


@pytest.fixture(scope="module")
def evaluator(data_dir, tmp_path_factory):
    return captions_lib.CaptionsEvaluator(_config(data_dir), _spec(data_dir),
                                          OracleClassifier())


def test_registered():
    assert measurement("captions") is captions_lib.CaptionsEvaluator
    assert measurement("retrieval") is captions_lib.RetrievalEvaluator
    assert {"captions", "retrieval"} <= set(MEASURES)


def test_oracle_generator_scores_the_real_ceiling(evaluator, data_dir):
    interpolate, calls = _interpolate()
    result = evaluator({"generate": _oracle_generate(_spec(data_dir)),
                        "interpolate": interpolate}, None, 5)
    for split in ("test", "heldout"):
        row = result[split]
        assert row["num"] == 297 * 5
        assert row["generated"] == row["real"]
        assert row["real"]["digit"] == row["real"]["colour"] == row["real"]["slant"] == 1.0
        assert row["real"]["thickness"] >= 0.97
        # independently: the fraction of records whose thickness the measurement gets
        r = cd.records(split)
        right = cd.measure(r["image"], r["label"])["thickness"] == r["thickness"]
        np.testing.assert_allclose(row["real"]["thickness"], right.mean())
        np.testing.assert_allclose(row["real"]["all_correct"], right.mean())
    # the interpolation: ink rising with the weight on every path -> rho 1
    assert result["interpolation"]["rho"] == [1.0] * 10
    assert result["interpolation"]["rho_mean"] == 1.0
    tokenizer = data.Tokenizer.from_meta(data.meta(_spec(data_dir)))
    assert len(calls) == 6 and all(c[3] is calls[0][3] or
                                   (jax.random.key_data(c[3]) ==
                                    jax.random.key_data(calls[0][3])).all() for c in calls)
    for a, b in zip(calls[0][0], calls[0][1]):
        thin, bold = cd.parse_caption(tokenizer.decode(a)), cd.parse_caption(tokenizer.decode(b))
        assert (thin["thickness"], bold["thickness"]) == (0, 2)
        assert {k: v for k, v in thin.items() if k != "thickness"} == \
            {k: v for k, v in bold.items() if k != "thickness"}
    # each test image five times against the test images themselves: far below the floor
    assert result["fd"]["generated"] < 0.05 * result["fd"]["floor"]
    scalars = captions_lib.CaptionsEvaluator.scalars(result)
    assert scalars["eval/test/all_correct"] == result["test"]["generated"]["all_correct"]
    assert scalars["eval_real/heldout/colour"] == 1.0 and scalars["eval/thickness_rho"] == 1.0
    assert evaluator.quality.metric == "eval/test/all_correct" and evaluator.quality.mode == "max"
    assert evaluator.quality.record(scalars)["value"] == scalars["eval/test/all_correct"]
    assert "heldout" in captions_lib.CaptionsEvaluator.table(result)


def test_wrong_colours_score_zero_on_colour_only(evaluator, data_dir):
    roll = lambda images: np.roll(images, 1, axis=-1)  # noqa: E731  red->green->blue
    result = evaluator({"generate": _oracle_generate(_spec(data_dir), roll)}, None, 5)
    fine = evaluator({"generate": _oracle_generate(_spec(data_dir))}, None, 5)
    for split in ("test", "heldout"):
        row = result[split]["generated"]
        assert row["colour"] == 0.0 and row["all_correct"] == 0.0
        assert row["digit"] == row["slant"] == 1.0
        assert row["thickness"] == result[split]["real"]["thickness"]
    assert "interpolation" not in result  # no interpolate function: no paths
    # (the palette is closed under the roll, so the colour histogram barely moves)
    assert result["fd"]["generated"] > 100 * fine["fd"]["generated"]


def test_interpolation_rho_by_hand(evaluator, data_dir):
    # ink levels in the order 0, 2, 1, 3, 4, 5 at weights 0, .2, ..., 1: one swap,
    # rho = 1 - 6·(1 + 1) / (6·(36 - 1)) = 1 - 12/210
    interpolate, _ = _interpolate(order=[0, 2, 1, 3, 4, 5])
    out = evaluator._interpolation(interpolate, None)
    np.testing.assert_allclose(out["rho"], [1 - 12 / 210] * 10)
    interpolate, _ = _interpolate(order=[5, 4, 3, 2, 1, 0])
    assert evaluator._interpolation(interpolate, None)["rho_mean"] == -1.0
    interpolate, _ = _interpolate(order=[2] * 6)
    assert evaluator._interpolation(interpolate, None)["rho_mean"] is None  # undefined


def test_without_a_classifier_the_digit_is_skipped(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/classifier_captioned_digits here
    config = _config(data_dir)
    config.eval.num_samples = 40
    entry = type("Entry", (), {"functions": {"generate": None}, "options": {}})()
    measure = captions_lib.CaptionsEvaluator.from_entry(config, _spec(data_dir), entry)
    assert measure.extractor is None and captions_lib.CaptionsEvaluator.needs_classifier(config)
    result = measure({"generate": _oracle_generate(_spec(data_dir))}, None, 0)
    assert result["test"]["num"] == 40 and "fd" not in result
    assert set(result["test"]["generated"]) == {"colour", "thickness", "slant", "all_correct"}
    assert "not measured" in result["protocol"]["digit"]
    # --generator=raw reaches the task function as which='raw'
    raw = captions_lib.CaptionsEvaluator(config, _spec(data_dir), None, generator="raw")
    seen = []
    oracle = _oracle_generate(_spec(data_dir))

    def generate(state, tokens, key, which="ema"):
        seen.append(which)
        return oracle(state, tokens, key)

    raw({"generate": generate}, None, 0)
    assert seen and set(seen) == {"raw"}
    with pytest.raises(ConfigError, match="generate"):
        captions_lib.CaptionsEvaluator.from_entry(
            config, _spec(data_dir), type("E", (), {"functions": {}, "options": {}})())


def test_recall_at_by_hand():
    similarity = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.7, 0.6, 0.1]])
    correct = np.eye(3, dtype=bool)
    # row 0: top item 0 (hit); row 1: top 2 then 1 (hit at 2); row 2: 0, 1, 2 (hit at 3)
    assert captions_lib.recall_at(similarity, correct, ks=(1, 2, 3)) == {
        "r@1": 1 / 3, "r@2": 2 / 3, "r@3": 1.0}


def _combination_embedding(combos, shift_colour=0):
    d, c, t, s = (np.asarray(x) for x in combos)
    index = ((d * 6 + (c + shift_colour) % 6) * 3 + t) * 3 + s
    return np.eye(540, dtype=np.float32)[index]


def test_retrieval_against_perfect_shifted_and_random_embeddings(data_dir):
    spec = _spec(data_dir)
    measure = captions_lib.RetrievalEvaluator(_config(data_dir), spec)
    tokenizer = data.Tokenizer.from_meta(data.meta(spec))
    r = cd.records("test")
    by_drawing = {_value_key(x): (d, c, t, s) for x, d, c, t, s in
                  zip(r["image"], r["label"], r["colour"], r["thickness"], r["slant"])}

    def embed_text(shift=0):
        def f(state, tokens):
            parsed = [cd.parse_caption(tokenizer.decode(t)) for t in np.asarray(tokens)]
            return _combination_embedding(
                [[p[k] for p in parsed] for k in ("label", "colour", "thickness", "slant")],
                shift)
        return f

    def embed_image(state, images):
        combos = np.array([by_drawing[_value_key(x)] for x in np.asarray(images)])
        return _combination_embedding(combos.T)

    perfect = measure({"embed_text": embed_text(), "embed_image": embed_image}, None, 3)
    assert perfect["caption_to_image_attributes"] == {"r@1": 1.0, "r@5": 1.0}
    assert perfect["image_to_caption_attributes"] == {"r@1": 1.0, "r@5": 1.0}
    assert perfect["r1_mean"] == 1.0
    # exactly by hand: a caption finds its own image at rank 1 when that image is the
    # first (lowest index, the tie rule) of the test images with its combination
    combos = list(zip(r["label"], r["colour"], r["thickness"], r["slant"]))
    first = {}
    for i, combo in enumerate(combos):
        first.setdefault(combo, i)
    expected = np.mean([first[combos[i]] == i for i in range(297) for _ in range(5)])
    np.testing.assert_allclose(perfect["caption_to_image"]["r@1"], expected)
    # and an image finds one of its own captions first under the same condition
    np.testing.assert_allclose(perfect["image_to_caption"]["r@1"],
                               np.mean([first[combos[i]] == i for i in range(297)]))
    # cosine similarity: image embeddings of wildly different lengths, each with a
    # common offset, still find their captions (a plain dot product would not)
    scales = np.exp(np.random.default_rng(1).uniform(0, np.log(1000), 297))
    scale_of = {_value_key(x): scales[i] for i, x in enumerate(r["image"])}

    def embed_scaled(state, images):
        images = np.asarray(images)
        offset = np.full((len(images), 540), 0.3 / np.sqrt(540), np.float32)
        lengths = np.array([scale_of[_value_key(x)] for x in images])[:, None]
        return (embed_image(state, images) + offset) * lengths

    scaled = measure({"embed_text": embed_text(), "embed_image": embed_scaled}, None, 3)
    assert scaled["r1_mean"] == 1.0
    assert perfect["top1_attribute_match"]["caption_to_image"]["colour"] == 1.0

    shifted = measure({"embed_text": embed_text(shift=1), "embed_image": embed_image},
                      None, 3)
    assert shifted["caption_to_image_attributes"]["r@1"] == 0.0
    # (where the shifted combination has no test image, every image ties at 0)
    assert shifted["top1_attribute_match"]["caption_to_image"]["colour"] < 0.2

    rng = np.random.default_rng(0)
    noise = lambda state, x: rng.normal(size=(len(x), 64))  # noqa: E731
    random = measure({"embed_text": noise, "embed_image": noise}, None, 3)
    assert random["caption_to_image"]["r@1"] < 0.03  # chance 1/297
    assert random["image_to_caption"]["r@1"] < 0.05  # chance 5/1485
    assert random["r1_mean"] < 0.1
    assert measure.quality.metric == "eval/r1_mean"
    scalars = captions_lib.RetrievalEvaluator.scalars(perfect)
    assert scalars["eval/r1_mean"] == 1.0
    assert "mean R@1" in captions_lib.RetrievalEvaluator.table(perfect)
