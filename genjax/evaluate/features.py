"""How useful an autoencoder's latent codes are as features, beside raw pixels and PCA.

The protocol (`feature_report`) compares three feature sets of the same images:

  codes   the autoencoder's latent codes z, flattened to [N, D_z]
  pixels  the raw pixels, flattened to [N, H·W·C]
  pca     PCA of the pixels to D_z dimensions, fitted on the training split only

and gives each two numbers:

  linear_probe_accuracy  accuracy on the test split of a multinomial logistic regression
                         trained on the training split (how linearly decodable the labels
                         are); the features are standardised with training statistics.
  kmeans_nmi             normalised mutual information between the labels and k-means
                         clusters (k = number of distinct labels) of the standardised test
                         features (how much the unsupervised geometry follows the labels).

Every estimator is scikit-learn's, built in one place (`_probe_pipeline`, `_kmeans`,
`_pca`), so the settings `feature_report` records under "protocol" are the ones that ran.
Inputs are numpy arrays `[N, ...]`, flattened to `[N, D]`; float32 and float64 inputs keep
their dtype, anything else (uint8 pixels, integers) becomes float64. Results are Python
floats, deterministic given `seed` (lbfgs and PCA's exact solvers use no randomness;
k-means initialisation and randomised PCA are seeded), up to the round-off of threaded BLAS.

References:
  Linear probes: Alain & Bengio 2016, "Understanding intermediate layers using linear
    classifier probes".
  Clustering accuracy as NMI: Strehl & Ghosh 2002, "Cluster ensembles — a knowledge reuse
    framework for combining multiple partitions".
"""

from __future__ import annotations

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

# lbfgs iterations for the probe. sklearn's default of 100 often stops short on
# standardised pixels; a probe that has not converged raises sklearn's ConvergenceWarning.
PROBE_MAX_ITER = 1000
# k-means restarts from different k-means++ initialisations; the lowest inertia is kept.
KMEANS_N_INIT = 10


def _as_flat_features(x, name: str) -> np.ndarray:
    """[N, ...] -> [N, D]; float32/float64 kept, other dtypes converted to float64."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be an [N, ...] array with N >= 1, got shape {x.shape}.")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] < 1:
        raise ValueError(f"{name} has no features per sample, got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds non-finite values.")
    return x


def _as_labels(y, num: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (num,):
        raise ValueError(f"{name} must be a [N] label vector with N = {num}, got shape "
                         f"{y.shape}.")
    return y


def _probe_pipeline(seed: int) -> Pipeline:
    """StandardScaler then multinomial logistic regression (L2, C=1, lbfgs). A constant
    feature has zero variance; StandardScaler divides it by 1 instead, so it becomes 0."""
    return Pipeline([
        ("scale", StandardScaler()),
        ("logistic", LogisticRegression(C=1.0, solver="lbfgs", max_iter=PROBE_MAX_ITER,
                                        random_state=seed)),
    ])


def _kmeans(num_clusters: int, seed: int) -> KMeans:
    return KMeans(n_clusters=num_clusters, n_init=KMEANS_N_INIT, random_state=seed)


def _pca(dims: int, seed: int) -> PCA:
    return PCA(n_components=dims, random_state=seed)


# ------------------------------------------------------------------------ linear probe


def linear_probe(train_x, train_y, test_x, test_y, *, seed: int = 0) -> float:
    """Test accuracy of a multinomial logistic regression trained on (train_x, train_y).

    The features are standardised with the mean and standard deviation of the training
    set only (StandardScaler in a Pipeline), then fitted by lbfgs with the default L2
    penalty, C = 1.0, up to PROBE_MAX_ITER iterations. Constant features are mapped to 0,
    not to NaN. Inputs of any shape [N, ...] are flattened to [N, D].
    """
    train_x = _as_flat_features(train_x, "train_x")
    test_x = _as_flat_features(test_x, "test_x")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"Feature dimensions differ: {train_x.shape[1]} vs {test_x.shape[1]}.")
    train_y = _as_labels(train_y, train_x.shape[0], "train_y")
    test_y = _as_labels(test_y, test_x.shape[0], "test_y")
    if np.unique(train_y).size < 2:
        raise ValueError("A linear probe needs at least two classes in train_y.")
    probe = _probe_pipeline(seed).fit(train_x, train_y)
    return float(np.mean(probe.predict(test_x) == test_y))


# ----------------------------------------------------------------------------- k-means


def kmeans_nmi(x, y, *, num_clusters: int | None = None, seed: int = 0) -> float:
    """Normalised mutual information between the labels y and a k-means clustering of x.

    x (any shape [N, ...], flattened) is standardised with its own statistics, clustered
    by k-means (k-means++ initialisation, KMEANS_N_INIT restarts, random_state=seed) into
    `num_clusters` clusters (default: the number of distinct labels in y), and scored by
    `normalized_mutual_info_score(y, clusters)` with the arithmetic-mean normalisation:
    1 when the clusters are the classes up to renaming, near 0 when they are independent.
    """
    x = _as_flat_features(x, "x")
    y = _as_labels(y, x.shape[0], "y")
    if num_clusters is None:
        num_clusters = int(np.unique(y).size)
    if not 1 <= num_clusters <= x.shape[0]:
        raise ValueError(f"num_clusters must be in [1, N = {x.shape[0]}], got {num_clusters}.")
    standardised = StandardScaler().fit_transform(x)
    clusters = _kmeans(num_clusters, seed).fit_predict(standardised)
    return float(normalized_mutual_info_score(y, clusters))


# --------------------------------------------------------------------------------- PCA


def pca_features(train_x, test_x, dims: int, *,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train [N_train, d], test [N_test, d]) projections on the first d principal axes of
    the training set, d = min(dims, N_train, D): PCA cannot give more components than
    samples or features, so a larger `dims` is clipped to that (check the output's
    shape[1]). The mean and the axes come from train_x only; test_x is only transformed.
    The features are centred, not scaled (sklearn PCA, no whitening); `seed` matters only
    where sklearn picks its randomised solver (large inputs).
    """
    train_x = _as_flat_features(train_x, "train_x")
    test_x = _as_flat_features(test_x, "test_x")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"Feature dimensions differ: {train_x.shape[1]} vs {test_x.shape[1]}.")
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}.")
    dims = int(min(dims, *train_x.shape))
    pca = _pca(dims, seed).fit(train_x)
    return pca.transform(train_x), pca.transform(test_x)


# ------------------------------------------------------------------------------ report


def _settings(estimator) -> dict:
    """The estimator's constructor parameters that are JSON scalars; `penalty` is left
    out because recent sklearn reports it as 'deprecated' (the L2 penalty is l1_ratio=0)."""
    return {key: value for key, value in sorted(estimator.get_params(deep=False).items())
            if key != "penalty" and (value is None or isinstance(value, (bool, int, float,
                                                                           str)))}


def feature_report(train_codes, train_labels, test_codes, test_labels, train_pixels,
                   test_pixels, *, seed: int = 0) -> dict:
    """Linear-probe accuracy and k-means NMI of codes, raw pixels and PCA of the pixels.

    Returns {"codes" | "pixels" | "pca": {"dims": int, "linear_probe_accuracy": float,
    "kmeans_nmi": float}, "protocol": {...}}. Codes and pixels of one split must be of the
    same images in the same order. "pca" projects the pixels on as many principal axes of
    the training pixels as the codes have dimensions (fewer if PCA allows fewer; "dims"
    says how many). The probe trains on the training split and is scored on the test
    split; the NMI is measured on the test split alone. "protocol" records how, and is
    JSON-serialisable.
    """
    train_codes = _as_flat_features(train_codes, "train_codes")
    test_codes = _as_flat_features(test_codes, "test_codes")
    train_pixels = _as_flat_features(train_pixels, "train_pixels")
    test_pixels = _as_flat_features(test_pixels, "test_pixels")
    if train_codes.shape[0] != train_pixels.shape[0]:
        raise ValueError(f"{train_codes.shape[0]} training codes but {train_pixels.shape[0]} "
                         "training images.")
    if test_codes.shape[0] != test_pixels.shape[0]:
        raise ValueError(f"{test_codes.shape[0]} test codes but {test_pixels.shape[0]} test "
                         "images.")
    train_labels = _as_labels(train_labels, train_codes.shape[0], "train_labels")
    test_labels = _as_labels(test_labels, test_codes.shape[0], "test_labels")

    train_pca, test_pca = pca_features(train_pixels, test_pixels, train_codes.shape[1],
                                       seed=seed)
    feature_sets = {"codes": (train_codes, test_codes),
                    "pixels": (train_pixels, test_pixels),
                    "pca": (train_pca, test_pca)}
    report: dict = {}
    for name, (train_x, test_x) in feature_sets.items():
        report[name] = {
            "dims": int(train_x.shape[1]),
            "linear_probe_accuracy": linear_probe(train_x, train_labels, test_x, test_labels,
                                                  seed=seed),
            "kmeans_nmi": kmeans_nmi(test_x, test_labels, seed=seed),
        }

    num_clusters = int(np.unique(test_labels).size)
    probe = _probe_pipeline(seed)
    report["protocol"] = {
        "feature_sets": {
            "codes": "the given latent codes, flattened",
            "pixels": "the raw pixels, flattened",
            "pca": "PCA (centred, not whitened) of the flattened pixels, fitted on the "
                   "training pixels only, to the codes' dimensionality",
        },
        "linear_probe": {
            "estimator": "sklearn Pipeline(StandardScaler, LogisticRegression): multinomial "
                         "logistic regression, L2 penalty (l1_ratio=0)",
            "standardisation": "per-feature mean and std of the training split only; "
                               "constant features map to 0",
            "fit_on": "train",
            "accuracy_on": "test",
            "scaler": _settings(probe.named_steps["scale"]),
            "logistic_regression": _settings(probe.named_steps["logistic"]),
        },
        "kmeans_nmi": {
            "estimator": "sklearn KMeans on standardised features, then "
                         "normalized_mutual_info_score(labels, clusters)",
            "standardisation": "per-feature mean and std of the test split itself",
            "measured_on": "test",
            "num_clusters": "number of distinct test labels",
            "nmi_average_method": "arithmetic",
            "kmeans": _settings(_kmeans(num_clusters, seed)),
        },
        "pca": {"fit_on": "train", "settings": _settings(_pca(report["pca"]["dims"], seed))},
        "num_train": int(train_codes.shape[0]),
        "num_test": int(test_codes.shape[0]),
        "num_train_classes": int(np.unique(train_labels).size),
        "num_test_classes": num_clusters,
        "seed": int(seed),
        "sklearn_version": sklearn.__version__,
    }
    return report
