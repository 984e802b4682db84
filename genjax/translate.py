"""Translates images with a trained image-to-image run (pix2pix).

    python -m genjax.translate --workdir=runs/pix2pix --input=IMAGE_OR_DIR --output=DIR
        [--checkpoint=latest|best|STEP] [--seed=0] [--direction=a2b|b2a]

writes one PNG per input image under DIR, with the input's name (photo.jpg ->
DIR/photo.png), each the model's output at its own size. An image of another size or
channel count is converted to the model's input first, as the training pipeline
prepares its images (the centred square, resized bilinearly; RGB to grey by PIL's
luma, grey repeated to RGB), and the command says so for each such file. A folder is
read without its subfolders, in name order. --seed draws the dropout of a run trained
with model.sample_dropout (otherwise the output does not depend on it).

--direction is for models that translate both ways: a CycleGAN run takes 'a2b' (G: A -> B,
the default) or 'b2a' (F: B -> A); a pix2pix run learns one mapping, the dataset's
direction it was trained with, and refuses the other.

From a notebook: `translate_path(workdir, input, output)` below, or
`config, task, state = genjax.load_run(workdir)` and `task.translate(state, images)` on
images [N, S, S, C] in [-1, 1].
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from PIL import Image, UnidentifiedImageError

from genjax import viz
from genjax.data import folders
from genjax.data.pipeline import _center_square, _resize
from genjax.errors import ConfigError, GenjaxError
from genjax.run import load_run, parse_checkpoint

_MODE_NAMES = {1: "grey", 3: "RGB"}


def input_files(path) -> list[Path]:
    """The image files `path` names: itself, or the images directly in a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if folders.is_image(p))
        if not files:
            raise folders.FolderError(
                f"The folder {path} holds no image files (looked for "
                f"{', '.join(folders.IMAGE_EXTENSIONS)}, not in subfolders). Pass a folder "
                "of images or one image file as --input.")
        return files
    if path.is_file():
        return [path]
    raise folders.FolderError(f"--input={path} does not exist (the current directory is "
                              f"{Path.cwd()}). Pass an image file or a folder of images.")


def read_as_model_input(path: Path, size: int, channels: int) -> tuple[np.ndarray, str | None]:
    """(uint8 [size, size, channels], a note of the conversion or None)."""
    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
            grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
            converted = image.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise folders.FolderError(
            f"Cannot decode the image file {path} ({type(error).__name__}: {error}). "
            "Replace it or move it out of the input folder; genjax reads PNG, JPEG, BMP, "
            "GIF, TIFF and WebP files with PIL.") from None
    array = np.asarray(converted)
    array = array[..., None] if channels == 1 else array
    was = f"{width}x{height} {'grey' if grey else image.mode}"
    now = f"{size}x{size} {_MODE_NAMES[channels]}"
    array = _resize(_center_square(array), size)
    if array.ndim == 2:
        array = array[..., None]
    same_mode = grey == (channels == 1) and (grey or image.mode == "RGB")
    note = None if (width == height == size and same_mode) else \
        f"{path.name}: converted {was} -> {now}, the model's input"
    return array, note


def translate_path(workdir, input_path, output, *, checkpoint: int | str | None = None,
                   direction: str | None = None, seed: int = 0,
                   log: Callable[[str], None] = print) -> list[Path]:
    """Translates the image file or folder `input_path` with the run in `workdir` and
    writes output/<name>.png for each; returns the written paths (see the module
    docstring). Bad input is a GenjaxError naming the problem."""
    files = input_files(input_path)
    config, task, state = load_run(workdir, checkpoint)
    if "translate" not in task.functions:
        raise ConfigError(
            f"{workdir} holds a {config.task!r} run, which does not translate images. Pass "
            "the --workdir of an image-to-image run (e.g. one trained with "
            "configs/pix2pix.py).")
    directions = tuple(task.translation_directions)
    if direction is not None and direction not in directions and len(directions) > 1:
        raise ConfigError(
            f"--direction={direction!r}: this {config.task!r} run translates "
            f"{' or '.join(repr(d) for d in directions)}; pass one of them.")
    if direction is not None and direction not in directions:
        raise ConfigError(
            f"--direction={direction!r}: this {config.task!r} run translates one way only, "
            f"{directions[0]!r} (the dataset.direction it was trained with). To translate "
            f"the other way, train a model with --config.dataset.direction="
            f"{'BtoA' if directions[0] == 'AtoB' else 'AtoB'}, or drop --direction.")
    channels = task.input_channels  # per direction for a model that translates both ways
    if isinstance(channels, dict):
        channels = channels[direction or directions[0]]
    size, channels = int(task.image_size), int(channels)
    images = []
    for path in files:
        image, note = read_as_model_input(path, size, channels)
        if note:
            log(note)
        images.append(image)
    batch = np.stack(images).astype(np.float32) / np.float32(127.5) - np.float32(1)
    kwargs = {} if direction is None or len(directions) == 1 else {"direction": direction}
    outputs = viz.to_uint8(task.translate(state, batch, key=jax.random.key(seed), **kwargs))
    out_dir = Path(output)
    written = [viz.save_png(out_dir / f"{path.stem}.png", image)
               for path, image in zip(files, outputs)]
    stems = [p.stem for p in files]
    if len(set(stems)) < len(stems):
        log("warning: several inputs share a name before their extension; the later ones' "
            "outputs replaced the earlier ones'.")
    return written


def main(argv=None) -> None:
    from absl import app, flags, logging

    flags.DEFINE_string("workdir", None, "The run's workdir (as given to train.py).")
    flags.DEFINE_string("input", None, "An image file, or a folder of images.")
    flags.DEFINE_string("output", None, "Folder for the translated PNGs (same names).")
    flags.DEFINE_string("checkpoint", "latest", "Which checkpoint: 'latest' (the newest), "
                        "'best' (best evaluation figure, eval/best.json) or a step number.")
    flags.DEFINE_string("direction", None, "'a2b' or 'b2a', for models that translate "
                        "both ways (CycleGAN: G or F; default a2b); pix2pix takes only the "
                        "direction it learnt.")
    flags.DEFINE_integer("seed", 0, "Seed of the dropout noise (runs trained with "
                         "model.sample_dropout); same seed, same images.")
    flags.mark_flags_as_required(["workdir", "input", "output"])
    FLAGS = flags.FLAGS

    def run(_):
        logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
        try:
            written = translate_path(FLAGS.workdir, FLAGS.input, FLAGS.output,
                                     checkpoint=parse_checkpoint(FLAGS.checkpoint),
                                     direction=FLAGS.direction, seed=FLAGS.seed)
        except GenjaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print(f"Wrote {len(written)} translated image(s) to {FLAGS.output}")

    app.run(run, argv)


if __name__ == "__main__":
    main()
