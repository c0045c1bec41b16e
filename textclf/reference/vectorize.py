"""Keras' ``TextVectorization`` (int output) and ``TruncateTokens`` in plain Python.

Reproduces, for ``output_mode="int"``, no n-grams, the steps of Keras 3.15's
``TextVectorization._preprocess`` and its ``StringLookup``, measured against
TensorFlow 2.21 (``tests/test_reference_vectorize.py`` checks random Unicode):

1. standardize ``"lower"`` / ``"lower_and_strip_punctuation"``: ``tf.strings.lower``
   with its default (empty) encoding lowercases **ASCII A-Z only**:
   "Straße ÀÉ ΑΒΓ" keeps its non-ASCII capitals (unlike ``str.lower``).
2. standardize ``"strip_punctuation"`` / ``"lower_and_strip_punctuation"``: delete
   every match of ``[!"#$%&()\\*\\+,-\\./:;<=>?@\\[\\\\\\]^_`{|}~\\']`` (ASCII
   punctuation only; CJK and other Unicode punctuation stay).
3. split ``"whitespace"``: ``tf.strings.split`` without a separator splits on
   runs of the six ASCII whitespace bytes `` \\t\\n\\v\\f\\r`` and drops empty
   tokens; U+00A0, U+3000, U+2028, U+0085, U+001C... are *not* separators
   (unlike ``str.split()``). ``"character"``: ``tf.strings.unicode_split(.., "UTF-8")``,
   one token per code point, spaces included.
4. lookup: vocabulary index, 0 for the mask token "", 1 (``[UNK]``) for unknown
   tokens; rows right-padded with 0 to the longest row of the batch.
5. ``TruncateTokens``: drop the stop words' ids (2 .. n + 1, ``stop_words`` = n),
   then keep the first ``max_length`` ids.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

STANDARDIZE = (None, "lower_and_strip_punctuation", "lower", "strip_punctuation")
SPLIT = (None, "whitespace", "character")

_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_ASCII_WHITESPACE = re.compile("[ \t\n\v\f\r]+")
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
OOV_INDEX = 1
PAD_INDEX = 0


def standardize(text: str, mode: str | None) -> str:
    """Step 1-2 above for one text."""
    if mode not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}; got {mode!r}")
    if mode in ("lower", "lower_and_strip_punctuation"):
        text = text.translate(_ASCII_LOWER)
    if mode in ("strip_punctuation", "lower_and_strip_punctuation"):
        text = _PUNCTUATION.sub("", text)
    return text


def split(text: str, mode: str | None) -> list[str]:
    """Step 3 above for one (standardised) text."""
    if mode == "whitespace":
        return [token for token in _ASCII_WHITESPACE.split(text) if token]
    if mode == "character":
        return list(text)
    if mode is None:
        return [text]
    raise ValueError(f"split must be one of {SPLIT}; got {mode!r}")


class Vectorizer:
    """Texts -> int ids (B, T) exactly as the saved model's ``vectorizer`` + ``truncate``.

    ``vocabulary``: line i = the token of id i, as ``get_vocabulary()`` returns it
    (id 0 the mask token "", id 1 ``[UNK]``). ``max_length``: the truncation
    (None: none). ``output_sequence_length``: the vectorizer's fixed length, if any.
    ``stop_words``: how many ids after ``[UNK]`` are stop words, dropped before
    the truncation.
    """

    def __init__(self, vocabulary: Sequence[str],
                 standardize: str | None = "lower_and_strip_punctuation",
                 split: str | None = "whitespace", max_length: int | None = None,
                 output_sequence_length: int | None = None, stop_words: int = 0):
        if standardize not in STANDARDIZE:
            raise ValueError(f"standardize must be one of {STANDARDIZE}; got {standardize!r}")
        if split not in SPLIT:
            raise ValueError(f"split must be one of {SPLIT}; got {split!r}")
        self.standardize = standardize
        self.split = split
        self.max_length = max_length
        self.output_sequence_length = output_sequence_length
        self.stop_words = int(stop_words)
        self.vocabulary = list(vocabulary)
        self.index_ = {}
        for i, token in enumerate(self.vocabulary):
            self.index_.setdefault(token, i)
        self.index_[""] = PAD_INDEX

    def tokens(self, text: str) -> list[str]:
        return split(standardize(text, self.standardize), self.split)

    def encode_one(self, text: str) -> list[int]:
        """One text -> its ids, truncated, unpadded."""
        ids = [self.index_.get(token, OOV_INDEX) for token in self.tokens(text)]
        if self.output_sequence_length is not None:
            ids = ids[:self.output_sequence_length]
        if self.stop_words:
            first_kept = OOV_INDEX + 1 + self.stop_words
            ids = [i for i in ids if i == OOV_INDEX or i >= first_kept]
        if self.max_length is not None:
            ids = ids[:self.max_length]
        return ids

    def encode(self, texts: Iterable[str], min_length: int = 0) -> np.ndarray:
        """Texts -> int32 ids (B, T), right-padded with 0 to the longest row
        (to ``output_sequence_length`` then truncated, when the vectorizer has one
        and no stop words are dropped), and to at least ``min_length`` columns."""
        rows = [self.encode_one(text) for text in texts]
        width = max([len(r) for r in rows] + [min_length])
        if self.output_sequence_length is not None and not self.stop_words:
            width = self.output_sequence_length
            if self.max_length is not None:
                width = min(width, self.max_length)
            width = max(width, min_length)
        ids = np.zeros((len(rows), width), dtype=np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
        return ids
