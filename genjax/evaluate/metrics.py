"""Sample-quality metrics over features of any extractor, and a classifier-based score.

Every function takes feature matrices `[N, D]` (real and generated) or logits `[N, K]`
as numpy arrays and returns Python floats. Small dense algebra (means, covariances,
eigendecompositions) runs in float64 numpy; the parts that grow with N² (pairwise
distances, kernel matrices) run in jitted JAX in float32, in blocks, so 10,000 and
more samples fit in memory, and their sums are finished in float64.

References:
  Fréchet distance: Heusel et al. 2017, "GANs trained by a two time-scale update rule
    converge to a local Nash equilibrium" (FID when the features are Inception-v3's).
  KID: Bińkowski et al. 2018, "Demystifying MMD GANs".
  Precision and recall: Kynkäänniemi et al. 2019, "Improved precision and recall metric
    for assessing generative models".
  Inception Score: Salimans et al. 2016, "Improved techniques for training GANs".
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Elements of one block of a pairwise matrix (float32): 2^24 is 64 MiB.
_BLOCK_ELEMENTS = 2 ** 24


def _as_features(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a [N, D] feature matrix with N >= 2, got shape "
                         f"{x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds non-finite values.")
    return x


# ----------------------------------------------------------------- Fréchet distance


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) in float64; the covariance is unbiased (ddof=1), as in
    the reference FID implementations."""
    x = _as_features(features, "features").astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):

        d² = |mu1 - mu2|² + Tr(S1) + Tr(S2) - 2 Tr((S1^½ S2 S1^½)^½).

    The trace term is computed from the eigenvalues of the symmetric PSD matrix
    S1^½ S2 S1^½, which has the same eigenvalues as S1 S2. This is the numerically
    stable route: `scipy.linalg.sqrtm(S1 @ S2)` (pytorch-fid's choice) takes the square
    root of a non-symmetric matrix, returns complex values with spurious imaginary parts
    when the covariances are (near) singular, and needs an eps-regularised retry; here
    every step is a symmetric eigendecomposition (`numpy.linalg.eigh`), eigenvalues that
    round-off pushes below zero are clipped to zero, and the result is real. In float64.
    A tiny negative total from round-off is returned as 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Statistics of different dimensions: {mu1.shape} vs {mu2.shape}.")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2  # symmetric up to round-off; make it exactly so
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))


def frechet_distance(features1, features2) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (FID when the
    features are Inception-v3 pool3 features). Biased upwards for finite N: compare
    figures only at equal sample counts."""
    return frechet_distance_from_statistics(*feature_statistics(features1),
                                            *feature_statistics(features2))


# ---------------------------------------------------------------------------- KID


@jax.jit
def _kid_sums(x, y, x_idx, y_idx):
    """Per subset: sums of k(x_i, x_j) over i != j, of k(y_i, y_j) over i != j, and of
    k(x_i, y_j) over all pairs, for the cubic polynomial kernel; rows summed in float32,
    returned per row so the caller finishes the sum in float64."""
    d = x.shape[1]

    def one(indices):
        xs, ys = x[indices[0]], y[indices[1]]
        kernel = lambda a, b: (a @ b.T / d + 1.0) ** 3
        kxx, kyy = kernel(xs, xs), kernel(ys, ys)
        return (kxx.sum(1) - jnp.diagonal(kxx), kyy.sum(1) - jnp.diagonal(kyy),
                kernel(xs, ys).sum(1))

    return jax.lax.map(one, (x_idx, y_idx))


def kernel_inception_distance(real, fake, *, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: the unbiased estimate of the squared MMD with k(x, y) = (x·y / D + 1)³,

        MMD²_u = Σ_{i≠j} k(x_i,x_j) / m(m-1) + Σ_{i≠j} k(y_i,y_j) / m(m-1) - 2 Σ_{i,j} k(x_i,y_j) / m²,

    on `num_subsets` random subsets of m = min(subset_size, N_real, N_fake) samples
    drawn without replacement from each set. Returns (mean, std) over the subsets. Being
    unbiased, it is near zero (and can be negative) for two samples of one distribution,
    and its expectation does not depend on N, unlike the Fréchet distance's.
    """
    x, y = _as_features(real, "real"), _as_features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Feature dimensions differ: {x.shape[1]} vs {y.shape[1]}.")
    m = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.default_rng(seed)
    x_idx = np.stack([rng.choice(x.shape[0], m, replace=False) for _ in range(num_subsets)])
    y_idx = np.stack([rng.choice(y.shape[0], m, replace=False) for _ in range(num_subsets)])
    sums = _kid_sums(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                     jnp.asarray(x_idx), jnp.asarray(y_idx))
    kxx, kyy, kxy = (np.asarray(s, np.float64).sum(axis=1) for s in sums)
    mmd = (kxx + kyy) / (m * (m - 1)) - 2.0 * kxy / (m * m)
    return float(mmd.mean()), float(mmd.std())


# ---------------------------------------------------------- precision and recall


def _block_rows(num_columns: int) -> int:
    return int(max(1, min(1024, _BLOCK_ELEMENTS // max(num_columns, 1))))


def _squared_distances(a, b):
    """[A, B] squared Euclidean distances, clamped at 0 against round-off."""
    cross = jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2 * cross, 0)


@functools.partial(jax.jit, static_argnames="k")
def _kth_neighbour(queries, points, *, k: int):
    # The k+1-th smallest distance: the point itself is its own nearest neighbour.
    smallest, _ = jax.lax.top_k(-_squared_distances(queries, points), k + 1)
    return -smallest[:, -1]


@jax.jit
def _inside_any_ball(queries, centres, radii):
    return jnp.any(_squared_distances(queries, centres) <= radii[None, :], axis=1)


def _row_blocks(fn, queries: np.ndarray, num_columns: int) -> np.ndarray:
    """fn over row blocks of `queries`; the last block is padded so `fn` compiles once."""
    rows = _block_rows(num_columns)
    out = []
    for start in range(0, queries.shape[0], rows):
        block = queries[start:start + rows]
        n = block.shape[0]
        if n < rows and queries.shape[0] > rows:
            block = np.concatenate([block, np.repeat(block[-1:], rows - n, axis=0)])
        out.append(np.asarray(fn(jnp.asarray(block)))[:n])
    return np.concatenate(out)


def knn_radii(features, k: int = 3) -> np.ndarray:
    """Squared distance from each point to its k-th nearest other point in the same set."""
    x = _as_features(features, "features").astype(np.float32)
    if x.shape[0] <= k:
        raise ValueError(f"k={k} nearest neighbours need more than {k} points, got {x.shape[0]}.")
    points = jnp.asarray(x)
    return _row_blocks(lambda q: _kth_neighbour(q, points, k=k), x, x.shape[0])


def coverage(queries, centres, radii) -> float:
    """Fraction of `queries` inside at least one ball (centre, squared radius), boundary
    included."""
    centres_j, radii_j = jnp.asarray(centres, jnp.float32), jnp.asarray(radii, jnp.float32)
    inside = _row_blocks(lambda q: _inside_any_ball(q, centres_j, radii_j),
                         np.asarray(queries, np.float32), centres.shape[0])
    return float(inside.mean())


def precision_recall(real, fake, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The real manifold is the union of balls around each real feature, with radius the
    distance to its k-th nearest real neighbour; likewise the generated manifold.
    Precision is the fraction of generated samples inside the real manifold (fidelity),
    recall the fraction of real samples inside the generated manifold (diversity).
    Both sets are centred on the real mean first, which changes no distance but keeps
    the float32 expansion |a|² + |b|² - 2a·b accurate.
    """
    x, y = _as_features(real, "real"), _as_features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Feature dimensions differ: {x.shape[1]} vs {y.shape[1]}.")
    centre = x.mean(axis=0, dtype=np.float64)
    x = (x - centre).astype(np.float32)
    y = (y - centre).astype(np.float32)
    precision = coverage(y, x, knn_radii(x, k))
    recall = coverage(x, y, knn_radii(y, k))
    return precision, recall


# ------------------------------------------------------------- classifier scores


def _log_softmax(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def inception_score(logits, *, splits: int = 10) -> tuple[float, float]:
    """Inception-Score-style score from a classifier's logits:

        IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y) = E_x p(y|x),

    computed on each of `splits` consecutive parts of the samples; returns (mean, std)
    over the parts. It ranges from 1 (every sample gets the same posterior) to K (every
    sample is classified with certainty and the K classes are equally frequent). With
    the genjax classifier it is a classifier score of the dataset, not comparable with
    published Inception Scores.
    """
    log_p = _log_softmax(logits)
    if log_p.shape[0] < splits:
        raise ValueError(f"{splits} splits need at least {splits} samples, got {log_p.shape[0]}.")
    scores = []
    for part in np.array_split(log_p, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0))
        # p * (log p - log p(y)), with 0 * log 0 = 0 where a posterior underflows to 0.
        kl = np.where(p > 0, p * (part - log_marginal), 0.0).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def class_distribution_distance(logits_a, logits_b) -> float:
    """Total variation distance between the predicted-class (argmax) frequencies of two
    sets: 0 when the classes are equally frequent in both, 1 when they share none. A
    generator that drops or over-produces classes shows up here."""
    a, b = np.asarray(logits_a), np.asarray(logits_b)
    k = max(a.shape[1], b.shape[1])
    freq_a = np.bincount(a.argmax(1), minlength=k) / a.shape[0]
    freq_b = np.bincount(b.argmax(1), minlength=k) / b.shape[0]
    return float(0.5 * np.abs(freq_a - freq_b).sum())
