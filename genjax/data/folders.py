"""Image folders as random-access sources (`len`, `[i]` -> dict of numpy arrays) for grain.

Each source holds a sorted list of files, so record i is the same file on every run and
grain's index shuffle, jitter and resumable state work on folders exactly as on TFDS's
array_record files. Images are decoded with PIL when read and converted to the source's
channel count (1: greyscale 'L', 3: 'RGB'). The layouts of the folders are described in
`genjax.data.spec`. Bad input (an undecodable file, an odd-width side-by-side pair,
unmatched pairs, an empty or missing folder, a missing caption file) raises
`FolderError` with the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from genjax.errors import GenjaxError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class FolderError(GenjaxError, ValueError):
    """An image folder is missing, empty, or holds a file genjax cannot use."""


# ----------------------------------------------------------------------- listing


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def require_dir(path: Path, what: str) -> Path:
    if path.is_dir():
        return path
    parent = path.parent
    if parent.is_dir():
        present = sorted(p.name for p in parent.iterdir() if p.is_dir())
        has = f"{parent} has the folders {present}" if present else f"{parent} has no folders"
    else:
        has = f"{parent} does not exist either"
    raise FolderError(f"The folder {path} ({what}) does not exist; {has}. Create it, or "
                      "check the dataset's path and split names (see genjax.data.spec for "
                      "the folder layouts).")


def list_images(folder: Path, what: str) -> list[Path]:
    """The image files directly in `folder`, sorted by name; an error when there are none."""
    files = sorted(p for p in require_dir(folder, what).iterdir() if is_image(p))
    if not files:
        raise FolderError(f"The folder {folder} ({what}) holds no image files (looked for "
                          f"{', '.join(IMAGE_EXTENSIONS)}). Put the images there, or point "
                          "the dataset at the folder that has them.")
    return files


def count_images(folder: Path) -> int:
    """Image files in `folder` and its class subfolders (0 for a missing folder)."""
    if not folder.is_dir():
        return 0
    return sum(is_image(p) for p in folder.iterdir()) + sum(
        is_image(p) for group in subfolders(folder) for p in group.iterdir())


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def labelled_images(folder: Path, what: str, classes: Sequence[str] | None = None,
                    ) -> tuple[list[Path], list[int], list[str]]:
    """(files, labels, class names) of a folder of class subfolders, or of loose images
    (labels all 0, no classes). `classes` fixes the class ids (e.g. across splits)."""
    require_dir(folder, what)
    groups = subfolders(folder)
    loose = [p for p in folder.iterdir() if is_image(p)]
    if groups and loose:
        raise FolderError(f"The folder {folder} ({what}) holds both image files (e.g. "
                          f"{sorted(loose)[0].name}) and subfolders (e.g. {groups[0].name}). "
                          "Use class subfolders only (each class's images in its own "
                          "folder) or images only.")
    if not groups:
        return list_images(folder, what), [0] * len(loose), []
    names = list(classes) if classes is not None else [g.name for g in groups]
    files, labels = [], []
    for group in groups:
        if group.name not in names:
            raise FolderError(f"The class folder {group} is not among the classes {names} "
                              "found in the training split; give every split the same "
                              "class folders.")
        found = sorted(p for p in group.iterdir() if is_image(p))
        files += found
        labels += [names.index(group.name)] * len(found)
    if not files:
        raise FolderError(f"The class folders of {folder} ({what}) hold no image files. "
                          "Put the images there, or point the dataset at the folder that "
                          "has them.")
    return files, labels, names


# ---------------------------------------------------------------------- decoding


def channels_of(path: Path) -> int:
    """1 for a greyscale image file, else 3 (PIL reads only the header here)."""
    try:
        with Image.open(path) as image:
            return 1 if image.mode in _GREY_MODES else 3
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise _decode_error(path, error) from None


def _decode_error(path: Path, error: Exception) -> FolderError:
    return FolderError(f"Cannot decode the image file {path} ({type(error).__name__}: "
                       f"{error}). Replace or delete it (or move it out of the dataset "
                       "folder); genjax reads PNG, JPEG, BMP, GIF, TIFF and WebP files "
                       "with PIL.")


def decode(path: Path, channels: int) -> np.ndarray:
    """uint8 [H, W, channels]; greyscale and RGB (and palette, alpha) converted."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise _decode_error(path, error) from None
    array = np.asarray(image)
    return array[..., None] if channels == 1 else array


# ------------------------------------------------------------------------ sources


class ImageSource:
    """{'image', 'label'} from a list of files (an ImageFolder split, a CycleGAN domain)."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], channels: int):
        self.files, self.labels, self.channels = list(files), list(labels), channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        return {"image": decode(self.files[index], self.channels),
                "label": self.labels[index]}


class SideBySideSource:
    """{'input', 'target', 'label'} from files that hold A and B side by side (A|B)."""

    def __init__(self, files: Sequence[Path], channels: int, direction: str):
        self.files, self.channels, self.direction = list(files), channels, direction

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        both = decode(path, self.channels)
        width = both.shape[1]
        if width % 2:
            raise FolderError(
                f"The side-by-side image {path} is {width} pixels wide, an odd number, so "
                "it does not split into an input and a target of equal width (A|B). Make "
                "each file the two images of one size next to each other (pix2pix's "
                "combine_A_and_B.py does), or put inputs and targets in two folders "
                "A/<split>/ and B/<split>/ with matching file names.")
        a, b = both[:, : width // 2], both[:, width // 2:]
        source, target = (a, b) if self.direction == "AtoB" else (b, a)
        return {"input": source, "target": target, "label": 0}


class PairedFilesSource:
    """{'input', 'target', 'label'} from two lists of files matched by name."""

    def __init__(self, inputs: Sequence[Path], targets: Sequence[Path],
                 channels: tuple[int, int]):
        self.inputs, self.targets, self.channels = list(inputs), list(targets), channels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict:
        return {"input": decode(self.inputs[index], self.channels[0]),
                "target": decode(self.targets[index], self.channels[1]), "label": 0}


class CaptionedSource:
    """{'image', 'captions' (list of str), 'label'}: images with their caption files."""

    def __init__(self, files: Sequence[Path], captions: Sequence[Sequence[str]],
                 labels: Sequence[int], channels: int):
        self.files, self.captions = list(files), [list(c) for c in captions]
        self.labels, self.channels = list(labels), channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        return {"image": decode(self.files[index], self.channels),
                "captions": self.captions[index], "label": self.labels[index]}


# -------------------------------------------------------------- pairs and captions


def _few(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(names[:5]) + more


def match_pairs(folder_a: Path, folder_b: Path) -> tuple[list[Path], list[Path]]:
    """The files of two folders paired by name (stem: a.png matches a.jpg)."""
    files_a = {p.stem: p for p in list_images(folder_a, "input images A")}
    files_b = {p.stem: p for p in list_images(folder_b, "target images B")}
    only_a = sorted(set(files_a) - set(files_b))
    only_b = sorted(set(files_b) - set(files_a))
    if only_a or only_b:
        raise FolderError(
            f"The paired folders {folder_a} and {folder_b} do not match by file name: "
            f"only in {folder_a}: {_few(only_a)}; only in {folder_b}: {_few(only_b)}. "
            "Every input needs a target with the same name (the extension may differ); "
            "remove or rename the unmatched files.")
    names = sorted(files_a)
    return [files_a[n] for n in names], [files_b[n] for n in names]


def read_captions(images_dir: Path, text_dir: Path, files: Sequence[Path]) -> list[list[str]]:
    """Each image's captions: the non-empty lines of text/<same relative path>.txt."""
    result = []
    for path in files:
        text_file = (text_dir / path.relative_to(images_dir)).with_suffix(".txt")
        if not text_file.is_file():
            raise FolderError(
                f"The image {path} has no caption file: {text_file} does not exist. Every "
                f"image in {images_dir} needs a text file of the same name under "
                f"{text_dir} with one caption per line; add it or remove the image.")
        lines = [line.strip() for line in text_file.read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise FolderError(f"The caption file {text_file} (for {path}) is empty; write "
                              "one caption per line or remove the image.")
        result.append(lines)
    return result


def split_dirs(root: Path) -> list[str]:
    return [p.name for p in subfolders(root)]
