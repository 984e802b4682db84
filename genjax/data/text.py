"""A word-level tokenizer for captions, built deterministically from training captions.

Words are the lower-cased runs of letters and digits of a caption (punctuation splits
words and is dropped). Token 0 pads, token 1 stands for a word outside the vocabulary,
and the words follow from 2 on, most frequent first (ties in alphabetical order), so
the same captions always give the same vocabulary whatever order they are read in. The
vocabulary is a list of strings: it round-trips through JSON and travels with a run in
its dataset metadata (`DatasetMeta.vocabulary`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import re
from typing import Iterable

import numpy as np

PAD, UNKNOWN = 0, 1
SPECIAL = ("<pad>", "<unk>")
_WORD = re.compile(r"[a-z0-9]+")


def words(caption: str) -> list[str]:
    return _WORD.findall(caption.lower())


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """Attributes:
      vocabulary: token id -> word; ids 0 and 1 are '<pad>' and '<unk>'.
      max_tokens: the length of an encoded caption (cut or zero-padded).
    """

    vocabulary: tuple[str, ...]
    max_tokens: int

    def __post_init__(self):
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        if self.vocabulary[:2] != SPECIAL:
            raise ValueError(f"A vocabulary starts with {SPECIAL}, got {self.vocabulary[:2]}.")

    @classmethod
    def build(cls, captions: Iterable[str], max_tokens: int) -> "Tokenizer":
        counts = collections.Counter(w for caption in captions for w in words(caption))
        ordered = sorted(counts, key=lambda word: (-counts[word], word))
        return cls(SPECIAL + tuple(ordered), max_tokens)

    @classmethod
    def from_meta(cls, meta) -> "Tokenizer":
        """The tokenizer of a 'captioned' dataset's `DatasetMeta` (a run keeps it)."""
        if meta.vocabulary is None:
            raise ValueError(f"Dataset {meta.name!r} has no vocabulary: it was not read "
                             "with the 'captioned' layout.")
        return cls(meta.vocabulary, meta.max_tokens)

    @functools.cached_property
    def _ids(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.vocabulary)}

    def encode(self, caption: str) -> np.ndarray:
        """int32 [max_tokens]: the caption's word ids, cut to max_tokens, padded with 0."""
        ids = [self._ids.get(w, UNKNOWN) for w in words(caption)][: self.max_tokens]
        tokens = np.zeros(self.max_tokens, np.int32)
        tokens[: len(ids)] = ids
        return tokens

    def decode(self, tokens) -> str:
        return " ".join(self.vocabulary[int(t)] for t in np.asarray(tokens) if t != PAD)

    @property
    def size(self) -> int:
        """The number of token ids (an embedding table's rows)."""
        return len(self.vocabulary)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            json.dump({"vocabulary": list(self.vocabulary), "max_tokens": self.max_tokens}, f)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        with open(path) as f:
            saved = json.load(f)
        return cls(tuple(saved["vocabulary"]), int(saved["max_tokens"]))
