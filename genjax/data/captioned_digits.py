"""The embedded `captioned_digits` dataset: colour digits with captions whose truth is known.

scikit-learn's 1,797 handwritten digits drawn at 32x32 in colour with four controlled
attributes, each record with five templated, paraphrased captions that name all four
("a bold red seven leaning right", "the digit 7, thick strokes, in red, slanted to the
right", ...). It prepares offline in a few seconds, through the same TFDS -> grain path
as every dataset; the 'captioned' layout serves it.

Attributes (integers in the records, names in the captions):
  label      the digit 0..9 (words 'zero'..'nine' or the numeral);
  colour     the ink colour, COLOURS = red, yellow, green, cyan, blue, magenta: the
             fully saturated HSV hues 0, 60, ..., 300 degrees (RGB), on a black
             background (synonyms 'turquoise' for cyan, 'purple' for magenta);
  thickness  THICKNESS = thin, regular, bold (synonyms thin/fine/slim, regular/medium/
             normal, bold/thick/heavy): a grey erosion (5x5 minimum filter), none, or a
             grey dilation (7x7 maximum filter) at the 64x64 drawing size;
  slant      SLANTS = left, upright, right ('leaning left', 'left-slanted', 'tilted to
             the left', 'upright', 'standing straight', ...): a horizontal shear of
             -0.3, 0 or +0.3 pixel per row. Every digit is first deslanted (its moment
             slant set to 0), because the natural slant depends on the class (a 7 leans
             right, a 6 left): the slant word never tells the class.
A record's combination is (label, colour, thickness, slant); 10 x 6 x 3 x 3 = 540 in all.

The drawing of a source digit (uint8 8x8): resized to 48x48 (PIL bilinear) on a 64x64
black canvas (padding 8), intensities in [0, 1]; deslanted (a shear about the ink's
centroid row that zeroes the ink's row-column covariance); eroded or dilated; sheared
by the slant; 2x2 block means (64 -> 32); scaled so the brightest pixel is 1; times the
colour's RGB; rounded to uint8. The value channel (max over RGB) of an image is thus
exactly its grey drawing, whatever the colour.

Splits (base digits: the embedded `digits` split, so train and the evaluation splits
never share a handwritten digit):
  train    1,500 records, the digits' training images, each drawn in one *seen*
           combination;
  test     297 records, the digits' 297 test images, each in a seen combination (one
           that train has; every seen combination has 3-4 training images);
  heldout  the same 297 test images, each in a *held-out* combination: one that never
           occurs in train or test (zero-shot).
Held-out combinations (HELD_OUT, `is_held_out`): the full product digit x colour x
thickness x slant, 60 of the 540: for each digit d and colour c the one
(thickness, slant) = divmod((d + 2c) mod 9, 3). So every (digit, colour) pair, every
(digit, thickness, slant) triple and every (colour, thickness, slant) triple still
occurs in training; only the whole combination is new. Within a split, each digit's
records cycle through a seeded permutation of the digit's allowed combinations
(48 seen, or 6 held out), so attributes are balanced within every class.

Records: `image` uint8 (32, 32, 3), `label`, `colour`, `thickness`, `slant` (ClassLabel
ints in the orders above), `index` (the scikit-learn image), `captions` (5 strings).
Everything is a pure function of SEED: preparing twice gives the same bytes.

Measurement (`measure`, with `calibration()`; what the 'captions' evaluator reads on
generated images): colour = the palette hue nearest the circular mean hue of the ink
pixels (`ink_hue`, value >= 0.5, weighted by saturation x value); thickness = the ink
mass (mean value) against the class's own mass at each thickness, calibrated on the
training records (log-midpoints between the three levels' means); slant = the moment
slant of the value map against the class's own slant at each level, calibrated the
same way. `parse_caption` reads the attributes back from a caption's words.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from genjax.data import digits as digits_lib

NAME = "captioned_digits"
SIZE = 32
SHAPE = (SIZE, SIZE, 3)
SPLITS = ("train", "test", "heldout")
SEED = 0
NUM_CAPTIONS = 5
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
               "nine")
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
HUES = tuple(60.0 * k for k in range(len(COLOURS)))  # degrees, HSV hue of each colour
RGB = tuple(tuple(int(round(255 * x)) for x in colorsys.hsv_to_rgb(h / 360.0, 1.0, 1.0))
            for h in HUES)
THICKNESS = ("thin", "regular", "bold")
STROKE = (-5, 0, 7)  # odd size of the erosion (negative) or dilation (positive) at 64x64
SLANTS = ("left", "upright", "right")
SHEAR = (-0.3, 0.0, 0.3)  # pixels per row; > 0 leans the top to the right
DRAWN, PAD = 48, 8  # the source is drawn at 48x48 on a 64x64 canvas, then halved
INK_THRESHOLD = 0.5  # value (max over RGB, in [0, 1]) from which a pixel counts as ink

# Caption words. Each attribute value's synonyms; slant as a phrase after the noun
# ('leaning left') or an adjective before it ('left-leaning').
COLOUR_WORDS = {"red": ("red",), "yellow": ("yellow",), "green": ("green",),
                "cyan": ("cyan", "turquoise"), "blue": ("blue",),
                "magenta": ("magenta", "purple")}
THICKNESS_WORDS = {"thin": ("thin", "fine", "slim"), "regular": ("regular", "medium", "normal"),
                   "bold": ("bold", "thick", "heavy")}
SLANT_PHRASES = {"left": ("leaning left", "slanted to the left", "tilted to the left"),
                 "upright": ("upright", "standing upright", "standing straight"),
                 "right": ("leaning right", "slanted to the right", "tilted to the right")}
SLANT_ADJECTIVES = {"left": ("left-leaning", "left-slanted"), "upright": ("upright", "straight"),
                    "right": ("right-leaning", "right-slanted")}
TEMPLATES = (
    "{a} {thick} {colour} {word} {slant}",
    "the digit {num}, {thick} strokes, in {colour}, {slant}",
    "{a} {slant_adj} {word} in {colour} with {thick} strokes",
    "{colour} ink, {thick} strokes: the number {word}, {slant}",
    "{a} {thick} {slant_adj} {num} written in {colour}",
    "{word} in {thick} {colour} strokes, {slant}",
)


# ------------------------------------------------------------------ combinations


def held_out_pair(digit: int, colour: int) -> tuple[int, int]:
    """The (thickness, slant) held out for this digit and colour."""
    return divmod((digit + 2 * colour) % 9, 3)


HELD_OUT = frozenset((d, c, *held_out_pair(d, c)) for d in range(10)
                     for c in range(len(COLOURS)))


def is_held_out(digit: int, colour: int, thickness: int, slant: int) -> bool:
    """Whether a combination belongs to the zero-shot 'heldout' split (never in train)."""
    return (int(digit), int(colour), int(thickness), int(slant)) in HELD_OUT


def _combinations(digit: int, held_out: bool) -> list[tuple[int, int, int]]:
    """The digit's (colour, thickness, slant) of the seen or held-out set, in order."""
    return [(c, t, s) for c in range(len(COLOURS)) for t in range(3) for s in range(3)
            if is_held_out(digit, c, t, s) == held_out]


# --------------------------------------------------------------------- captions


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def caption(digit: int, colour: int, thickness: int, slant: int, template: int,
            rng: np.random.Generator) -> str:
    """One caption of a combination from TEMPLATES[template], synonyms drawn by `rng`."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    fields = {"word": DIGIT_WORDS[digit], "num": str(digit),
              "colour": pick(COLOUR_WORDS[COLOURS[colour]]),
              "thick": pick(THICKNESS_WORDS[THICKNESS[thickness]]),
              "slant": pick(SLANT_PHRASES[SLANTS[slant]]),
              "slant_adj": pick(SLANT_ADJECTIVES[SLANTS[slant]])}
    text = TEMPLATES[template]
    if text.startswith("{a} "):
        following = text[4:].split(" ", 1)[0].strip("{}")
        fields["a"] = _article(fields[following])
    return text.format(**fields)


def captions(digit: int, colour: int, thickness: int, slant: int,
             rng: np.random.Generator, num: int = NUM_CAPTIONS) -> list[str]:
    """`num` captions from `num` different templates (a seeded choice and order)."""
    templates = rng.permutation(len(TEMPLATES))[:num]
    return [caption(digit, colour, thickness, slant, int(t), rng) for t in templates]


def path_captions(digit: int, colour: int, slant: int) -> tuple[str, str]:
    """The thin and the bold caption of one digit, colour and slant, in the first
    template with the first synonyms ("a thin red seven leaning right", "a bold red
    seven leaning right"): the two ends of a thin -> bold interpolation."""
    ends = []
    for thickness in (0, 2):
        word = THICKNESS_WORDS[THICKNESS[thickness]][0]
        ends.append(f"{_article(word)} {word} {COLOURS[colour]} {DIGIT_WORDS[digit]} "
                    f"{SLANT_PHRASES[SLANTS[slant]][0]}")
    return ends[0], ends[1]


def _word_index():
    index = {}
    for i, word in enumerate(DIGIT_WORDS):
        index[word] = ("label", i)
        index[str(i)] = ("label", i)
    for i, name in enumerate(COLOURS):
        for word in COLOUR_WORDS[name]:
            index[word] = ("colour", i)
    for i, name in enumerate(THICKNESS):
        for word in THICKNESS_WORDS[name]:
            index[word] = ("thickness", i)
    index.update({"left": ("slant", 0), "upright": ("slant", 1), "straight": ("slant", 1),
                  "right": ("slant", 2)})
    return index


_WORDS = _word_index()


def parse_caption(text: str) -> dict[str, int]:
    """{'label', 'colour', 'thickness', 'slant'} named by a caption's words (the
    tokenizer's word split). A caption that names an attribute twice differently, or not
    at all, is an error."""
    from genjax.data.text import words

    found: dict[str, int] = {}
    for word in words(text):
        if word in _WORDS:
            attribute, value = _WORDS[word]
            if found.setdefault(attribute, value) != value:
                raise ValueError(f"The caption {text!r} names two values of {attribute}.")
    missing = {"label", "colour", "thickness", "slant"} - set(found)
    if missing:
        raise ValueError(f"The caption {text!r} does not name {sorted(missing)}.")
    return found


# ---------------------------------------------------------------------- drawing


def _shear(v: np.ndarray, shear: float, row_centre: float) -> np.ndarray:
    """output(r, c) = input(r, c - shear·(row_centre - r)), bilinear, zeros outside."""
    from scipy import ndimage

    return ndimage.affine_transform(v, np.array([[1.0, 0.0], [shear, 1.0]]),
                                    offset=(0.0, -shear * row_centre), order=1)


def grey(source: np.ndarray, thickness: int, slant: int) -> np.ndarray:
    """The grey drawing float64 [32, 32] in [0, 1] of a source digit uint8 [8, 8, 1]
    (the module docstring's steps)."""
    from PIL import Image
    from scipy import ndimage

    up = Image.fromarray(np.asarray(source, np.uint8)[..., 0]).resize((DRAWN, DRAWN),
                                                                      Image.BILINEAR)
    v = np.pad(np.asarray(up, np.float64) / 255.0, PAD)
    row_centre = float((v * np.arange(v.shape[0])[:, None]).sum() / v.sum())
    v = _shear(v, -float(moment_slant(v[None])[0]), row_centre)  # upright
    stroke = STROKE[thickness]
    if stroke > 0:
        v = ndimage.grey_dilation(v, size=(stroke, stroke))
    elif stroke < 0:
        v = ndimage.grey_erosion(v, size=(-stroke, -stroke))
    if SHEAR[slant]:
        v = _shear(v, SHEAR[slant], row_centre)
    v = v.reshape(SIZE, 2, SIZE, 2).mean((1, 3))
    return np.clip(v / v.max(), 0.0, 1.0)


def render(source: np.ndarray, colour: int, thickness: int, slant: int) -> np.ndarray:
    """A source digit uint8 [8, 8, 1] drawn in a combination: uint8 [32, 32, 3]."""
    v = grey(source, thickness, slant)
    return np.rint(v[..., None] * np.asarray(RGB[colour], np.float64)).astype(np.uint8)


# ----------------------------------------------------------------------- splits


@functools.lru_cache(maxsize=None)
def _attributes(split: str) -> dict[str, np.ndarray]:
    """{'index', 'label', 'colour', 'thickness', 'slant'} of a split, in record order."""
    if split not in SPLITS:
        raise ValueError(f"captioned_digits has the splits {SPLITS}, not {split!r}.")
    _, labels = digits_lib.sklearn_digits()
    base = digits_lib.split_indices()["train" if split == "train" else "test"]
    label = labels[base]
    combos = np.zeros((len(base), 3), np.int64)
    split_id = SPLITS.index(split)
    for d in range(10):
        allowed = _combinations(d, held_out=split == "heldout")
        order = np.random.default_rng([SEED, split_id, d]).permutation(len(allowed))
        positions = np.flatnonzero(label == d)
        for k, position in enumerate(positions):
            combos[position] = allowed[order[k % len(allowed)]]
    return {"index": base.astype(np.int64), "label": label.astype(np.int64),
            "colour": combos[:, 0], "thickness": combos[:, 1], "slant": combos[:, 2]}


@functools.lru_cache(maxsize=None)
def records(split: str) -> dict[str, np.ndarray]:
    """Every record of a split in record order, as the builder writes them: 'image'
    uint8 [n, 32, 32, 3], 'label', 'colour', 'thickness', 'slant', 'index' int64 [n],
    'captions' (a numpy str array [n, NUM_CAPTIONS])."""
    images, _ = digits_lib.sklearn_digits()
    out = dict(_attributes(split))
    out["image"] = np.stack([
        render(images[i], c, t, s) for i, c, t, s in
        zip(out["index"], out["colour"], out["thickness"], out["slant"])])
    split_id = SPLITS.index(split)
    out["captions"] = np.array([
        captions(int(d), int(c), int(t), int(s), np.random.default_rng([SEED, split_id, 10, p]))
        for p, (d, c, t, s) in enumerate(zip(out["label"], out["colour"], out["thickness"],
                                              out["slant"]))])
    return out


# ------------------------------------------------------------------ measurement


def ink_value(images) -> np.ndarray:
    """The value channel (max over channels) of images [N, H, W, C], float64 in [0, 1]:
    uint8 divided by 255, float images taken as [-1, 1]."""
    x = np.asarray(images)
    x = x / 255.0 if x.dtype == np.uint8 else (x.astype(np.float64) + 1.0) / 2.0
    return np.clip(x.max(axis=-1), 0.0, 1.0)


def _hsv(images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hue in degrees [0, 360), saturation, value) per pixel, float64 [N, H, W]: the
    HSV of colorsys, vectorised."""
    x = np.asarray(images)
    x = x / 255.0 if x.dtype == np.uint8 else (x.astype(np.float64) + 1.0) / 2.0
    x = np.clip(x, 0.0, 1.0)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    high, low = x.max(-1), x.min(-1)
    span = high - low
    safe = np.where(span > 0, span, 1.0)
    hue = np.where(high == r, (g - b) / safe,
                   np.where(high == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = np.where(span > 0, (hue * 60.0) % 360.0, 0.0)
    saturation = np.where(high > 0, span / np.where(high > 0, high, 1.0), 0.0)
    return hue, saturation, high


def ink_hue(images) -> np.ndarray:
    """The ink's hue of each image [N, H, W, C] in degrees [0, 360), float64 [N]: the
    circular mean of the HSV hue over pixels with value >= INK_THRESHOLD, weighted by
    saturation x value; NaN for an image without coloured ink."""
    hue, saturation, value = _hsv(images)
    weight = np.where(value >= INK_THRESHOLD, saturation * value, 0.0)
    angle = np.deg2rad(hue)
    x = (weight * np.cos(angle)).sum((1, 2))
    y = (weight * np.sin(angle)).sum((1, 2))
    out = np.rad2deg(np.arctan2(y, x)) % 360.0
    return np.where(weight.sum((1, 2)) > 0, out, np.nan)


def colour_of(images) -> np.ndarray:
    """The palette colour (index into COLOURS) nearest each image's ink hue, int64 [N];
    -1 for an image without coloured ink."""
    hue = ink_hue(images)
    distance = np.abs((hue[:, None] - np.asarray(HUES)[None, :] + 180.0) % 360.0 - 180.0)
    nearest = np.argmin(np.nan_to_num(distance, nan=0.0), axis=1)
    return np.where(np.isnan(hue), -1, nearest)


def ink_mass(images) -> np.ndarray:
    """The ink of each image: the mean of its value channel, float64 [N] (a fraction of
    the image, the same at any resolution)."""
    return ink_value(images).reshape(len(images), -1).mean(1)


def moment_slant(grey_images) -> np.ndarray:
    """-cov(col, row) / var(row) of grey maps [N, H, W] (intensities as weights; rows grow
    downwards): 0 upright, > 0 when the top leans right (the shear that deslants it)."""
    v = np.asarray(grey_images, np.float64)
    rows, cols = np.mgrid[:v.shape[1], :v.shape[2]]
    mass = np.maximum(v.sum((1, 2)), 1e-12)
    rc = (v * rows).sum((1, 2)) / mass
    cc = (v * cols).sum((1, 2)) / mass
    dr, dc = rows - rc[:, None, None], cols - cc[:, None, None]
    return -(v * dr * dc).sum((1, 2)) / np.maximum((v * dr * dr).sum((1, 2)), 1e-12)


def slant_of(images) -> np.ndarray:
    """The moment slant of each image's value channel, float64 [N]."""
    return moment_slant(ink_value(images))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per class, the measured centre of each level (the mean over training records of
    that class and level): `thickness` of log ink mass, `slant` of moment slant, both
    float64 [10, 3]. A measured value gets the level whose centre is nearest (the cut
    points are the midpoints between a class's adjacent centres): thickness and slant
    are read relative to the class's own images, never on one scale for all digits."""

    thickness: np.ndarray
    slant: np.ndarray

    @staticmethod
    def _nearest(values, centres, digits):
        centres = centres[np.asarray(digits, np.int64)]  # [N, 3]
        return np.argmin(np.abs(np.asarray(values)[:, None] - centres), axis=1)

    def thickness_of(self, images, digits) -> np.ndarray:
        mass = np.maximum(ink_mass(images), 1e-12)
        return self._nearest(np.log(mass), self.thickness, digits)

    def slant_of(self, images, digits) -> np.ndarray:
        return self._nearest(slant_of(images), self.slant, digits)

    def relative_ink(self, images, digits) -> np.ndarray:
        """Ink mass divided by the class's regular (middle level) mass."""
        return ink_mass(images) / np.exp(self.thickness[np.asarray(digits, np.int64), 1])


@functools.lru_cache(maxsize=1)
def calibration() -> Calibration:
    """The calibration of the measurements on the training records (module docstring)."""
    train = records("train")
    log_mass, slants = np.log(ink_mass(train["image"])), slant_of(train["image"])
    thickness, slant = np.zeros((10, 3)), np.zeros((10, 3))
    for d in range(10):
        for level in range(3):
            thickness[d, level] = log_mass[(train["label"] == d) &
                                           (train["thickness"] == level)].mean()
            slant[d, level] = slants[(train["label"] == d) & (train["slant"] == level)].mean()
    return Calibration(thickness, slant)


def measure(images, digits) -> dict[str, np.ndarray]:
    """{'colour', 'thickness', 'slant'} (int64 [N], indices into COLOURS, THICKNESS,
    SLANTS) measured on images [N, H, W, C] (uint8, or float in [-1, 1]) meant to show
    the digits `digits` [N] (thickness and slant are read relative to that class)."""
    cal = calibration()
    return {"colour": colour_of(images), "thickness": cal.thickness_of(images, digits),
            "slant": cal.slant_of(images, digits)}


# ---------------------------------------------------------------------- builder


class CaptionedDigits(tfds.core.GeneratorBasedBuilder):
    """Colour digits with controlled attributes and paraphrased captions; a held-out
    split of attribute combinations never seen in training."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=SHAPE, dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=list(DIGIT_WORDS)),
                "colour": tfds.features.ClassLabel(names=list(COLOURS)),
                "thickness": tfds.features.ClassLabel(names=list(THICKNESS)),
                "slant": tfds.features.ClassLabel(names=list(SLANTS)),
                "index": tfds.features.Tensor(shape=(), dtype=np.int64),
                "captions": tfds.features.Sequence(tfds.features.Text()),
            }),
            homepage="https://archive.ics.uci.edu/dataset/80",
            disable_shuffling=True,  # record i of a split is records(split)[...][i]
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: scikit-learn ships the images.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        out = records(split)
        for p in range(len(out["label"])):
            yield p, {"image": out["image"][p], "label": int(out["label"][p]),
                      "colour": int(out["colour"][p]),
                      "thickness": int(out["thickness"][p]), "slant": int(out["slant"][p]),
                      "index": int(out["index"][p]),
                      "captions": [str(c) for c in out["captions"][p]]}


def prepare(data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """Prepares `captioned_digits` under `data_dir` unless already there (a few seconds)."""
    return digits_lib.prepare_builder(CaptionedDigits, data_dir)
