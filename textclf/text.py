"""Tokenisation: one Keras ``TextVectorization`` adapted on the training texts.

The same layer sits at the front of the saved model, so a run directory's model
takes raw strings, and every rule (lower-casing, punctuation, word or
character split, vocabulary) lives in one object that Keras serialises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .config import STOP_WORD_LISTS, TextConfig

PADDING_ID = 0  # '' in the vocabulary
OOV_ID = 1  # '[UNK]'


def standardize_mode(cfg: TextConfig) -> str | None:
    """TextVectorization's ``standardize`` argument for the config's options."""
    if cfg.lowercase and cfg.strip_punctuation:
        return "lower_and_strip_punctuation"
    if cfg.lowercase:
        return "lower"
    if cfg.strip_punctuation:
        return "strip_punctuation"
    return None


STOP_WORDS_FOLDER = Path(__file__).parent / "stop_words"


def stop_words(cfg: TextConfig) -> list[str]:
    """``text.stop_words`` as tokens: each listed word standardised as the text
    is (``lower``, punctuation), in the list's order, without repeats, and
    without words that cannot be one token (a space under the whitespace split,
    more than one character under the character split). [] when unset.

    The list is ``english`` (textclf/stop_words/english.txt) or a UTF-8 file,
    one word per line; blank lines and lines starting with "#" are skipped.
    """
    from .errors import ConfigError, DataError
    from .reference.vectorize import split, standardize

    if cfg.stop_words is None:
        return []
    path = (STOP_WORDS_FOLDER / f"{cfg.stop_words}.txt" if cfg.stop_words in STOP_WORD_LISTS
            else Path(cfg.stop_words))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError("text.stop_words", f"one of {', '.join(STOP_WORD_LISTS)} or a "
                          f"file of words", cfg.stop_words) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason})", str(path)) from None
    mode = standardize_mode(cfg)
    words = []
    for line in lines:
        word = standardize(line.strip(), mode)
        if line.strip() and not line.lstrip().startswith("#") and split(word, cfg.split) == [word]:
            words.append(word)
    return list(dict.fromkeys(words))


def build_vectorizer(cfg: TextConfig, train_texts: Sequence[str]):
    """Adapt a TextVectorization on ``train_texts`` only (no leakage from valid/test).

    Keras' ``adapt`` has no minimum count, so the layer is adapted with an
    unbounded vocabulary, the training texts are counted through it, and the
    vocabulary is cut to tokens seen ``min_count`` times, most frequent first,
    ``max_tokens`` in all (padding and OOV included).

    With ``text.stop_words``, the stop words take ids 2 .. n + 1, right after
    the OOV token, whether the training texts hold them or not, so that one
    id range marks them (:func:`remove_stop_words`); the most frequent other
    tokens fill the rest.

    Returns the layer (raw strings (B,) -> ids (B, T), right-padded with 0).
    """
    import tensorflow as tf
    import keras

    options = dict(standardize=standardize_mode(cfg), split=cfg.split, output_mode="int",
                   name="vectorizer")
    counting = keras.layers.TextVectorization(max_tokens=None, ragged=True, **options)
    corpus = tf.data.Dataset.from_tensor_slices(list(train_texts)).batch(1024)
    counting.adapt(corpus)
    full_vocabulary = counting.get_vocabulary()  # ['', '[UNK]', most frequent, ...]
    counts = np.zeros(len(full_vocabulary), dtype=np.int64)
    for batch in corpus:
        ids = counting(batch).flat_values.numpy()
        counts += np.bincount(ids, minlength=len(full_vocabulary))
    stop = stop_words(cfg)
    if len(stop) + 2 >= cfg.max_tokens:
        from .errors import ConfigError
        raise ConfigError("text.max_tokens", f"above {len(stop) + 2} (padding, OOV and the "
                          f"{len(stop)} stop words)", cfg.max_tokens)
    listed = set(stop)
    kept = stop + [token for token, count in zip(full_vocabulary[2:], counts[2:])
                   if count >= cfg.min_count and is_line_safe(token)
                   and token not in listed][: cfg.max_tokens - 2 - len(stop)]
    vectorizer = keras.layers.TextVectorization(**options)
    vectorizer.set_vocabulary(kept)
    return vectorizer


def is_line_safe(token: str) -> bool:
    """False for tokens holding a character that ``str.splitlines`` breaks on.

    Keras stores a vocabulary as one token per line and reads it back with
    ``splitlines()``, which also splits on U+0085, U+2028, form feeds and the
    like: one such token (MR's Latin-1 text has U+0085 in it) and the saved
    model no longer loads. Such tokens are left out of the vocabulary, so they
    read as out-of-vocabulary.
    """
    return token.splitlines() == [token]


def remove_stop_words(ids, n_stop_words: int):
    """(B, T) ids, dense or ragged -> ragged (B, None): each row without the
    stop words' ids (2 .. n + 1, see :func:`build_vectorizer`) and without
    padding, in order."""
    import tensorflow as tf

    keep = tf.logical_or(tf.equal(ids, OOV_ID), ids >= OOV_ID + 1 + n_stop_words)
    return tf.ragged.boolean_mask(ids, keep)


def vectorize(vectorizer, texts: Sequence[str], max_length: int, n_stop_words: int = 0,
              batch_size: int = 2048) -> list[np.ndarray]:
    """Token ids of each text, without its stop words, cut to ``max_length``:
    a list of 1-D int32 arrays (what the saved model's ``truncate`` layer
    passes on, :class:`textclf.models.layers.TruncateTokens`).

    Kept unpadded so the training batches can be padded only to their longest
    member (length bucketing).
    """
    import tensorflow as tf

    ragged_layer = _ragged_twin(vectorizer)
    out: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        chunk = tf.constant(list(texts[start:start + batch_size]))
        ragged = ragged_layer(chunk)
        if n_stop_words:
            ragged = remove_stop_words(ragged, n_stop_words)
        ragged = ragged[:, :max_length]
        values = ragged.flat_values.numpy().astype(np.int32)
        splits = ragged.row_splits.numpy()
        out.extend(values[splits[i]:splits[i + 1]] for i in range(len(splits) - 1))
    return out


def _ragged_twin(vectorizer):
    """The same vocabulary and rules, emitting ragged ids (no padding)."""
    import keras

    config = vectorizer.get_config()
    config.update(ragged=True, output_sequence_length=None, name="vectorizer_ragged",
                  vocabulary=None)
    twin = keras.layers.TextVectorization.from_config(config)
    twin.set_vocabulary(vectorizer.get_vocabulary()[2:])
    return twin


def load_embeddings(path: str, vocabulary: list[str], dim: int, seed: int):
    """Matrix (len(vocabulary), dim) from a word2vec/GloVe text file, and coverage.

    Rows of words absent from the file are drawn from U[-a, a], with ``a`` chosen
    so their variance matches the pretrained vectors' (Kim 2014); row 0
    (padding) is zero. Returns ``(matrix, found)``, ``found`` being how many
    vocabulary words had a vector.
    """
    import gzip

    from .errors import DataError

    index = {word: i for i, word in enumerate(vocabulary)}
    matrix = np.zeros((len(vocabulary), dim), dtype=np.float32)
    found = np.zeros(len(vocabulary), dtype=bool)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as handle:
            for lineno, line in enumerate(handle, 1):
                parts = line.rstrip().split(" ")
                if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header: "<count> <dim>"
                row = index.get(parts[0])
                if row is None:
                    continue
                if len(parts) - 1 != dim:
                    raise DataError(f"vector has {len(parts) - 1} values, expected "
                                    f"{dim} (model.embedding_dim)", path, lineno)
                try:
                    matrix[row] = np.asarray(parts[1:], dtype=np.float32)
                except ValueError:
                    raise DataError("vector values must be numbers", path, lineno) from None
                found[row] = True
    except FileNotFoundError:
        raise DataError("no such file (text.embeddings)", path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason})", path) from None
    found[:2] = False
    if found.any():
        scale = float(np.sqrt(3.0 * matrix[found].var()))
    else:
        scale = 0.25  # Kim's fallback when nothing is known of the vectors
    rng = np.random.default_rng(seed)
    missing = ~found
    missing[0] = False
    matrix[missing] = rng.uniform(-scale, scale, size=(int(missing.sum()), dim))
    return matrix, int(found.sum())
