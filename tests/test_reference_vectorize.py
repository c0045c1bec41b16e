"""The pure-Python TextVectorization against the Keras layer, on random Unicode text."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textclf.reference.export import read_vocabulary, write_vocabulary
from textclf.reference.vectorize import Vectorizer, split, standardize

WORDS = ["Hello", "hello", "HELLO,", "don't", "dont", "U.S.A.", "usa", "École", "école", "ÉCOLE",
         "naïve", "ΣΟΦΊΑ", "σοφία", "Straße", "STRASSE", "İstanbul", "中文", "中文。", "好",
         "电影很好看！", "a-b", "ab", "[UNK]", "x_y", "😀", "Ǆ", "ǆ"]
# Separators: the ASCII whitespace TensorFlow splits on, and Unicode spaces it does not.
SEPARATORS = [" ", "  ", "\t", "\n", "\r\n", "\v", "\f", "\u00a0", "\u3000", "\u2028", "\x85",
              "\x1c", "\u2003", "", "\x00"]
CONFIGS = list(itertools.product(
    [None, "lower_and_strip_punctuation", "lower", "strip_punctuation"],
    ["whitespace", "character"]))

pieces = st.one_of(st.sampled_from(WORDS), st.text(max_size=4),
                   st.text(alphabet="!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~。，！？、ＡＢ", max_size=3))
texts = st.lists(st.tuples(pieces, st.sampled_from(SEPARATORS)), max_size=8).map(
    lambda parts: "".join(p + s for p, s in parts))


def _vocabulary() -> list[str]:
    tokens = set(WORDS) | {w.lower() for w in WORDS} | {c for w in WORDS for c in w}
    tokens |= {standardize(w, mode) for w in WORDS for mode, _ in CONFIGS}
    tokens -= {"", "[UNK]"}
    return sorted(tokens)


VOCABULARY = _vocabulary()
_LAYERS = {}


def keras_vectorizer(mode, split_mode):
    keras = pytest.importorskip("keras")
    if (mode, split_mode) not in _LAYERS:
        _LAYERS[mode, split_mode] = keras.layers.TextVectorization(
            standardize=mode, split=split_mode, vocabulary=VOCABULARY)
    return _LAYERS[mode, split_mode]


@pytest.mark.parametrize("mode, split_mode", CONFIGS)
@settings(max_examples=40, deadline=None)
@given(batch=st.lists(texts, min_size=1, max_size=3))
def test_ids_equal_textvectorization(mode, split_mode, batch):
    tf = pytest.importorskip("tensorflow")
    layer = keras_vectorizer(mode, split_mode)
    expected = np.asarray(layer(tf.constant(batch)))
    ours = Vectorizer(layer.get_vocabulary(), mode, split_mode).encode(batch)
    np.testing.assert_array_equal(ours, expected, err_msg=repr(batch))


@pytest.mark.parametrize("text, mode, expected", [
    ("ÀÉ Straße ABC", "lower", "ÀÉ straße abc"),  # tf.strings.lower: ASCII only
    ("don't! 中文。(x)", "strip_punctuation", "dont 中文。x"),  # ASCII punctuation only
    ("A-b_C", "lower_and_strip_punctuation", "abc"),
])
def test_standardize_examples(text, mode, expected):
    assert standardize(text, mode) == expected


def test_whitespace_split_is_ascii_only():
    assert split(" a\tb\u00a0c\u3000d\x1ce\r\n f ", "whitespace") == ["a", "b\u00a0c\u3000d\x1ce", "f"]
    assert split("中 文", "character") == ["中", " ", "文"]


def test_truncation_and_padding():
    vectorizer = Vectorizer(["", "[UNK]", "a", "b"], "lower", "whitespace", max_length=3)
    ids = vectorizer.encode(["a b A zzz b", "", "b"])
    np.testing.assert_array_equal(ids, [[2, 3, 2], [0, 0, 0], [3, 0, 0]])
    assert vectorizer.encode([""]).shape == (1, 0)
    assert vectorizer.encode([""], min_length=1).shape == (1, 1)


def test_vocabulary_file_round_trip(tmp_path):
    tokens = ["", "[UNK]", "a\u2028b", "x\x85y", "\x1c", "中", " "]
    write_vocabulary(tokens, tmp_path / "vocabulary.txt")
    assert read_vocabulary(tmp_path / "vocabulary.txt") == tokens
    with pytest.raises(ValueError, match="line breaks"):
        write_vocabulary(["", "[UNK]", "\n"], tmp_path / "bad.txt")
