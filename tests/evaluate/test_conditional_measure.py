"""The 'conditional' measurement: its figures against independent oracles (numpy,
scipy, scikit-learn), a stand-in classifier that a mislabelled generator cannot fool,
and the cGAN's evaluation end to end (loop, evaluate_workdir, command line)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import ml_collections
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.metrics import confusion_matrix, roc_auc_score

import genjax
from genjax import evaluate
from genjax import tasks as tasks_lib
from genjax.evaluate import conditional, metrics
from genjax.evaluate.evaluator import scalars, table
from genjax.tasks import Evaluation

ROOT = Path(__file__).resolve().parents[2]
K = 10


def test_label_accuracy_and_confusion_match_sklearn():
    rng = np.random.default_rng(0)
    requested = rng.integers(0, K, 300)
    logits = rng.normal(size=(300, K))
    logits[np.arange(300), requested] += rng.uniform(0, 3, 300)  # mostly right
    accuracy, confusion = conditional.label_accuracy(requested, logits, K)
    predicted = logits.argmax(1)
    np.testing.assert_array_equal(confusion, confusion_matrix(requested, predicted,
                                                              labels=range(K)))
    assert accuracy == pytest.approx(np.mean(predicted == requested))
    assert confusion.sum() == 300 and 0.3 < accuracy < 1


def test_intra_class_fd_and_diversity_by_hand():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 5)), rng.normal(1.0, 2.0, size=(90, 5))
    real_y, fake_y = rng.integers(0, 3, 60), np.arange(90) % 3
    fake_y[fake_y == 2] = 1  # class 2 never generated: no figure for it
    rows = conditional.per_class(real, real_y, fake, fake_y, 3)
    for c, row in enumerate(rows):
        r, f = real[real_y == c], fake[fake_y == c]
        assert (row["num_real"], row["num_generated"]) == (len(r), len(f))
        if c == 2:
            assert row["fd"] is None and row["diversity"] is None
            continue
        assert row["fd"] == pytest.approx(metrics.frechet_distance(r, f), rel=1e-9)
        assert row["diversity"] == pytest.approx(pdist(f).mean() / pdist(r).mean(), rel=1e-9)
    assert rows[0]["diversity"] == pytest.approx(2.0, rel=0.15)  # std 2 against std 1


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 200).round(1), rng.normal(0, 1, 150).round(1)  # many ties
    want = roc_auc_score(np.r_[np.ones(200), np.zeros(150)], np.r_[pos, neg])
    assert conditional.roc_auc(pos, neg) == pytest.approx(want, rel=1e-12)
    assert conditional.roc_auc(np.ones(3), np.ones(4)) == 0.5


def test_wrong_labels_are_uniform_over_the_other_classes():
    labels = np.repeat(np.arange(K), 2000)
    wrong = conditional.wrong_labels(labels, K, seed=0)
    assert not np.any(wrong == labels)
    counts = confusion_matrix(labels, wrong, labels=range(K))
    off = counts[~np.eye(K, dtype=bool)]
    assert abs(off.mean() - 2000 / 9) < 1 and off.min() > 150  # about 222 each


# ------------------------------------------------ the measurement with stand-in networks


class _Centroids(evaluate.Extractor):
    """An independent classifier: logits = minus the squared distance to each class's mean
    training image (about 90% right on the 8x8 digits); features = the pixels."""

    name, sha256, input_shape = "centroids", "0" * 64, (8, 8, 1)
    dataset = "digits"

    def __init__(self, images, labels):
        flat = images.reshape(len(images), -1)
        self.means = np.stack([flat[labels == c].mean(0) for c in range(K)])

    def _forward(self, images):
        flat = np.asarray(images).reshape(images.shape[0], -1)
        return flat, -((flat[:, None, :] - self.means[None]) ** 2).sum(-1)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from genjax import data

    config = ml_collections.ConfigDict(tasks_lib.defaults("cgan").to_dict())
    config.image_size = 8
    config.dataset.data_dir = str(tmp_path_factory.mktemp("tfds"))
    config.eval.num_samples = 200
    spec = tasks_lib.data_spec(config)
    train, test = data.load_split(spec, "train"), data.load_split(spec, "test")
    return config, spec, train, test


def _real_images_of(test, shift=0):
    """A 'generator' that returns held-out real digits of class label + shift."""
    def sample_conditioned(state, key, labels):
        rng = np.random.default_rng(int(np.asarray(jax.random.key_data(key)).sum()))
        picks = [rng.choice(np.flatnonzero(test["label"] == (y + shift) % K)) for y in labels]
        return test["image"][picks]
    return sample_conditioned


def _score_by_centroid(extractor):
    def pair_score(state, images, labels):
        return extractor.logits(images)[np.arange(len(labels)), np.asarray(labels)]
    return pair_score


def test_a_mislabelled_generator_gets_low_accuracy_and_a_blind_d_auc_one_half(digits):
    config, spec, train, test = digits
    extractor = _Centroids(train["image"], train["label"])
    evaluator = conditional.ConditionalEvaluator(config, spec, extractor)
    right = evaluator({"sample_conditioned": _real_images_of(test),
                       "pair_score": _score_by_centroid(extractor)}, None, 5)
    wrong = evaluator({"sample_conditioned": _real_images_of(test, shift=1),
                       "pair_score": lambda s, x, y: np.zeros(len(y))}, None, 5)
    cond_right, cond_wrong = right["conditional"], wrong["conditional"]
    # The oracle's accuracy on real test digits, recomputed from scratch.
    test_acc = np.mean(extractor.logits(test["image"]).argmax(1) == test["label"])
    assert cond_right["real_accuracy"] == pytest.approx(test_acc)
    assert cond_right["label_accuracy"] > 0.8 and cond_wrong["label_accuracy"] < 0.2
    confusion = np.array(cond_wrong["confusion"])
    assert confusion.shape == (K, K) and confusion.sum() == 200
    assert np.trace(np.roll(confusion, -1, axis=1)) > 0.8 * 200  # asked c, looks c + 1
    # Matched pairs score above mismatched ones for the centroid judge; a D that ignores
    # the label scores 0.5.
    assert cond_right["d_match_auc"] > 0.9 and cond_wrong["d_match_auc"] == 0.5
    # Real digits of the right class sit near the floor; of the wrong class, far above.
    assert cond_right["intra_fd_mean"] < cond_wrong["intra_fd_mean"]
    rows = cond_right["per_class"]
    assert [r["num_generated"] for r in rows] == [20] * K
    assert sum(r["num_real"] for r in rows) == len(test["label"])  # all 297 test digits
    assert 0.7 < cond_right["diversity_mean"] < 1.3
    assert right["generated"]["fd"] >= 0 and "fd" in right["floor"]
    assert {"eval/label_accuracy", "eval/intra_fd_mean", "eval/diversity_mean",
            "eval/d_match_auc", "eval/fd"} <= set(scalars(right))
    assert "label accuracy" in table(right)
    json.dumps(right)  # every figure is JSON


def test_collapse_within_a_class_shows_in_diversity(digits):
    config, spec, train, test = digits
    extractor = _Centroids(train["image"], train["label"])
    evaluator = conditional.ConditionalEvaluator(config, spec, extractor)

    def one_per_class(state, key, labels):  # the first test digit of each class, repeated
        first = {c: np.flatnonzero(test["label"] == c)[0] for c in range(K)}
        return test["image"][[first[int(y)] for y in labels]]

    result = evaluator({"sample_conditioned": one_per_class}, None, 0)["conditional"]
    assert result["diversity_mean"] == pytest.approx(0.0, abs=1e-6)
    assert result["floor"]["diversity_mean"] > 0.7
    assert "d_match_auc" not in result  # no pair_score given


def test_the_cgan_declares_the_conditional_measurement():
    config = ml_collections.ConfigDict(tasks_lib.defaults("cgan").to_dict())
    task = tasks_lib.make(config, SimpleNamespace(name="digits", image_shape=(16, 16, 1),
                                                  num_classes=K))
    entry = task.evaluators["conditional"]
    assert isinstance(entry, Evaluation) and entry.measure == "conditional"
    assert {"sample_conditioned", "pair_score"} <= set(entry.functions)


# ------------------------------------------------------------------ the cGAN end to end


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data_dir = str(root / "tfds")
    clf = ml_collections.ConfigDict(tasks_lib.defaults("classifier").to_dict())
    clf.image_size, clf.batch_size, clf.num_train_steps = 8, 16, 4
    clf.model.width, clf.model.feature_dim = 4, 8
    clf.log_every_steps = clf.checkpoint_every_steps = clf.eval_every_steps = 4
    clf.dataset.data_dir = data_dir
    genjax.train_and_evaluate(clf, root / "clf")
    c = ml_collections.ConfigDict(tasks_lib.defaults("cgan").to_dict())
    c.image_size, c.batch_size, c.num_sample_images, c.num_train_steps = 8, 16, 2, 2
    c.model.latent_dim, c.model.g_width, c.model.d_width, c.model.embed_dim = 8, 4, 4, 4
    c.log_every_steps = c.sample_every_steps = c.checkpoint_every_steps = 2
    c.eval_every_steps = 2
    c.eval.num_samples, c.eval.classifier_workdir = 40, str(root / "clf")
    c.dataset.data_dir = data_dir
    genjax.train_and_evaluate(c, root / "cgan")
    return root


@pytest.mark.slow
def test_cgan_loop_and_command_line_write_the_conditional_figures(runs, tmp_path):
    """eval_every_steps writes eval/step_N.json with the overall and the conditional
    figures; `python -m genjax.evaluate` gives the same numbers and prints the table."""
    written = json.loads((runs / "cgan" / "eval" / "step_000002.json").read_text())
    assert written["kind"] == "conditional" and written["task"] == "cgan"
    cond = written["conditional"]
    assert np.array(cond["confusion"]).shape == (K, K)
    assert np.array(cond["confusion"]).sum() == 40
    assert np.array(cond["confusion"]).sum(axis=1).tolist() == [4] * K  # 4 asked per class
    assert 0 <= cond["label_accuracy"] <= 1 and 0 <= cond["d_match_auc"] <= 1
    assert len(cond["per_class"]) == K and len(cond["floor"]["per_class"]) == K
    assert {"conditional", "d_match_auc", "intra_fd"} <= set(written["protocol"]) | set(
        written["protocol"]["conditional"])
    proc = subprocess.run([sys.executable, "-m", "genjax.evaluate",
                           f"--workdir={runs / 'cgan'}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "label accuracy" in proc.stdout and "AUC" in proc.stdout
    again = json.loads((runs / "cgan" / "eval" / "step_000002.json").read_text())
    assert again["conditional"] == cond and again["generated"] == written["generated"]


@pytest.mark.slow
def test_cgan_pair_score_auc_is_recomputed_from_d(runs):
    """d_match_auc equals sklearn's AUC of the task's D scores on the test split with the
    protocol's wrong labels."""
    from genjax import data

    config, task, state = genjax.load_run(runs / "cgan")
    result = evaluate.evaluate_workdir(runs / "cgan", write=False)
    test = data.load_split(tasks_lib.data_spec(config), "test")
    wrong = (test["label"] + np.random.default_rng(config.eval.seed).integers(
        1, K, len(test["label"]))) % K
    assert not np.any(wrong == test["label"])
    pos = np.asarray(task.pair_score(state, test["image"], test["label"]))
    neg = np.asarray(task.pair_score(state, test["image"], wrong))
    want = roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])
    assert result["conditional"]["d_match_auc"] == pytest.approx(want, rel=1e-6)
