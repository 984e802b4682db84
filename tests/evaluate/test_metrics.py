"""Each metric against closed forms, independent computations and hand-built sets."""

import numpy as np
import pytest
import scipy.linalg

from genjax.evaluate import metrics


def _random_covariance(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ------------------------------------------------------------------ Fréchet distance


def test_frechet_closed_form_of_diagonal_gaussians():
    # Commuting covariances: d² = |mu1 - mu2|² + Σ (sqrt(s1) - sqrt(s2))².
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    got = metrics.frechet_distance_from_statistics(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_matches_sqrtm_formula_for_full_covariances():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real  # the reference implementations' route
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    got = metrics.frechet_distance_from_statistics(mu1, s1, mu2, s2)
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_of_singular_covariances_is_real_and_finite():
    # Rank-deficient covariances (fewer samples than dimensions) are where sqrtm fails.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20)) + 0.5
    value = metrics.frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


def test_frechet_sample_estimate_converges_to_the_exact_value():
    rng = np.random.default_rng(2)
    d = 4
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
    exact = metrics.frechet_distance_from_statistics(mu1, s1, mu2, s2)
    errors = []
    for n in (200, 50_000):
        x = rng.multivariate_normal(mu1, s1, size=n)
        y = rng.multivariate_normal(mu2, s2, size=n)
        errors.append(abs(metrics.frechet_distance(x, y) - exact))
    assert errors[1] < 0.02 * exact
    assert errors[1] < errors[0]


def test_frechet_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(3).normal(size=(500, 32)) * 3 + 1
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------- KID


def _mmd2_unbiased(x, y):
    """Independent float64 computation of the unbiased MMD² with the cubic kernel."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    m = x.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy))
            / (m * (m - 1)) - 2 * kxy.mean())


def test_kid_matches_a_float64_computation():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.3
    # One subset of all samples is a permutation of them; MMD² does not depend on order.
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=300)
    assert mean == pytest.approx(_mmd2_unbiased(x, y), rel=1e-4)
    assert std == 0.0


def test_kid_is_unbiased_for_one_distribution():
    rng = np.random.default_rng(5)
    values = []
    for _ in range(200):  # many independent small pairs of samples of one distribution
        x, y = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
        values.append(metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=40)[0])
    values = np.array(values)
    assert (values < 0).any()  # an unbiased estimate of 0 must go negative
    assert abs(values.mean()) < 3 * values.std() / np.sqrt(len(values))
    # ... whereas two different distributions give a clearly positive value.
    x, y = rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 0.5
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=20, subset_size=200)
    assert mean > 5 * std > 0


def test_kid_subsets_are_seeded():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(100, 4)), rng.normal(size=(100, 4))
    a = metrics.kernel_inception_distance(x, y, num_subsets=5, subset_size=50, seed=1)
    b = metrics.kernel_inception_distance(x, y, num_subsets=5, subset_size=50, seed=1)
    assert a == b


# ---------------------------------------------------------- precision and recall


def _grid(offset):
    g = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0)), -1).reshape(-1, 2)
    return g + offset


def test_precision_recall_of_hand_built_sets():
    a, b = _grid(0.0), _grid(1000.0)
    assert metrics.precision_recall(a, a) == (1.0, 1.0)
    assert metrics.precision_recall(a, b) == (0.0, 0.0)
    # Half the generated points are real ones, half lie far away: precision 1/2; every
    # real point has a generated copy: recall 1.
    assert metrics.precision_recall(a, np.concatenate([a, b])) == (0.5, 1.0)
    # The generator covers half of the real data, faithfully: precision 1, recall 1/2.
    assert metrics.precision_recall(np.concatenate([a, b]), a) == (1.0, 0.5)


def _brute_force_precision_recall(x, y, k):
    def radii(p):
        d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    def cover(q, p, r):
        d = np.sqrt(((q[:, None] - p[None]) ** 2).sum(-1))
        return float((d <= r[None]).any(1).mean())

    return cover(y, x, radii(x)), cover(x, y, radii(y))


@pytest.mark.parametrize("block_elements", [2 ** 24, 1000])
def test_precision_recall_match_brute_force(monkeypatch, block_elements):
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", block_elements)  # 1000: padded blocks
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(230, 5)), rng.normal(size=(170, 5)) * 1.3 + 0.4
    got = metrics.precision_recall(x, y, k=3)
    np.testing.assert_allclose(got, _brute_force_precision_recall(x, y, 3), atol=1e-12)
    radii = metrics.knn_radii(x, k=3)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_allclose(radii, np.sort(d, axis=1)[:, 3], rtol=1e-4)


# ------------------------------------------------------------- classifier scores


@pytest.mark.parametrize("k", [2, 10])
def test_inception_score_of_confident_balanced_predictions_is_k(k):
    labels = np.arange(20 * k) % k  # every split of 2k consecutive samples is balanced
    logits = 50.0 * np.eye(k)[labels]
    mean, std = metrics.inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_of_constant_predictions_is_one():
    logits = np.tile(np.random.default_rng(8).normal(size=(1, 10)), (100, 1))
    assert metrics.inception_score(logits, splits=10) == pytest.approx((1.0, 0.0), abs=1e-9)


def test_class_distribution_distance():
    eye = np.eye(4)
    balanced = eye[np.arange(8) % 4]
    assert metrics.class_distribution_distance(balanced, balanced[::-1]) == 0.0
    assert metrics.class_distribution_distance(balanced, eye[[0] * 8]) == pytest.approx(0.75)


# ------------------------------------------- by hand, at values that tell mistakes apart


def test_feature_covariance_is_unbiased_and_frechet_uses_it():
    """ddof=1, as np.cov: with 6 samples in 3 dimensions the biased covariance would be
    5/6 of it, and the Fréchet distance visibly different."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) * 2 + 0.5
    mean, cov = metrics.feature_statistics(x)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-12)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(
        s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    biased = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(
        (s1 + s2) * 5 / 6 - 2 * scipy.linalg.sqrtm(s1 @ s2).real * 5 / 6)
    assert abs(expected - biased) > 0.1
    assert metrics.frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_inception_score_at_an_intermediate_value_by_hand():
    """Two splits of two samples over two classes, posteriors (1/2, 1/2), (3/4, 1/4) and
    (1/4, 3/4), (1/2, 1/2): IS = exp(mean KL(p(y|x) || p(y))) per split, by hand."""
    logits = np.log(np.array([[0.5, 0.5], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]))

    def split_score(p):
        marginal = p.mean(0)
        kl = [sum(pi * np.log(pi / mi) for pi, mi in zip(row, marginal)) for row in p]
        return np.exp(np.mean(kl))

    p = np.exp(logits)
    first, second = split_score(p[:2]), split_score(p[2:])
    assert 1.01 < first < 1.99  # strictly between the extremes 1 and K = 2
    mean, std = metrics.inception_score(logits, splits=2)
    assert mean == pytest.approx((first + second) / 2, rel=1e-12)
    assert std == pytest.approx(abs(first - second) / 2, abs=1e-12)
    one, _ = metrics.inception_score(logits[:2], splits=1)
    assert one == pytest.approx(first, rel=1e-12)


def test_compare_reports_each_metric_of_the_same_features():
    """The evaluator's table is the metrics themselves, each under its own name. The
    fakes cover a quarter of the real cloud faithfully (precision ≈ 1, recall well below),
    so a swap of two entries shows."""
    from genjax.evaluate import generative as evaluator

    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 4)).astype(np.float32)
    fake = (0.25 * rng.normal(size=(200, 4))).astype(np.float32)
    real_logits = rng.normal(size=(300, 10)).astype(np.float32)
    fake_logits = (3 * rng.normal(size=(200, 10))).astype(np.float32)
    out = evaluator.compare(real, real_logits, fake, fake_logits, seed=3)
    precision, recall = metrics.precision_recall(real, fake, k=evaluator.PR_NEIGHBOURS)
    assert precision > 0.9 and recall < 0.6
    kid, kid_std = metrics.kernel_inception_distance(
        real, fake, num_subsets=evaluator.KID_SUBSETS, subset_size=evaluator.KID_SUBSET_SIZE,
        seed=3)
    score, score_std = metrics.inception_score(fake_logits, splits=evaluator.IS_SPLITS)
    assert out == {
        "fd": metrics.frechet_distance(real, fake), "kid": kid, "kid_std": kid_std,
        "precision": precision, "recall": recall, "is": score, "is_std": score_std,
        "class_tv": metrics.class_distribution_distance(real_logits, fake_logits)}
    assert set(evaluator.compare(real, None, fake, None, seed=3)) == {
        "fd", "kid", "kid_std", "precision", "recall"}
