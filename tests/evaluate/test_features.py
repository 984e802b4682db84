"""The feature-usefulness protocol against sklearn called directly, hand-built sets with
known answers, and chance levels of labels independent of the features."""

import json

import numpy as np
import pytest
import sklearn
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from genjax.evaluate import features

# Three blob centres 20 apart with unit spread: no point is nearer another class's centre.
_FAR = np.array([[0.0, 0.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0], [0.0, 20.0, 0.0, 0.0]])
# The same directions 2 apart: the classes overlap, so accuracies and NMIs are strictly
# between 0 and 1 and a comparison with sklearn is not won by every implementation.
_NEAR = _FAR / 10


def _blobs(centres, num: int, seed: int):
    x, y = make_blobs(n_samples=num, centers=centres, cluster_std=1.0, random_state=seed)
    return x, y


def _split(centres, num_train: int = 300, num_test: int = 300, seed: int = 0):
    x, y = _blobs(centres, num_train + num_test, seed)
    return x[:num_train], y[:num_train], x[num_train:], y[num_train:]


def _chance_tolerance(num: int, p: float) -> float:
    """Five standard deviations of a Binomial(num, p) proportion."""
    return 5 * np.sqrt(p * (1 - p) / num)


# ------------------------------------------------------------------------ linear probe


def test_linear_probe_separates_well_separated_blobs():
    assert features.linear_probe(*_split(_FAR)) == 1.0


def test_linear_probe_is_at_chance_on_independent_labels():
    # The predictions depend on the training set and the test features only, so with
    # uniform labels drawn independently of both, each test prediction is right with
    # probability exactly 1/3: the accuracy is a Binomial(300, 1/3) proportion, whose
    # standard deviation is 0.027; five of them make the tolerance.
    rng = np.random.default_rng(0)
    train_x, _, test_x, _ = _split(_FAR)
    train_y, test_y = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    accuracy = features.linear_probe(train_x, train_y, test_x, test_y)
    assert abs(accuracy - 1 / 3) <= _chance_tolerance(300, 1 / 3)


def test_linear_probe_equals_the_sklearn_pipeline_called_directly():
    train_x, train_y, test_x, test_y = _split(_NEAR)
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("logistic", LogisticRegression(max_iter=features.PROBE_MAX_ITER))])
    expected = np.mean(pipeline.fit(train_x, train_y).predict(test_x) == test_y)
    got = features.linear_probe(train_x, train_y, test_x, test_y)
    assert 0.4 < got < 1.0  # overlapping classes: not a trivial accuracy
    assert got == expected


def test_linear_probe_flattens_any_sample_shape():
    train_x, train_y, test_x, test_y = _split(_NEAR)
    flat = features.linear_probe(train_x, train_y, test_x, test_y)
    images = features.linear_probe(train_x.reshape(-1, 2, 2, 1), train_y,
                                   test_x.reshape(-1, 2, 2, 1), test_y)
    assert images == flat


def test_linear_probe_is_invariant_to_rescaling_features():
    # Standardisation removes any per-feature affine map; without it lbfgs on features
    # scaled from 1e-3 to 1e4 would find another (or no) solution.
    train_x, train_y, test_x, test_y = _split(_NEAR)
    scale, shift = np.array([1e-3, 1e4, 1.0, 50.0]), np.array([5.0, -3e4, 0.0, 1e3])
    plain = features.linear_probe(train_x, train_y, test_x, test_y)
    rescaled = features.linear_probe(train_x * scale + shift, train_y, test_x * scale + shift,
                                     test_y)
    assert rescaled == plain


def test_linear_probe_standardises_with_training_statistics_only():
    # Shifting only the test set by 30 along the first axis moves every test point past the
    # class centred at x = 20. Training statistics keep the shift and the probe fails;
    # statistics of the test set would take the shift out again and keep accuracy 1.
    train_x, train_y, test_x, test_y = _split(_FAR)
    shifted = test_x + np.array([30.0, 0.0, 0.0, 0.0])
    assert features.linear_probe(train_x, train_y, shifted, test_y) < 0.5


def test_linear_probe_with_constant_features():
    train_x, train_y, test_x, test_y = _split(_NEAR)
    with_constant = features.linear_probe(np.c_[train_x, np.full(300, 7.0)], train_y,
                                          np.c_[test_x, np.full(300, 7.0)], test_y)
    assert with_constant == features.linear_probe(train_x, train_y, test_x, test_y)

    # Features that are all constant leave only the intercepts, which favour the most
    # frequent training class: the accuracy is that class's share of the test labels.
    train_y = np.repeat([0, 1, 2], [50, 150, 100])
    accuracy = features.linear_probe(np.ones((300, 3)), train_y, np.ones((300, 3)), test_y)
    assert np.isfinite(accuracy)
    assert accuracy == np.mean(test_y == 1)


def test_linear_probe_rejects_mismatched_inputs():
    train_x, train_y, test_x, test_y = _split(_NEAR)
    with pytest.raises(ValueError, match="dimensions differ"):
        features.linear_probe(train_x, train_y, test_x[:, :3], test_y)
    with pytest.raises(ValueError, match="train_y"):
        features.linear_probe(train_x, train_y[:-1], test_x, test_y)


# ----------------------------------------------------------------------------- k-means


def test_kmeans_nmi_is_one_on_well_separated_blobs():
    x, y = _blobs(_FAR, 300, seed=1)
    assert features.kmeans_nmi(x, y) == pytest.approx(1.0, abs=1e-12)


def test_kmeans_nmi_equals_sklearn_called_directly():
    x, y = _blobs(_NEAR, 300, seed=1)
    clusters = KMeans(n_clusters=3, n_init=10, random_state=3).fit_predict(
        StandardScaler().fit_transform(x))
    expected = normalized_mutual_info_score(y, clusters)
    got = features.kmeans_nmi(x, y, seed=3)
    assert 0.0 < got < 1.0
    assert got == expected
    # The default number of clusters is the number of distinct labels.
    assert features.kmeans_nmi(x, y, num_clusters=3, seed=3) == got


def test_kmeans_nmi_is_invariant_to_renaming_labels():
    x, y = _blobs(_NEAR, 300, seed=1)
    renamed = np.array([17, -4, 5])[y]
    as_strings = np.array(["c", "a", "b"])[y]
    reference = features.kmeans_nmi(x, y)
    assert features.kmeans_nmi(x, renamed) == pytest.approx(reference, abs=1e-12)
    assert features.kmeans_nmi(x, as_strings) == pytest.approx(reference, abs=1e-12)


def test_kmeans_nmi_is_near_zero_for_random_labels():
    # For independent labellings into 3 and 3 groups of N = 600, 2N·MI (in nats) is about
    # chi-squared with (3-1)(3-1) = 4 degrees of freedom: MI ≈ 4 / 1200 ± sqrt(8) / 1200,
    # i.e. 0.0033 ± 0.0024, against entropies near ln 3 = 1.1, so NMI is about 0.003. The
    # bound 0.05 is more than ten standard deviations away; perfect clusters give 1.
    x, _ = _blobs(_FAR, 600, seed=2)
    y = np.random.default_rng(0).integers(0, 3, 600)
    assert features.kmeans_nmi(x, y) < 0.05


def test_kmeans_nmi_of_a_single_cluster_is_zero():
    x, y = _blobs(_FAR, 300, seed=1)
    assert features.kmeans_nmi(x, y, num_clusters=1) == 0.0


# --------------------------------------------------------------------------------- PCA


def test_pca_features_shapes_and_clipping():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(50, 4, 5)), rng.normal(size=(30, 4, 5))
    train_p, test_p = features.pca_features(train, test, 6)
    assert train_p.shape == (50, 6) and test_p.shape == (30, 6)
    # At most min(N_train, D) components: 8 samples in 20 dimensions give 8.
    train_p, test_p = features.pca_features(train[:8], test, 12)
    assert train_p.shape == (8, 8) and test_p.shape == (30, 8)
    with pytest.raises(ValueError, match="dims"):
        features.pca_features(train, test, 0)


def test_pca_features_are_fitted_on_train_only():
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(10, 10))
    train = rng.normal(size=(80, 10)) @ mixing
    test = rng.normal(size=(40, 10)) @ mixing * 3.0 + 5.0  # another mean and spread
    train_p, test_p = features.pca_features(train, test, 4, seed=0)
    pca = PCA(n_components=4, random_state=0).fit(train)
    np.testing.assert_allclose(train_p, pca.transform(train), rtol=0, atol=1e-10)
    np.testing.assert_allclose(test_p, pca.transform(test), rtol=0, atol=1e-10)
    # Centred on the training mean: the training projections average to zero, the
    # shifted test set's do not.
    np.testing.assert_allclose(train_p.mean(axis=0), 0.0, atol=1e-10)
    assert np.abs(test_p.mean(axis=0)).max() > 1.0


# ------------------------------------------------------------------------------ report


def _report_inputs():
    """Codes [N, 3] from overlapping blobs, and 4x4x1 'images' that are a fixed random
    linear map of the codes plus noise."""
    rng = np.random.default_rng(0)
    train_codes, train_y, test_codes, test_y = _split(_NEAR[:, :3], 240, 120)
    projection = rng.normal(size=(3, 16))
    images = lambda c: (c @ projection + 0.5 * rng.normal(size=(c.shape[0], 16))).reshape(
        -1, 4, 4, 1)
    return train_codes, train_y, test_codes, test_y, images(train_codes), images(test_codes)


def test_feature_report():
    train_codes, train_y, test_codes, test_y, train_px, test_px = _report_inputs()
    report = features.feature_report(train_codes, train_y, test_codes, test_y, train_px,
                                     test_px, seed=4)
    assert set(report) == {"codes", "pixels", "pca", "protocol"}
    assert report["codes"]["dims"] == 3
    assert report["pixels"]["dims"] == 16
    assert report["pca"]["dims"] == report["codes"]["dims"]
    for name in ("codes", "pixels", "pca"):
        assert set(report[name]) == {"dims", "linear_probe_accuracy", "kmeans_nmi"}
        for key in ("linear_probe_accuracy", "kmeans_nmi"):
            assert isinstance(report[name][key], float)
            assert 0.0 <= report[name][key] <= 1.0

    # Each number is the one its function gives on the split the protocol names.
    train_pca, test_pca = features.pca_features(train_px, test_px, 3, seed=4)
    sets = {"codes": (train_codes, test_codes),
            "pixels": (train_px.reshape(240, -1), test_px.reshape(120, -1)),
            "pca": (train_pca, test_pca)}
    for name, (train_x, test_x) in sets.items():
        assert report[name]["linear_probe_accuracy"] == features.linear_probe(
            train_x, train_y, test_x, test_y, seed=4)
        assert report[name]["kmeans_nmi"] == features.kmeans_nmi(test_x, test_y, seed=4)

    protocol = report["protocol"]
    assert protocol["seed"] == 4
    assert protocol["sklearn_version"] == sklearn.__version__
    assert protocol["linear_probe"]["fit_on"] == "train"
    assert protocol["linear_probe"]["accuracy_on"] == "test"
    assert protocol["kmeans_nmi"]["measured_on"] == "test"
    assert protocol["linear_probe"]["logistic_regression"]["C"] == 1.0
    assert protocol["linear_probe"]["logistic_regression"]["solver"] == "lbfgs"
    assert protocol["kmeans_nmi"]["kmeans"]["n_init"] == 10
    assert protocol["kmeans_nmi"]["kmeans"]["n_clusters"] == 3
    assert protocol["pca"]["settings"]["n_components"] == 3
    json.dumps(report)  # the report is written to JSON beside the other evaluations


def test_feature_report_rejects_codes_and_images_of_different_counts():
    train_codes, train_y, test_codes, test_y, train_px, test_px = _report_inputs()
    with pytest.raises(ValueError, match="training images"):
        features.feature_report(train_codes, train_y, test_codes, test_y, train_px[:-1],
                                test_px)
