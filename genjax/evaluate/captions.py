"""The 'captions' and 'retrieval' measurements: does an image show what its caption says?

'captions' (a text-to-image generator). A task declares

    Evaluation('captions', {'generate': generate, 'interpolate': interpolate})

with `generate(state, tokens int32 [N, T], key) -> images [N, S, S, C]` in [-1, 1] and
(optional) `interpolate(state, tokens_a [N, T], tokens_b [N, T], weights float32 [N], key)
-> images`: G at the same noise for row i given key, fed the text embedding
(1 - w)·φ(a) + w·φ(b). With --generator=raw both are called with which='raw'. Tokens
are the run's (`Tokenizer.from_meta` of the task's data spec). Protocol (results in
eval/step_<N>.json, or <name>_step_<N>.json):
  * captions: every caption of every record of eval.split ('test') and, for
    captioned_digits, of 'heldout' (attribute combinations never seen in training); or
    a seeded subset of `num` of them per split (eval.num_samples / --num);
  * generated: one image per caption, `generate(state, tokens[i:i+256],
    fold_in(fold_in(key(seed), split index), chunk index))`;
  * attributes (captioned_digits): on each generated image, the digit by the evaluation
    classifier (when one is available: eval.classifier_workdir, --extractor_workdir, or
    runs/classifier_captioned_digits, which the loop trains first where it is missing;
    without one the digit is not measured and the result says so), the colour by the
    hue of the ink pixels, the thickness by the ink mass and the slant by image moments,
    both against the requested digit's own calibrated levels
    (`genjax.data.captioned_digits.measure`). Rates per attribute and 'all_correct'
    (every measured attribute right), for 'test' (seen combinations) and 'heldout'
    (zero-shot); beside them, the same rates of the real images of the same captions
    (each caption's own image): the ceiling of the measurement itself;
  * FD: the evaluation classifier's features of the eval.split generated images against
    the real eval.split images, with the floor (real training images, as many as
    generated up to the split's size, seeded) against the same reference, as the
    'generative' measurement does;
  * interpolation (captioned_digits, with `interpolate`): 10 paths, path k digit k,
    slant k mod 3 and a colour whose thin and bold combinations are both seen, from the
    thin caption to the bold one (`captioned_digits.path_captions`) at weights
    0, 0.2, ..., 1, each weight one call with the same key (so each path keeps its
    noise); the Spearman rho (scipy.stats.spearmanr) of the ink mass against the
    weight, per path, and their mean (1 = thickness rises monotonically).
The quality figure is eval/test/all_correct (higher is better) for captioned_digits,
else eval/fd (lower is better).

'retrieval' (a text encoder). A task declares

    Evaluation('retrieval', {'embed_text': f, 'embed_image': g})

`embed_text(state, tokens [N, T]) -> [N, D]`, `embed_image(state, images) -> [N, D]`.
On eval.split: every caption of every record against every image, by cosine similarity.
caption -> image recall@k: the fraction of captions whose own image is among the k most
similar images; image -> caption recall@k: the fraction of images with one of their own
captions among the k most similar captions. For captioned_digits, where several images
share a combination, a retrieved item also counts by attribute match (an image showing
the caption's combination; a caption naming the image's combination), and the top-1
item's per-attribute match rates are reported. The quality figure eval/r1_mean is the
mean of the two directions' recall@1, by attribute match for captioned_digits, else of
the paired item.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from scipy import stats

from genjax import data
from genjax.checkpoint import Quality, library_versions
from genjax.errors import ConfigError
from genjax.evaluate import metrics
from genjax.evaluate.generative import (GENERATORS, MAX_SAMPLES, _check_extractor,
                                        default_classifier_workdir, eval_settings)

CHUNK = 256
ATTRIBUTED = "captioned_digits"  # the dataset whose captions' attributes are measurable
ATTRIBUTES = ("digit", "colour", "thickness", "slant")
HELD_OUT_SPLIT = "heldout"
PATH_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 6), 6))
NUM_PATHS = 10
RECALL_AT = (1, 5)


# ---------------------------------------------------------------- shared helpers


def split_captions(spec: data.DataSpec, split: str) -> tuple[list[list[str]], dict | None]:
    """(every caption of every record of `split`, in record order, i.e. load_split's
    order; for captioned_digits {'digit', 'colour', 'thickness', 'slant'} int64 [n] of
    each record, else None)."""
    from genjax.data import layouts
    from genjax.data.pipeline import dataset_source

    if layouts.is_folder(spec):
        root = spec.folder
        _, texts, _ = layouts._captioned_files(root, split,
                                               layouts._captioned_classes(root) or None)
        return [list(t) for t in texts], None
    source = dataset_source(spec.name, split, spec.data_dir)
    records = [source[i] for i in range(len(source))]
    texts = [layouts._tfds_captions(r) for r in records]
    if spec.name != ATTRIBUTED:
        return texts, None
    attributes = {a: np.array([int(r["label" if a == "digit" else a]) for r in records],
                              np.int64) for a in ATTRIBUTES}
    return texts, attributes


def caption_rows(texts: list[list[str]], num: int | None, seed: int) -> np.ndarray:
    """The (record, caption) index pairs [M, 2] of every caption, record by record; a
    seeded subset of `num` of them (in the same order) when num is smaller."""
    rows = np.array([(r, j) for r, captions in enumerate(texts) for j in range(len(captions))],
                    np.int64).reshape(-1, 2)
    if num is not None and num < len(rows):
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), num, replace=False))
        rows = rows[keep]
    return rows


def _chunked(fn, *arrays) -> np.ndarray:
    n = len(arrays[0])
    return np.concatenate([np.asarray(fn(*(a[i:i + CHUNK] for a in arrays)))
                           for i in range(0, n, CHUNK)])


def _find_extractor(config, extractor, extractor_workdir):
    """The extractor given, else the classifier named (extractor_workdir,
    eval.classifier_workdir; missing is an error), else the default one where it
    exists, else None."""
    from genjax.evaluate.extractors import ClassifierExtractor, has_classifier

    if extractor is None:
        named = extractor_workdir or eval_settings(config).get("classifier_workdir", "")
        where = named or default_classifier_workdir(config)
        if named or has_classifier(where):
            extractor = ClassifierExtractor.from_workdir(where, config.dataset.name)
    if extractor is not None:
        _check_extractor(extractor, config)
    return extractor


def rates(measured: dict, wanted: dict) -> dict:
    """{attribute: fraction right} over the attributes in `measured`, and 'all_correct'
    (every one of them right)."""
    right = {a: np.asarray(measured[a]) == np.asarray(wanted[a]) for a in measured}
    out = {a: float(np.mean(r)) for a, r in right.items()}
    out["all_correct"] = float(np.mean(np.all(np.stack(list(right.values())), axis=0)))
    return out


def spearman_rho(weights, values) -> float | None:
    """scipy's Spearman rho of values against weights; None where undefined (a constant
    sequence)."""
    values = np.asarray(values, np.float64)
    if np.all(values == values[0]):
        return None
    rho = stats.spearmanr(np.asarray(weights, np.float64), values).statistic
    return None if not np.isfinite(rho) else float(rho)


def interpolation_paths() -> list[tuple[int, int, int]]:
    """(digit, colour, slant) of each thin -> bold path: digit k, slant k mod 3, the
    first colour from k mod 6 on whose thin and bold combinations are both seen."""
    from genjax.data import captioned_digits as cd

    paths = []
    for k in range(NUM_PATHS):
        digit, slant = k % 10, k % 3
        colour = next(c % 6 for c in range(k, k + 6)
                      if not cd.is_held_out(digit, c % 6, 0, slant)
                      and not cd.is_held_out(digit, c % 6, 2, slant))
        paths.append((digit, colour, slant))
    return paths


# ----------------------------------------------------------------- 'captions'


class CaptionsEvaluator:
    """The 'captions' measurement (module docstring). Real side computed once, here."""

    kind = "captions"

    @staticmethod
    def needs_classifier(config) -> bool:
        """The loop trains runs/classifier_captioned_digits first where it is missing:
        the digit and the FD are read with it."""
        return config.dataset.name == ATTRIBUTED

    def __init__(self, config, spec: data.DataSpec, extractor=None, *, num=None,
                 seed=None, generator: str = "ema"):
        if generator not in GENERATORS:
            raise ConfigError(f"generator must be one of {GENERATORS}, got {generator!r}.")
        settings = eval_settings(config)
        self.config, self.spec, self.extractor = config, spec, extractor
        # --generator=raw: the task functions get which='raw' (the trained weights, not
        # their moving average), as the 'generative' measurement's `sample` does.
        self.variant = {} if generator == "ema" else {"which": generator}
        self.generator = generator
        self.seed = int(settings["seed"] if seed is None else seed)
        self.split = settings["split"]
        self.num = int(num or settings.get("num_samples", 0) or 0) or None
        meta = data.meta(spec)
        self.tokenizer = data.Tokenizer.from_meta(meta)
        self.attributed = spec.name == ATTRIBUTED
        splits = [self.split]
        if self.attributed and HELD_OUT_SPLIT in meta.num_examples and \
                self.split != HELD_OUT_SPLIT:
            splits.append(HELD_OUT_SPLIT)
        if extractor is None and not self.attributed:
            raise ConfigError(
                f"The 'captions' measurement has nothing to measure on {spec.name!r}: "
                "attributes are measured only on captioned_digits, and the FD needs an "
                "evaluation classifier of this dataset. Name one (eval.classifier_workdir "
                "or --extractor_workdir) or declare no 'captions' evaluator.")
        self.parts = {}
        for split in splits:
            texts, attributes = split_captions(spec, split)
            rows = caption_rows(texts, self.num, self.seed)
            real = data.load_split(spec, split)
            images = real["image"][rows[:, 0]]
            part = {"rows": rows,
                    "tokens": np.stack([self.tokenizer.encode(texts[r][j]) for r, j in rows]),
                    "images": images}
            if attributes is not None:
                part["wanted"] = {a: v[rows[:, 0]] for a, v in attributes.items()}
                part["real"] = rates(self._measure(images, part["wanted"]), part["wanted"])
            self.parts[split] = part
        if extractor is not None:
            reference = data.load_split(spec, self.split, MAX_SAMPLES, self.seed)["image"]
            generated = len(self.parts[self.split]["rows"])
            floor = data.load_split(spec, spec.split, generated, self.seed)["image"]
            self.reference, _ = extractor.features_and_logits(reference)
            floor_features, _ = extractor.features_and_logits(floor)
            self.fd_floor = metrics.frechet_distance(self.reference, floor_features)
            self.counts = {"reference": int(len(reference)), "floor": int(len(floor))}
        if self.attributed:
            from genjax.data import captioned_digits as cd
            self.paths = interpolation_paths()
            ends = [cd.path_captions(*p) for p in self.paths]
            self.path_tokens = (np.stack([self.tokenizer.encode(a) for a, _ in ends]),
                                np.stack([self.tokenizer.encode(b) for _, b in ends]))
            self.path_captions = ends

    @classmethod
    def from_entry(cls, config, spec, entry, *, extractor=None, extractor_workdir=None,
                   num=None, seed=None, generator: str = "ema", **_):
        if "generate" not in entry.functions:
            raise ConfigError("The 'captions' measurement needs the task function "
                              "'generate(state, tokens, key)'.")
        extractor = _find_extractor(config, extractor, extractor_workdir)
        return cls(config, spec, extractor, num=num, seed=seed, generator=generator)

    @property
    def quality(self) -> Quality:
        if self.attributed:
            return Quality(f"eval/{self.split}/all_correct", "max")
        return Quality("eval/fd", "min")

    def _measure(self, images, wanted) -> dict:
        from genjax.data import captioned_digits as cd

        measured = cd.measure(images, wanted["digit"])
        if self.extractor is not None:
            _, logits = self.extractor.features_and_logits(images)
            measured = {"digit": np.asarray(logits).argmax(1), **measured}
        return measured

    def _generate(self, generate, state, tokens, index: int) -> np.ndarray:
        key = jax.random.fold_in(jax.random.key(self.seed), index)
        return np.concatenate([
            np.asarray(generate(state, tokens[i:i + CHUNK], jax.random.fold_in(key, c),
                                **self.variant), np.float32)
            for c, i in enumerate(range(0, len(tokens), CHUNK))])

    def _interpolation(self, interpolate, state) -> dict:
        from genjax.data import captioned_digits as cd

        tokens_a, tokens_b = self.path_tokens
        key = jax.random.fold_in(jax.random.key(self.seed), 1000)
        ink = np.stack([
            cd.ink_mass(np.asarray(interpolate(
                state, tokens_a, tokens_b, np.full(len(tokens_a), w, np.float32), key,
                **self.variant)))
            for w in PATH_WEIGHTS], axis=1)  # [paths, weights]
        digits = np.array([p[0] for p in self.paths])
        relative = ink / np.exp(cd.calibration().thickness[digits, 1])[:, None]
        rho = [spearman_rho(PATH_WEIGHTS, row) for row in ink]
        defined = [r for r in rho if r is not None]
        return {"rho_mean": float(np.mean(defined)) if defined else None, "rho": rho,
                "weights": list(PATH_WEIGHTS), "relative_ink": relative.round(4).tolist(),
                "captions": [list(c) for c in self.path_captions]}

    def protocol(self) -> dict:
        out = {"dataset": self.config.dataset.name, "image_size": self.config.image_size,
               "splits": {s: {"captions": int(len(p["rows"])),
                              "records": int(len(np.unique(p["rows"][:, 0])))}
                          for s, p in self.parts.items()},
               "seed": self.seed, "generator": self.generator,
               "noise": f"generate(tokens[i:i+{CHUNK}], fold_in(fold_in(key({self.seed}), "
                        "split index), chunk index))",
               "versions": library_versions()}
        if self.attributed:
            out["attributes"] = (
                "colour: palette hue nearest the circular mean hue of ink pixels (value >= "
                "0.5, weights saturation x value); thickness: log ink mass nearest the "
                "requested digit's calibrated level; slant: moment slant nearest the "
                "requested digit's calibrated level (genjax.data.captioned_digits.measure)")
            out["digit"] = ("evaluation classifier argmax" if self.extractor is not None else
                            "not measured: no evaluation classifier (all_correct covers "
                            "colour, thickness and slant)")
            out["real"] = "the same measurements on each caption's own real image"
            out["interpolation"] = (f"{NUM_PATHS} thin -> bold paths at weights "
                                    f"{list(PATH_WEIGHTS)}, one call per weight with key "
                                    f"fold_in(key({self.seed}), 1000); Spearman rho of "
                                    "ink mass vs weight per path (scipy), mean over paths")
        if self.extractor is not None:
            out["extractor"] = self.extractor.describe()
            out["fd"] = (f"generated {self.split} images vs {self.counts['reference']} real "
                         f"{self.split} images; floor: {self.counts['floor']} real "
                         f"{self.config.dataset.split} images vs the same reference")
        return out

    def __call__(self, functions, state, step: int) -> dict:
        start = time.perf_counter()
        result = {"kind": self.kind, "task": self.config.task, "step": int(step)}
        generated_images = {}
        for index, (split, part) in enumerate(self.parts.items()):
            fake = self._generate(functions["generate"], state, part["tokens"], index)
            generated_images[split] = fake
            row = {"num": int(len(fake))}
            if "wanted" in part:
                row["generated"] = rates(self._measure(fake, part["wanted"]), part["wanted"])
                row["real"] = part["real"]
            result[split] = row
        if self.extractor is not None:
            features, _ = self.extractor.features_and_logits(generated_images[self.split])
            result["fd"] = {"generated": metrics.frechet_distance(self.reference, features),
                            "floor": self.fd_floor}
        if self.attributed and "interpolate" in functions:
            result["interpolation"] = self._interpolation(functions["interpolate"], state)
        result["protocol"] = self.protocol()
        result["seconds"] = round(time.perf_counter() - start, 2)
        return result

    @staticmethod
    def scalars(result: dict) -> dict[str, float]:
        out = {}
        for split in (k for k, v in result.items() if isinstance(v, dict) and "num" in v):
            for side, prefix in (("generated", "eval"), ("real", "eval_real")):
                for name, value in result[split].get(side, {}).items():
                    out[f"{prefix}/{split}/{name}"] = value
        if "fd" in result:
            out["eval/fd"] = result["fd"]["generated"]
            out["eval_floor/fd"] = result["fd"]["floor"]
        rho = result.get("interpolation", {}).get("rho_mean")
        if rho is not None:
            out["eval/thickness_rho"] = rho
        return out

    @staticmethod
    def table(result: dict) -> str:
        p = result["protocol"]
        lines = [f"step {result['step']} ({result['task']}) on {p['dataset']}: one image "
                 "per caption"]
        for split in p["splits"]:
            row = result[split]
            if "generated" in row:
                names = list(row["generated"])
                lines.append(f"{split:>8} ({row['num']} captions): " + ", ".join(
                    f"{n} {row['generated'][n]:.3f} (real {row['real'][n]:.3f})"
                    for n in names))
        if "fd" in result:
            lines.append(f"FD {result['fd']['generated']:.4g} (floor "
                         f"{result['fd']['floor']:.4g})")
        if "interpolation" in result and result["interpolation"]["rho_mean"] is not None:
            lines.append(f"thin -> bold interpolation: mean Spearman rho "
                         f"{result['interpolation']['rho_mean']:.3f}")
        if p.get("digit", "").startswith("not measured"):
            lines.append("digit not measured: no evaluation classifier")
        return "\n".join(lines)


# ---------------------------------------------------------------- 'retrieval'


def _normalised(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _top(similarity: np.ndarray, k: int) -> np.ndarray:
    """Indices [N, k] of the k largest entries of each row, largest first (ties broken
    by the lower index)."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    return order[:, :k]


def recall_at(similarity, correct, ks=RECALL_AT) -> dict[str, float]:
    """{'r@k': the fraction of query rows whose k most similar items include one marked
    correct} for similarity [Q, M] and correct bool [Q, M]."""
    top = _top(np.asarray(similarity), max(ks))
    hits = np.take_along_axis(np.asarray(correct), top, axis=1)
    return {f"r@{k}": float(np.mean(hits[:, :k].any(axis=1))) for k in ks}


class RetrievalEvaluator:
    """The 'retrieval' measurement (module docstring)."""

    kind = "retrieval"
    quality = Quality("eval/r1_mean", "max")

    def __init__(self, config, spec: data.DataSpec, *, seed=None):
        settings = eval_settings(config)
        self.config = config
        self.seed = int(settings["seed"] if seed is None else seed)
        self.split = settings["split"]
        tokenizer = data.Tokenizer.from_meta(data.meta(spec))
        texts, self.attributes = split_captions(spec, self.split)
        self.rows = caption_rows(texts, None, self.seed)
        self.tokens = np.stack([tokenizer.encode(texts[r][j]) for r, j in self.rows])
        self.images = data.load_split(spec, self.split)["image"]

    @classmethod
    def from_entry(cls, config, spec, entry, *, seed=None, **_):
        missing = {"embed_text", "embed_image"} - set(entry.functions)
        if missing:
            raise ConfigError("The 'retrieval' measurement needs the task functions "
                              "'embed_text(state, tokens)' and 'embed_image(state, images)'; "
                              f"missing: {sorted(missing)}.")
        return cls(config, spec, seed=seed)

    def __call__(self, functions, state, step: int) -> dict:
        start = time.perf_counter()
        text = _normalised(_chunked(lambda t: functions["embed_text"](state, t), self.tokens))
        image = _normalised(_chunked(lambda x: functions["embed_image"](state, x), self.images))
        similarity = text @ image.T  # [captions, images]
        own = self.rows[:, 0][:, None] == np.arange(len(self.images))[None, :]
        result = {"kind": self.kind, "task": self.config.task, "step": int(step),
                  "caption_to_image": recall_at(similarity, own),
                  "image_to_caption": recall_at(similarity.T, own.T)}
        if self.attributes is not None:
            a = self.attributes
            combo = np.stack([a[n] for n in ATTRIBUTES], axis=1)
            wanted = combo[self.rows[:, 0]]  # each caption's combination
            match = np.all(wanted[:, None, :] == combo[None, :, :], axis=2)
            result["caption_to_image_attributes"] = recall_at(similarity, match)
            result["image_to_caption_attributes"] = recall_at(similarity.T, match.T)
            best_image = _top(similarity, 1)[:, 0]
            best_caption = _top(similarity.T, 1)[:, 0]
            result["top1_attribute_match"] = {
                "caption_to_image": {n: float(np.mean(combo[best_image, i] == wanted[:, i]))
                                     for i, n in enumerate(ATTRIBUTES)},
                "image_to_caption": {n: float(np.mean(wanted[best_caption, i] == combo[:, i]))
                                     for i, n in enumerate(ATTRIBUTES)}}
            by = ("caption_to_image_attributes", "image_to_caption_attributes")
        else:
            by = ("caption_to_image", "image_to_caption")
        result["r1_mean"] = float(np.mean([result[d]["r@1"] for d in by]))
        result["protocol"] = {
            "dataset": self.config.dataset.name, "split": self.split,
            "captions": int(len(self.rows)), "images": int(len(self.images)),
            "similarity": "cosine", "r1_mean": f"mean r@1 of {' and '.join(by)}",
            "attribute_match": "a retrieved item counts when it shows (or names) exactly "
                               "the query's digit, colour, thickness and slant",
            "chance_r@1": {"caption_to_image": 1.0 / len(self.images),
                           "image_to_caption": float(np.mean(
                               [own[:, i].sum() for i in range(own.shape[1])])) /
                           len(self.rows)},
            "versions": library_versions()}
        result["seconds"] = round(time.perf_counter() - start, 2)
        return result

    @staticmethod
    def scalars(result: dict) -> dict[str, float]:
        out = {"eval/r1_mean": result["r1_mean"]}
        for direction in ("caption_to_image", "image_to_caption",
                          "caption_to_image_attributes", "image_to_caption_attributes"):
            for name, value in result.get(direction, {}).items():
                out[f"eval/{direction}/{name}"] = value
        return out

    @staticmethod
    def table(result: dict) -> str:
        p = result["protocol"]
        lines = [f"step {result['step']} ({result['task']}): retrieval on {p['dataset']}/"
                 f"{p['split']} ({p['captions']} captions, {p['images']} images, cosine)"]
        for direction in ("caption_to_image", "image_to_caption",
                          "caption_to_image_attributes", "image_to_caption_attributes"):
            if direction in result:
                lines.append(f"{direction:>28}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in result[direction].items()))
        lines.append(f"mean R@1 {result['r1_mean']:.3f}")
        return "\n".join(lines)
