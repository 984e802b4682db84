"""The 'conditional' measurement: generation on demand, under a written protocol.

Everything the 'generative' measurement reports (`genjax.evaluate.generative`: overall
FD, KID, precision/recall, ... against the real floor) plus what only a conditional
generator has, in the same result (eval/step_<N>.json). A task declares it with

    Evaluation('conditional', {'sample_conditioned': f, 'pair_score': g}, {'generator': 'ema'})

`sample_conditioned(state, key, labels [N]) -> images` makes one image of each requested
class (the cGAN's `sample_classes`; a text-to-image task passes its own over the labels
its captions are made from); `pair_score(state, images, labels) -> [N]` (optional) is
D's score of (image, label) pairs, higher = more "real and matching".

Protocol (every figure in the feature space and with the classifier head of the same
extractor as the overall FD, default the genjax classifier of the dataset):
  * generated: `num` images of classes 0, 1, ..., K-1, 0, ... (`num // K` or one more
    per class) from `sample_conditioned(state, jax.random.key(seed), labels)`: exactly
    the images of the 'generative' measurement and of `python -m genjax.sample --num`.
  * (a) label accuracy: the extractor's argmax class of each generated image against
    the class it was asked for, and the confusion matrix C[requested, predicted]
    (counts). Reference: the same classifier's accuracy on the real eval.split images.
  * (b) intra-class FD: for each class c, FD between the generated images of class c
    and the real images of class c in eval.split (the reference split of the overall FD,
    never seen in training); the mean over classes beside the overall FD. The reference
    is the held-out split, not the training split, so that a generator that memorised
    its training images is not rewarded. Per-class sets are small (about 30 test digits
    per class), and FD with fewer samples than feature dimensions is strongly biased
    upwards (the sample covariance is rank-deficient): the per-class sample sizes are
    written beside each figure, and the **per-class floor** -- real training images of
    class c (as many as generated per class, a seeded subset) against the same
    reference -- is what a perfect generator would score at these counts. Read a class's
    figure against its floor, never against 0, and compare runs only at equal counts.
  * (c) within-class diversity: the mean pairwise Euclidean feature distance among the
    generated images of class c, divided by the same among the real reference images
    of class c (an unbiased U-statistic at any count, so the small reference does not
    bias it). 1 = as varied as the data; a generator that collapses within a class
    (AC-GAN's known failure) goes towards 0. The floor's ratio is reported too.
  * (d) D's matching awareness: ROC AUC of `pair_score(x, y)` (positives) against
    `pair_score(x, y')` (negatives) over all real eval.split images x with their label
    y and one wrong label y' each, drawn uniformly from the other classes (seeded by
    `seed`); D in evaluation mode (running BatchNorm averages, no dropout). 0.5 = D
    ignores the label, 1 = every matched pair scores above every mismatched one. AUC
    by the Mann-Whitney rank formula (ties count one half).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from scipy import stats

from genjax import data
from genjax.errors import ConfigError
from genjax.evaluate import metrics
from genjax.evaluate.generative import (MAX_SAMPLES, GenerativeEvaluator, compare,
                                        generative_scalars, generative_table)


def balanced_labels(num: int, num_classes: int) -> np.ndarray:
    """0, 1, ..., K-1, 0, 1, ...: `num` labels with every class as often as possible."""
    return np.arange(num, dtype=np.int32) % num_classes


def label_accuracy(requested, logits, num_classes: int) -> tuple[float, np.ndarray]:
    """(fraction of argmax(logits) == requested, confusion matrix C [K, K] of counts with
    C[i, j] = images asked to be class i that the classifier calls class j)."""
    requested = np.asarray(requested, np.int64)
    predicted = np.asarray(logits).argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (requested, predicted), 1)
    return float(np.mean(predicted == requested)), confusion


def mean_pairwise_distance(features) -> float | None:
    """Mean Euclidean distance over all unordered pairs of rows (float64), None for
    fewer than 2 rows."""
    x = np.asarray(features, np.float64)
    n = x.shape[0]
    if n < 2:
        return None
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    upper = np.triu_indices(n, k=1)
    return float(np.mean(np.sqrt(d2[upper])))


def per_class(real_features, real_labels, fake_features, fake_labels,
              num_classes: int) -> list[dict]:
    """For each class c: the sample sizes, the FD between the class-c rows of `fake` and
    of `real` (None below 2 rows on either side) and the within-class diversity ratio
    mean_pairwise_distance(fake_c) / mean_pairwise_distance(real_c)."""
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    out = []
    for c in range(num_classes):
        r, f = real_features[real_labels == c], fake_features[fake_labels == c]
        fd = metrics.frechet_distance(r, f) if min(len(r), len(f)) >= 2 else None
        spread_r, spread_f = mean_pairwise_distance(r), mean_pairwise_distance(f)
        ratio = spread_f / spread_r if spread_r and spread_f is not None else None
        out.append({"class": c, "num_real": int(len(r)), "num_generated": int(len(f)),
                    "fd": fd, "diversity": ratio})
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def roc_auc(positive, negative) -> float:
    """ROC AUC of scores of positives against negatives: P(pos > neg) + ½·P(pos = neg),
    by the Mann-Whitney rank formula (average ranks for ties)."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(positive) or not len(negative):
        raise ValueError("roc_auc needs at least one positive and one negative score.")
    ranks = stats.rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def wrong_labels(labels, num_classes: int, seed: int) -> np.ndarray:
    """For each label, one drawn uniformly from the other classes (never itself)."""
    shift = np.random.default_rng(seed).integers(1, num_classes, size=len(labels))
    return ((np.asarray(labels, np.int64) + shift) % num_classes).astype(np.int32)


def conditional_scalars(result: dict) -> dict[str, float]:
    """TensorBoard scalars: the generative ones plus eval/label_accuracy,
    eval/intra_fd_mean, eval/diversity_mean and eval/d_match_auc (when measured)."""
    out = generative_scalars(result)
    cond = result["conditional"]
    for name in ("label_accuracy", "intra_fd_mean", "diversity_mean", "d_match_auc"):
        if cond.get(name) is not None:
            out[f"eval/{name}"] = cond[name]
    floor = cond["floor"]
    for name in ("intra_fd_mean", "diversity_mean"):
        if floor.get(name) is not None:
            out[f"eval_floor/{name}"] = floor[name]
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def conditional_table(result: dict) -> str:
    """The printed summary: the generative table, then the conditional figures and one
    line per class."""
    cond = result["conditional"]
    lines = [generative_table(result),
             f"label accuracy {cond['label_accuracy']:.4f} (classifier on real "
             f"{result['protocol']['reference_split']}: {cond['real_accuracy']:.4f}); "
             f"intra-class FD mean {_fmt(cond['intra_fd_mean'])} (floor "
             f"{_fmt(cond['floor']['intra_fd_mean'])}); diversity mean "
             f"{_fmt(cond['diversity_mean'])} (floor {_fmt(cond['floor']['diversity_mean'])})"
             f"; D matched-vs-mismatched AUC {_fmt(cond.get('d_match_auc'))}",
             f"{'class':>6} {'n_gen':>6} {'n_real':>6} {'acc':>6} {'fd':>8} {'floor':>8} "
             f"{'div':>6} {'floor':>6}"]
    for row, floor_row, acc in zip(cond["per_class"], cond["floor"]["per_class"],
                                   cond["class_accuracy"]):
        lines.append(f"{row['class']:>6} {row['num_generated']:>6} {row['num_real']:>6} "
                     f"{_fmt(acc):>6} {_fmt(row['fd']):>8} {_fmt(floor_row['fd']):>8} "
                     f"{_fmt(row['diversity']):>6} {_fmt(floor_row['diversity']):>6}")
    return "\n".join(lines)


class ConditionalEvaluator(GenerativeEvaluator):
    """The generative measurement plus label accuracy, intra-class FD, within-class
    diversity and D's matching AUC (module docstring). The real side (reference features,
    logits and labels; the floors) is computed once, at construction."""

    kind = "conditional"
    scalars = staticmethod(conditional_scalars)
    table = staticmethod(conditional_table)

    def __init__(self, config, spec, extractor, *, num=None, seed=None, generator="ema"):
        super().__init__(config, spec, extractor, num=num, seed=seed, generator=generator)
        # The same call as the parent's, so the same images (a seeded subset beyond
        # MAX_SAMPLES), now with their labels.
        reference = data.load_split(spec, self.split, MAX_SAMPLES, self.seed)
        features, logits = self.reference
        if logits is None:
            raise ConfigError(
                f"The conditional measurement needs a classifier head to check the generated "
                f"images' classes, but the extractor {extractor.name!r} has none. Use a "
                "genjax classifier of this dataset (--extractor_workdir).")
        self.num_classes = int(logits.shape[1])
        self.reference_images = reference["image"]
        self.reference_labels = np.asarray(reference["label"], np.int32)
        self.real_accuracy, _ = label_accuracy(self.reference_labels, logits, self.num_classes)
        # Per-class floor: real training images of each class, as many per class as are
        # generated, against the same per-class reference.
        per_class_count = -(-self.num // self.num_classes)
        train = data.load_split(spec, spec.split, MAX_SAMPLES, self.seed)
        rng = np.random.default_rng(self.seed)
        chosen = np.concatenate([
            rng.permutation(np.flatnonzero(train["label"] == c))[:per_class_count]
            for c in range(self.num_classes)])
        floor_features, _ = extractor.features_and_logits(train["image"][chosen])
        self.class_floor = self._per_class(floor_features, train["label"][chosen])
        self.wrong = wrong_labels(self.reference_labels, self.num_classes, self.seed)

    def _per_class(self, fake_features, fake_labels) -> dict:
        rows = per_class(self.reference[0], self.reference_labels, fake_features, fake_labels,
                         self.num_classes)
        return {"per_class": rows, "intra_fd_mean": _mean(r["fd"] for r in rows),
                "diversity_mean": _mean(r["diversity"] for r in rows)}

    @classmethod
    def from_entry(cls, config, spec, entry, **kwargs):
        if "sample_conditioned" not in entry.functions:
            raise ConfigError("The 'conditional' measurement needs the task function "
                              "'sample_conditioned(state, key, labels)'.")
        return super().from_entry(config, spec, entry, **kwargs)

    def generate(self, functions, state) -> np.ndarray:
        variant = {} if self.generator == "ema" else {"which": self.generator}
        return np.asarray(functions["sample_conditioned"](
            state, jax.random.key(self.seed), self.labels, **variant))

    @property
    def labels(self) -> np.ndarray:
        return balanced_labels(self.num, self.num_classes)

    def protocol(self) -> dict:
        out = super().protocol()
        out["noise"] += "; image i asked to be class i mod K"
        out["conditional"] = {
            "labels": "balanced: image i asked to be class i mod K",
            "label_accuracy": "extractor argmax vs requested class; confusion[requested]"
                              "[predicted] counts",
            "real_accuracy": f"the same classifier on all {len(self.reference_labels)} "
                             f"{self.split} images",
            "intra_fd": f"FD per class, generated class c vs {self.split} class c "
                        "(sizes per class in per_class); mean over classes; biased upwards "
                        "at these counts: read against the floor",
            "floor": f"real {self.config.dataset.split} images of class c (as many per class "
                     f"as generated, seed {self.seed}) vs the same reference",
            "diversity": "mean pairwise feature distance within class c, generated / "
                         f"{self.split}",
            "d_match_auc": f"ROC AUC of pair_score(x, y) vs pair_score(x, y') over all "
                           f"{self.split} images, y' uniform over the other classes (numpy "
                           f"seed {self.seed}); D in eval mode (running BatchNorm averages, "
                           "no dropout)",
        }
        return out

    def __call__(self, functions, state, step: int) -> dict:
        start = time.perf_counter()
        labels = self.labels
        fake = self.generate(functions, state)
        fake_features, fake_logits = self.extractor.features_and_logits(fake)
        generated = compare(*self.reference, fake_features, fake_logits, seed=self.seed)
        accuracy, confusion = label_accuracy(labels, fake_logits, self.num_classes)
        row_totals = confusion.sum(axis=1)
        conditional = {
            "label_accuracy": accuracy, "real_accuracy": self.real_accuracy,
            "confusion": confusion.tolist(),
            "class_accuracy": [float(confusion[c, c] / row_totals[c]) if row_totals[c]
                               else None for c in range(self.num_classes)],
            **self._per_class(fake_features, labels), "floor": self.class_floor,
        }
        if "pair_score" in functions:
            matched = np.asarray(functions["pair_score"](state, self.reference_images,
                                                         self.reference_labels))
            mismatched = np.asarray(functions["pair_score"](state, self.reference_images,
                                                            self.wrong))
            conditional["d_match_auc"] = roc_auc(matched, mismatched)
        return {"kind": "conditional", "task": self.config.task, "step": int(step),
                "generated": generated, "floor": self.floor, "conditional": conditional,
                "protocol": self.protocol(),
                "seconds": round(time.perf_counter() - start, 2)}
