"""The 'translation' measurement: translated images against paired targets, under a
written protocol (pix2pix and any paired image-to-image task).

A task declares it with

    Evaluation('translation', {'translate': f}, options)

`translate(state, inputs [N, H, W, Ci] in [-1, 1]) -> outputs [N, H, W, Ct] in [-1, 1]`
is the task's translation of a batch of inputs, in evaluation mode (or as the task
defines its test-time behaviour, e.g. pix2pix's dropout). Options: none needed; `num`
and `seed` come from the command line or eval.num_samples / eval.seed.

Protocol (`TranslationEvaluator`; results in eval/step_<N>.json):
  * pairs: all of eval.split (default 'test'), or a random subset of `num` pairs fixed by
    eval.seed, read with `genjax.data.load_split` in the training preprocessing without
    jitter (the 'paired' layout: inputs, targets, labels), in chunks of 256 through
    `translate`. For the embedded datasets the test split is never trained on: the
    digits of digits_upsample's test split are the digits' test split; photo_colour's
    test patches come from whole photographs held out of training.
  * distortion to the target, images in [-1, 1] (a range of 2):
      l1    mean |output - target| over every pixel and channel of the split;
      psnr  10 log10(2^2 / MSE), MSE over every pixel and channel of the split (as the
            'autoencoding' measurement's PSNR; +inf only for an exact copy);
      ssim  mean over images of the structural similarity (Wang et al. 2004) of
            `skimage.metrics.structural_similarity`: Gaussian window sigma 1.5 (11x11),
            K1 0.01, K2 0.03, population covariances, data range 2, averaged over the
            channels and the valid (unpadded) window positions. Images under 11 pixels
            on a side use a uniform window of the largest odd size that fits (at least
            3), recorded in the protocol.
    L1 alone minimises these by averaging the plausible answers, so they reward blur;
    the realism figures below show what they miss.
  * realism, where a feature extractor applies (the embedded digits_upsample, whose
    targets are the embedded digits: the genjax evaluation classifier of the digits,
    runs/classifier_digits, as every digits measurement uses; or any classifier named by
    --extractor_workdir / eval.classifier_workdir): fd, the Fréchet distance between the
    extractor's features of the outputs and of the split's targets (float64, as
    'generative'). FD at a few hundred images is biased upwards, so the **floor** is
    written beside it: as many real training-split targets (a subset fixed by the seed)
    against the same test targets, what an independent draw of real images scores at
    this count. It is not a lower bound for a translator, whose outputs are paired with
    the very targets they are measured against (a perfect one scores 0). Photographs:
    no FD; genjax has no feature extractor of natural photographs (no classifier of
    photo_colour exists to train, and Inception weights are not available offline), so
    the figure is omitted and the protocol says so.
  * semantic fidelity, where the dataset has class labels and the extractor a
    classifier head (digits_upsample): accuracy, the extractor's argmax class of each
    output against the label of its input (the paper's "FCN-score" idea); beside it the
    same classifier's accuracy on the real targets.
  * colour, when the target has 3 channels (photo_colour): colourfulness of Hasler &
    Süsstrunk (2003) per image, on 0..255 RGB: rg = R - G, yb = (R + G)/2 - B,
    M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2) (population
    std), averaged over the images, for the outputs and the targets, and their ratio
    (L1 alone desaturates: ratio < 1); and pix2pix's Fig. 7 figure, the intersection of
    the outputs' and the targets' histograms of CIE Lab a and of b over all pixels of
    the split (`skimage.color.rgb2lab`, D65; 65 bins of width 4 centred on -128, -124,
    ..., 128, values beyond clipped into the end bins; 1 = the same colour distribution).
  * baseline ("no learning"): every figure also for the input itself as the output,
    its channels brought to the target's (a grey input repeated to RGB); for
    digits_upsample this is the nearest-upsampled 4x4 input, for photo_colour the
    greyscale photograph.
  * targets: the real targets' own figures where they are not trivial (their FD floor,
    the classifier's accuracy on them, their colourfulness): what a perfect translator
    would score.
The quality figure (the run's best checkpoint) is eval/l1, lower is better: it exists
for every paired dataset, it is the distance the generator's L1 term is trained on, so
runs with and without the adversarial term are ranked on one common scale; read it with
the realism and colour figures, which it does not reward.
"""

from __future__ import annotations

import math
import time

import numpy as np

from genjax import data
from genjax.checkpoint import Quality, library_versions
from genjax.errors import ConfigError, GenjaxError
from genjax.evaluate import metrics
from genjax.evaluate.extractors import ClassifierExtractor, Extractor
from genjax.evaluate.generative import (_check_extractor, default_classifier_workdir,
                                        eval_settings)

CHUNK = 256  # Inputs per call of `translate`.
DATA_RANGE = 2.0  # Images in [-1, 1].
SSIM_SIGMA = 1.5
SSIM_GAUSSIAN_WINDOW = 11  # 2 * round(3.5 * sigma) + 1: skimage's window for sigma 1.5.
# Lab a/b histogram bins: width 4, centred on -128, -124, ..., 128 (a grey pixel, a = b
# = 0, falls in the middle of a bin, never on an edge).
LAB_BIN_WIDTH, LAB_CENTRES = 4.0, (-128.0, 128.0)


# ---------------------------------------------------------------------- figures


def l1(outputs, targets) -> float:
    """Mean absolute difference over every value."""
    return float(np.mean(np.abs(np.asarray(outputs, np.float64) - np.asarray(targets,
                                                                                np.float64))))


def psnr(outputs, targets) -> float:
    """10 log10(2^2 / MSE) in dB, MSE over every value (images in [-1, 1])."""
    mse = float(np.mean(np.square(np.asarray(outputs, np.float64)
                                  - np.asarray(targets, np.float64))))
    return float(10.0 * math.log10(DATA_RANGE ** 2 / mse)) if mse > 0 else float("inf")


def ssim_settings(height: int, width: int) -> dict:
    """skimage.metrics.structural_similarity's keyword arguments for this image size."""
    side = min(height, width)
    if side >= SSIM_GAUSSIAN_WINDOW:
        return {"gaussian_weights": True, "sigma": SSIM_SIGMA, "use_sample_covariance": False,
                "data_range": DATA_RANGE}
    window = side if side % 2 else side - 1
    if window < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}.")
    return {"gaussian_weights": False, "win_size": window, "use_sample_covariance": False,
            "data_range": DATA_RANGE}


def ssim(outputs, targets) -> float:
    """Mean over images of SSIM (module docstring), channels averaged."""
    from skimage.metrics import structural_similarity  # imported when measured

    outputs, targets = np.asarray(outputs, np.float64), np.asarray(targets, np.float64)
    settings = ssim_settings(*targets.shape[1:3])
    return float(np.mean([structural_similarity(o, t, channel_axis=-1, **settings)
                          for o, t in zip(outputs, targets)]))


def colourfulness(images) -> np.ndarray:
    """Hasler & Süsstrunk (2003) colourfulness of each RGB image in [-1, 1], on the 0..255
    scale: sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), rg = R - G,
    yb = (R + G) / 2 - B; [N] float64."""
    rgb = (np.asarray(images, np.float64) + 1.0) * 127.5
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    axes = (1, 2)
    spread = np.sqrt(rg.var(axis=axes) + yb.var(axis=axes))
    centre = np.sqrt(rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
    return spread + 0.3 * centre


def lab_histograms(images) -> dict[str, np.ndarray]:
    """Normalised histograms of CIE Lab a and b over all pixels of RGB images in [-1, 1]."""
    from skimage.color import rgb2lab  # imported when measured

    rgb = np.clip((np.asarray(images, np.float64) + 1.0) / 2.0, 0.0, 1.0)
    lab = rgb2lab(rgb.reshape(-1, 1, 3)).reshape(-1, 3)
    edges = np.arange(LAB_CENTRES[0] - LAB_BIN_WIDTH / 2, LAB_CENTRES[1] + LAB_BIN_WIDTH,
                      LAB_BIN_WIDTH)
    out = {}
    for name, channel in (("a", 1), ("b", 2)):
        counts, _ = np.histogram(np.clip(lab[:, channel], edges[0], edges[-1]), bins=edges)
        out[name] = counts / counts.sum()
    return out


def histogram_intersection(p, q) -> float:
    """sum_i min(p_i, q_i) of two normalised histograms: 1 = identical."""
    return float(np.minimum(p, q).sum())


def as_target_channels(inputs, channels: int) -> np.ndarray:
    """The input as an output with the target's channel count (grey repeated to RGB; RGB
    to grey by the BT.601 weights): the "no learning" baseline."""
    inputs = np.asarray(inputs, np.float32)
    if inputs.shape[-1] == channels:
        return inputs
    if inputs.shape[-1] == 1:
        return np.repeat(inputs, channels, axis=-1)
    if inputs.shape[-1] == 3 and channels == 1:
        return (inputs @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]
    raise ValueError(f"No baseline from {inputs.shape[-1]} to {channels} channels.")


# ------------------------------------------------------------------- measurement


def _why_no_extractor(config) -> str:
    return (f"no feature extractor for the targets of {config.dataset.name!r}: genjax's "
            "evaluation classifiers are trained on labelled 'images' datasets (the digits "
            "for digits_upsample), and no other describes natural photographs; name one "
            "with --extractor_workdir or eval.classifier_workdir")


def _has_default_classifier(config) -> bool:
    """Whether the run's targets are the images of an 'images' dataset with a genjax
    evaluation classifier (digits_upsample -> the digits' classifier)."""
    return data.classifier_dataset(config.dataset.name) != config.dataset.name


class TranslationEvaluator:
    """The protocol of the module docstring. The real side (the pairs, the baseline's
    figures, the targets' features and floor) is computed once, at construction."""

    kind = "translation"
    quality = Quality("eval/l1", "min")

    @staticmethod
    def needs_classifier(config) -> bool:
        """The loop trains the default evaluation classifier first where one applies
        (digits_upsample: the digits'); a user-named one is loaded as given."""
        return _has_default_classifier(config)

    def __init__(self, config, spec: data.DataSpec, extractor: Extractor | None = None, *,
                 num: int | None = None, seed: int | None = None):
        settings = eval_settings(config)
        self.config, self.extractor = config, extractor
        self.seed = int(settings["seed"] if seed is None else seed)
        self.split = settings["split"]
        self.num = int(num or settings.get("num_samples", 0) or 0) or None
        pairs = data.load_split(spec, self.split, self.num, self.seed)
        self.inputs, self.targets = pairs["input"], pairs["target"]
        self.labels = np.asarray(pairs["label"], np.int64)
        self.num_classes = data.meta(spec).num_classes
        self.channels = int(self.targets.shape[-1])
        self.colour = self.channels == 3
        self.skipped = {}
        if extractor is None:
            self.skipped["fd"] = _why_no_extractor(config)
        else:
            _check_extractor(extractor, config)
            wanted = extractor.input_shape[-1]
            if wanted != self.channels and not (self.channels == 1 and wanted == 3):
                raise ConfigError(
                    f"The feature extractor {extractor.name!r} takes {wanted}-channel images "
                    f"but the targets of {config.dataset.name!r} have {self.channels}; name "
                    "an extractor trained on images like the targets.")
            self.reference = extractor.features_and_logits(self.targets)
            train = data.load_split(spec, spec.split, len(self.targets), self.seed)["target"]
            self.floor_fd = metrics.frechet_distance(
                self.reference[0], extractor.features_and_logits(train)[0])
            self.num_floor = int(len(train))
        self.labelled = (self.num_classes is not None and extractor is not None
                         and self.reference[1] is not None)
        if self.num_classes is None:
            self.skipped["accuracy"] = "the dataset has no class labels"
        elif not self.labelled:
            self.skipped["accuracy"] = "no classifier head (see fd)"
        if not self.colour:
            self.skipped["colour"] = f"the targets have {self.channels} channel(s), not RGB"
        self.target_lab = lab_histograms(self.targets) if self.colour else None
        self.baseline = self.figures(as_target_channels(self.inputs, self.channels))
        self.target_figures = self._target_figures()

    @classmethod
    def from_entry(cls, config, spec, entry, *, extractor: Extractor | None = None,
                   extractor_workdir=None, num=None, seed=None, **_):
        """The measurement a task's Evaluation('translation', {'translate': f}) declares.
        The extractor: the one given, else the classifier named by extractor_workdir or
        eval.classifier_workdir, else the default one where one applies (digits_upsample:
        runs/classifier_digits, which must exist: the loop and `python -m
        genjax.evaluate` train it first), else none (no FD, no accuracy)."""
        if "translate" not in entry.functions:
            raise ConfigError("The 'translation' measurement needs the task function "
                              "'translate(state, inputs)'.")
        if extractor is None:
            named = extractor_workdir or eval_settings(config)["classifier_workdir"]
            if named or _has_default_classifier(config):
                extractor = ClassifierExtractor.from_workdir(
                    named or default_classifier_workdir(config),
                    data.classifier_dataset(config.dataset.name))
        return cls(config, spec, extractor, num=num, seed=seed)

    def translate(self, functions, state, inputs) -> np.ndarray:
        outputs = np.concatenate([np.asarray(functions["translate"](state, inputs[i:i + CHUNK]),
                                             np.float32)
                                  for i in range(0, len(inputs), CHUNK)])
        want = self.targets.shape
        if outputs.shape != want:
            raise GenjaxError(f"translate(state, inputs {inputs.shape}) returned shape "
                              f"{outputs.shape}; the targets are {want}. A translation must "
                              "keep the image size and give the target's channels.")
        if not np.all(np.isfinite(outputs)):
            raise GenjaxError("translate returned non-finite values (NaN or inf).")
        return outputs

    def figures(self, outputs) -> dict:
        """Every figure of `outputs` against the targets."""
        out = {"l1": l1(outputs, self.targets), "psnr": psnr(outputs, self.targets),
               "ssim": ssim(outputs, self.targets)}
        if self.extractor is not None:
            features, logits = self.extractor.features_and_logits(outputs)
            out["fd"] = metrics.frechet_distance(self.reference[0], features)
            if self.labelled:
                out["accuracy"] = float(np.mean(logits.argmax(1) == self.labels))
        if self.colour:
            mine, theirs = colourfulness(outputs).mean(), colourfulness(self.targets).mean()
            out["colourfulness"] = float(mine)
            out["colourfulness_ratio"] = float(mine / theirs) if theirs > 0 else None
            hist = lab_histograms(outputs)
            out["lab_a_intersection"] = histogram_intersection(hist["a"], self.target_lab["a"])
            out["lab_b_intersection"] = histogram_intersection(hist["b"], self.target_lab["b"])
        return out

    def _target_figures(self) -> dict:
        out = {}
        if self.extractor is not None:
            out["fd"] = self.floor_fd  # train targets vs test targets: the floor
            if self.labelled:
                out["accuracy"] = float(np.mean(self.reference[1].argmax(1) == self.labels))
        if self.colour:
            out["colourfulness"] = float(colourfulness(self.targets).mean())
        return out

    def protocol(self) -> dict:
        c = self.config
        height, width = self.targets.shape[1:3]
        return {
            "dataset": c.dataset.name, "image_size": c.image_size, "split": self.split,
            "num_pairs": int(len(self.targets)),
            "pairs": "all of the split" if self.num is None or self.num >= len(self.targets)
                     else f"random subset of {self.num}, seed {self.seed}",
            "seed": self.seed, "chunk": CHUNK,
            "l1": "mean |output - target|, images in [-1, 1]",
            "psnr": "10 log10(2^2 / MSE), MSE over the whole split, images in [-1, 1]",
            "ssim": {"library": "skimage.metrics.structural_similarity", "mean": "over images",
                     "channels": "averaged", "K1": 0.01, "K2": 0.03,
                     **ssim_settings(height, width)},
            "extractor": None if self.extractor is None else self.extractor.describe(),
            "fd": ("Fréchet distance of extractor features, outputs vs the split's targets; "
                   f"floor: {getattr(self, 'num_floor', 0)} real {c.dataset.split} targets "
                   f"(seed {self.seed}) vs the same") if self.extractor is not None else None,
            "accuracy": ("extractor argmax class of each output vs its input's label; "
                         "targets: the same classifier on the real targets")
                        if self.labelled else None,
            "colourfulness": "Hasler & Süsstrunk 2003 on 0..255 RGB, mean over images; "
                             "ratio = outputs / targets" if self.colour else None,
            "lab_intersection": (f"histogram intersection of CIE Lab a (b) over all pixels, "
                                 f"outputs vs targets, skimage rgb2lab (D65), bins of width "
                                 f"{LAB_BIN_WIDTH:g} centred on {LAB_CENTRES[0]:g}..."
                                 f"{LAB_CENTRES[1]:g}") if self.colour
                                else None,
            "baseline": "the input itself as the output, channels brought to the target's "
                        "(grey repeated to RGB)",
            "skipped": dict(self.skipped),
            "versions": library_versions(),
        }

    def __call__(self, functions, state, step: int) -> dict:
        start = time.perf_counter()
        outputs = self.translate(functions, state, self.inputs)
        return {"kind": "translation", "task": self.config.task, "step": int(step),
                "outputs": self.figures(outputs), "baseline": self.baseline,
                "targets": self.target_figures, "protocol": self.protocol(),
                "seconds": round(time.perf_counter() - start, 2)}

    @staticmethod
    def scalars(result: dict) -> dict[str, float]:
        """eval/<figure> of the outputs, eval_baseline/<figure>, eval_targets/<figure>."""
        out = {}
        for prefix, key in (("eval", "outputs"), ("eval_baseline", "baseline"),
                            ("eval_targets", "targets")):
            out.update({f"{prefix}/{k}": v for k, v in result[key].items() if v is not None})
        return out

    @staticmethod
    def table(result: dict) -> str:
        """The printed summary: one row each for outputs, baseline and targets."""
        p = result["protocol"]
        short = {"l1": "L1", "psnr": "PSNR dB", "ssim": "SSIM", "fd": "FD",
                 "accuracy": "accuracy", "colourfulness": "colourful",
                 "colourfulness_ratio": "colour ratio", "lab_a_intersection": "Lab a hist",
                 "lab_b_intersection": "Lab b hist"}
        names = [k for k in short if k in result["outputs"]]
        lines = [f"step {result['step']}: translation of {p['num_pairs']} {p['dataset']}/"
                 f"{p['split']} pairs ({p['pairs']})",
                 f"{'':>26} " + " ".join(f"{short[n]:>12}" for n in names)]
        rows = [("outputs", result["outputs"]), ("input as output (baseline)",
                                                 result["baseline"]),
                ("real targets", result["targets"])]
        for label, values in rows:
            cells = ["-" if values.get(n) is None else f"{values[n]:.4g}" for n in names]
            lines.append(f"{label:>26} " + " ".join(f"{c:>12}" for c in cells))
        for what, why in p["skipped"].items():
            lines.append(f"not measured: {what}: {why}")
        return "\n".join(lines)


def no_learning(name: str, image_size: int, *, data_dir: str | None = None,
                classifier_workdir: str | None = None, num: int | None = None,
                seed: int = 0) -> dict:
    """The measurement of the no-learning translator (the input itself as the output) on
    a paired dataset, without any run: what the 'baseline' row of every evaluation on
    that dataset holds. `classifier_workdir`: a genjax classifier for FD and accuracy
    (for digits_upsample, the digits' one); None measures without."""
    import ml_collections

    config = ml_collections.ConfigDict({
        "task": "no_learning", "image_size": image_size,
        "dataset": {"name": name, "split": "train", "data_dir": data_dir or ""},
        "eval": {"split": "test", "seed": seed, "num_samples": num or 0,
                 "classifier_workdir": ""}})
    spec = data.DataSpec(name=name, split="train", eval_split="test", image_size=image_size,
                         layout="paired", data_dir=data_dir)
    extractor = None
    if classifier_workdir:
        extractor = ClassifierExtractor.from_workdir(classifier_workdir,
                                                     data.classifier_dataset(name))
    measure = TranslationEvaluator(config, spec, extractor)
    channels = measure.channels
    return measure({"translate": lambda state, x: as_target_channels(x, channels)}, None, 0)
