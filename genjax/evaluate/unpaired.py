"""The 'unpaired' measurement: a two-way translator (CycleGAN) on held-out images of both
domains, against exact translations where the dataset has them.

A task declares it with

    Evaluation('unpaired', {'translate': f})

`translate(state, images [N, H, W, C] in [-1, 1], direction) -> images`, direction 'a2b'
or 'b2a'. Protocol (results in eval/step_<N>.json):
  * images: all of eval.split's domains ('test' -> testA, testB), or `num` of each fixed
    by eval.seed (all of them where exact translations exist), through the layout's
    preprocessing without jitter;
  * for each direction d ('a2b': A's images through G; 'b2a': B's through F):
      cycle_error  mean |x - back(there(x))| over every pixel (images in [-1, 1]);
      and, for a dataset whose test records carry their exact translation (the embedded
      digits_style), l1 (mean |output - exact translation|) and ssim (the 'translation'
      measurement's SSIM) against it, with the same figures for "no learning" (the
      input itself as the output) beside them;
      and for digits_style the measured attributes of the outputs next to those of the
      target domain's real images: slant (image moments) and ink mass
      (`genjax.data.digits_style.slant`, `ink_mass`);
      and for digits_style content_accuracy: the accuracy against the source labels of
      a classifier that knows both styles, scikit-learn's RBF support-vector machine
      (default settings) fitted on the pixels of both domains' training images (about
      95% / 93% on the real test images of A / B), with its confusion matrix and its
      accuracy on the exact translations (the ceiling) and on the inputs themselves;
      and, with a feature extractor (the one named by eval.classifier_workdir or
      --extractor_workdir; for digits_style by default the digits' evaluation classifier
      runs/classifier_digits, trained first where missing, as for the other digit
      tasks): fd, the Fréchet distance of the outputs' features to the target domain's
      real images of the split, beside fd_floor (the target domain's training images,
      as many, against the same: what real images of that domain score; not a lower
      bound) and the no-learning fd (the inputs themselves); and, with a classifier
      head, its accuracy on the outputs against the source labels, its confusion matrix
      (no label permutation: a heavy diagonal), and its accuracy on the exact
      translations (what a perfect translator scores).
The quality figure is eval/l1 (mean of both directions' L1 to the exact translation,
lower is better) where exact translations exist, else eval/cycle_error.
"""

from __future__ import annotations

import time

import numpy as np

from genjax import data
from genjax.checkpoint import Quality, library_versions
from genjax.errors import ConfigError
from genjax.evaluate import metrics
from genjax.evaluate.generative import default_classifier_workdir, eval_settings

DIRECTIONS = (("a2b", "a", "b"), ("b2a", "b", "a"))
CHUNK = 256


def _exact_translations(spec, split: str):
    """{domain: exact translations [n, S, S, C] in [-1, 1]} of every record of the split
    in record order (what load_split reads without `num`), for an embedded dataset that
    stores them (feature 'translation'), else None."""
    if spec.name != "digits_style":
        return None
    from genjax.data import layouts
    from genjax.data.pipeline import dataset_source

    out = {}
    for domain in ("a", "b"):
        source = dataset_source(spec.name, layouts.domain_split(split, domain), spec.data_dir)
        images = np.stack([np.asarray(source[i]["translation"]) for i in range(len(source))])
        out[domain] = images.astype(np.float32) / np.float32(127.5) - np.float32(1)
    return out


def content_classifier(spec):
    """scikit-learn's SVC (RBF kernel, default settings) fitted on the flattened pixels
    ([-1, 1]) of every training image of both domains with their labels: a judge of a
    digit's class that knows both styles (the evaluation classifier of the plain digits
    recognises only about 40% of the real thick slanted ones)."""
    from sklearn.svm import SVC

    train = data.load_split(spec, spec.split)
    x = np.concatenate([train["a"], train["b"]]).astype(np.float64)
    y = np.concatenate([train["a_label"], train["b_label"]])
    return SVC().fit(x.reshape(len(x), -1), y)


def _ssim(outputs, targets):
    try:
        from genjax.evaluate.translation import ssim
        return ssim(outputs, targets)
    except ImportError:  # scikit-image missing
        return None


class UnpairedEvaluator:
    kind = "unpaired"

    def __init__(self, config, spec, extractor=None, *, num=None, seed=None):
        settings = eval_settings(config)
        self.config, self.spec = config, spec
        self.seed = int(settings["seed"] if seed is None else seed)
        self.split = settings["split"]
        num = num or settings.get("num_samples") or None
        self.exact = _exact_translations(spec, self.split)
        # With exact translations every test image is used, in record order, beside them.
        self.images = data.load_split(spec, self.split, None if self.exact else num, self.seed)
        self.extractor = extractor
        self.content = None
        if spec.name == "digits_style":
            self.content = content_classifier(spec)
            self.content_ceiling, self.content_input = {}, {}
            for source, target in (("a", "b"), ("b", "a")):
                labels = self.images[f"{source}_label"]
                exact = self.exact[source].reshape(len(labels), -1)
                x = self.images[source].reshape(len(labels), -1)
                self.content_ceiling[source] = float(np.mean(self.content.predict(exact) == labels))
                self.content_input[source] = float(np.mean(self.content.predict(x) == labels))
        self.real_features, self.floor_fd = {}, {}
        if extractor is not None:
            for domain in ("a", "b"):
                real = self.images[domain]
                self.real_features[domain] = extractor.features(real)
                # The domain's training images, as many as the held-out ones (a fixed draw).
                train = data.load_split(spec, spec.split, len(real), self.seed)[domain]
                self.floor_fd[domain] = metrics.frechet_distance(
                    self.real_features[domain], extractor.features(train))

    @staticmethod
    def needs_classifier(config) -> bool:
        """Digits (digits_style) are judged by the digits' evaluation classifier, which the
        loop and `python -m genjax.evaluate` train first where missing."""
        return data.classifier_dataset(config.dataset.name) != config.dataset.name

    @classmethod
    def from_entry(cls, config, spec, entry, *, extractor=None, extractor_workdir=None,
                   num=None, seed=None, **_):
        if "translate" not in entry.functions:
            raise ConfigError("The 'unpaired' measurement needs the task function "
                              "'translate(state, images, direction)'.")
        named = extractor_workdir or eval_settings(config).get("classifier_workdir", "")
        if extractor is None and (named or cls.needs_classifier(config)):
            from genjax.evaluate.extractors import ClassifierExtractor
            extractor = ClassifierExtractor.from_workdir(
                named or default_classifier_workdir(config),
                data.classifier_dataset(config.dataset.name))
        return cls(config, spec, extractor, num=num, seed=seed)

    @property
    def quality(self) -> Quality:
        return Quality("eval/l1" if self.exact is not None else "eval/cycle_error", "min")

    def _translate(self, translate, state, images, direction):
        return np.concatenate([np.asarray(translate(state, images[i:i + CHUNK], direction),
                                          np.float32) for i in range(0, len(images), CHUNK)])

    def __call__(self, functions, state, step: int) -> dict:
        start = time.perf_counter()
        translate = functions["translate"]
        result = {"kind": self.kind, "task": self.config.task, "step": int(step)}
        for direction, source, target in DIRECTIONS:
            x = self.images[source]
            there = self._translate(translate, state, x, direction)
            back = self._translate(translate, state, there,
                                   "b2a" if direction == "a2b" else "a2b")
            row = {"num": int(len(x)),
                   "cycle_error": float(np.mean(np.abs(back.astype(np.float64) - x)))}
            if self.exact is not None:
                exact = self.exact[source]
                row["l1"] = float(np.mean(np.abs(there.astype(np.float64) - exact)))
                row["ssim"] = _ssim(there, exact)
                row["no_learning"] = {"l1": float(np.mean(np.abs(x.astype(np.float64) - exact))),
                                      "ssim": _ssim(x, exact)}
            if self.content is not None:
                predicted = self.content.predict(there.reshape(len(there), -1))
                labels = self.images[f"{source}_label"]
                row["content_accuracy"] = float(np.mean(predicted == labels))
                row["content_confusion"] = np.bincount(
                    labels * 10 + predicted, minlength=100).reshape(10, 10).tolist()
                row["exact_content_accuracy"] = self.content_ceiling[source]
                row.setdefault("no_learning", {})["content_accuracy"] = self.content_input[source]
            if self.spec.name == "digits_style":
                from genjax.data import digits_style
                row["slant"] = float(np.mean(digits_style.slant((there + 1) / 2)))
                row["ink"] = float(np.mean(digits_style.ink_mass(there)))
                real = self.images[target]
                row["target_slant"] = float(np.mean(digits_style.slant((real + 1) / 2)))
                row["target_ink"] = float(np.mean(digits_style.ink_mass(real)))
            if self.extractor is not None:
                features, logits = self.extractor.features_and_logits(there)
                reference = self.real_features[target]
                row["fd"] = metrics.frechet_distance(reference, features)
                row["fd_floor"] = self.floor_fd[target]
                row.setdefault("no_learning", {})["fd"] = metrics.frechet_distance(
                    reference, self.real_features[source])
            if self.extractor is not None and logits is not None:
                labels = self.images[f"{source}_label"]
                predicted = logits.argmax(1)
                row["accuracy"] = float(np.mean(predicted == labels))
                row["confusion"] = np.bincount(labels * 10 + predicted, minlength=100
                                               ).reshape(10, 10).tolist()
                if self.exact is not None:
                    _, exact_logits = self.extractor.features_and_logits(self.exact[source])
                    row["exact_accuracy"] = float(np.mean(exact_logits.argmax(1) == labels))
            result[direction] = row
        result["protocol"] = {"dataset": self.config.dataset.name, "split": self.split,
                              "seed": self.seed, "mode": "evaluation (no noise)",
                              "versions": library_versions()}
        result["seconds"] = round(time.perf_counter() - start, 2)
        return result

    @staticmethod
    def scalars(result: dict) -> dict[str, float]:
        out = {}
        for direction, _, _ in DIRECTIONS:
            for key, value in result[direction].items():
                if isinstance(value, float):
                    out[f"eval/{direction}/{key}"] = value
        for key in ("l1", "cycle_error", "fd", "accuracy", "content_accuracy"):
            if key in result["a2b"]:
                out[f"eval/{key}"] = (result["a2b"][key] + result["b2a"][key]) / 2
        return out

    @staticmethod
    def table(result: dict) -> str:
        lines = [f"step {result['step']} ({result['task']}) on "
                 f"{result['protocol']['dataset']}/{result['protocol']['split']}"]
        for direction, _, _ in DIRECTIONS:
            row = result[direction]
            figures = ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                if isinstance(v, float))
            lines.append(f"{direction} ({row['num']} images): {figures}")
            if "no_learning" in row:
                lines.append("  no learning (the input as output): " + ", ".join(
                    f"{k} {v:.4g}" for k, v in row["no_learning"].items()
                    if isinstance(v, float)))
        return "\n".join(lines)
