"""Write a trained model's weights as an .npz that the NumPy engine can run.

``export_numpy_weights(model, path)`` accepts either the token-id classifier
(``textclf.models.build_model``'s output) or the end-to-end string model
(layers ``vectorizer`` -> ``truncate`` -> the classifier model). The file holds, all
without pickle (``np.load(..., allow_pickle=False)`` reads it):

- ``<layer>/<param>``: every weight, float32, Keras layout (e.g.
  ``embedding/embeddings``, ``conv_3/kernel``, ``rnn_1/forward/recurrent_kernel``,
  ``output/bias``);
- ``__spec__``: the architecture as UTF-8 JSON in a uint8 array
  (:func:`textclf.reference.keras_weights.model_spec`);
- ``__text__`` (end-to-end model only): JSON with ``standardize``, ``split``,
  ``max_length``, ``output_sequence_length``, ``stop_words`` (how many ids
  after ``[UNK]`` are dropped) and the ``vocabulary`` list (line i =
  id i), so a token containing a line break survives (``vocabulary.txt``,
  one token per line, cannot hold the character-level token "\\n").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .keras_weights import UnsupportedLayerError, model_spec, model_weights
from .model import SPEC_KEY, encode_json

NUMPY_WEIGHTS_FILE = "weights.npz"  # the name textclf.artifact gives it
VOCABULARY_FILE = "vocabulary.txt"
TEXT_KEY = "__text__"


def find_layer(model, name):
    """``model.get_layer(name)``, or None when there is no such layer."""
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def text_settings(end_to_end) -> dict:
    """The vectorizer/truncate settings and vocabulary of an end-to-end model."""
    vectorizer = end_to_end.get_layer("vectorizer")
    config = vectorizer.get_config()
    standardize, split = config.get("standardize"), config.get("split")
    if standardize is not None and not isinstance(standardize, str):
        raise UnsupportedLayerError("vectorizer: a custom standardize callable cannot be exported")
    if split is not None and not isinstance(split, str):
        raise UnsupportedLayerError("vectorizer: a custom split callable cannot be exported")
    if config.get("output_mode", "int") != "int" or config.get("ngrams"):
        raise UnsupportedLayerError("vectorizer: only output_mode='int' without ngrams")
    truncate = find_layer(end_to_end, "truncate")
    return {"standardize": standardize, "split": split,
            "output_sequence_length": config.get("output_sequence_length"),
            "max_length": None if truncate is None else int(truncate.max_length),
            "stop_words": 0 if truncate is None else int(getattr(truncate, "stop_words", 0)),
            "vocabulary": [str(t) for t in vectorizer.get_vocabulary()]}


def nested_classifier(end_to_end):
    """The token-id model inside an end-to-end model: the layer named ``classifier``,
    else its only sub-layer that is itself a model."""
    found = find_layer(end_to_end, "classifier")
    if found is not None:
        return found
    models = [layer for layer in end_to_end.layers if hasattr(layer, "layers")]
    if len(models) != 1:
        raise UnsupportedLayerError(f"{end_to_end.name}: expected one nested classifier "
                                    f"model after the vectorizer; found {len(models)}")
    return models[0]


def export_numpy_weights(model, path: str | os.PathLike) -> Path:
    """Write ``path`` (.npz) from a classifier or an end-to-end model; returns the path.

    An end-to-end model is recognised by its layer named ``vectorizer``; its
    text settings and vocabulary are stored too. Written to a temporary name
    and renamed, so a crash leaves no half file.
    """
    path = Path(path)
    arrays = {}
    if find_layer(model, "vectorizer") is not None:
        arrays[TEXT_KEY] = encode_json(text_settings(model))
        classifier = nested_classifier(model)
    else:
        classifier = model
    spec = model_spec(classifier)
    for key, value in model_weights(classifier, spec).items():
        arrays[key] = value.astype(np.float32)
    arrays[SPEC_KEY] = encode_json(spec)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)
    return path


def write_vocabulary(vocabulary, path: str | os.PathLike) -> None:
    """``vocabulary.txt``: one token per line, line i = id i, UTF-8, "\\n" endings.

    Raises ValueError for a token containing "\\n" or "\\r" (which this format
    cannot hold; the .npz of an end-to-end model keeps the full list anyway).
    """
    tokens = [str(t) for t in vocabulary]
    bad = [t for t in tokens if "\n" in t or "\r" in t]
    if bad:
        raise ValueError(f"vocabulary tokens with line breaks cannot go to {path}: {bad[:3]!r}")
    Path(path).write_text("".join(t + "\n" for t in tokens), encoding="utf-8", newline="")


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """Inverse of :func:`write_vocabulary`: splits on "\\n" only (never ``splitlines``,
    which would also break at U+2028, U+0085, \\x1c...: all possible word tokens)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []
