"""Prediction without TensorFlow: ``NumpyEngine(run_dir).predict_proba(texts)``.

Reads ``RUN_DIR/weights.npz`` (written at train time by
:func:`textclf.reference.export.export_numpy_weights`). The text settings and
vocabulary come from the .npz when it was exported from the end-to-end model;
otherwise from ``RUN_DIR/config.yaml`` (``text.lowercase``,
``text.strip_punctuation``, ``text.split``, ``text.max_length``) and
``RUN_DIR/vocabulary.txt``.
Texts go through :class:`~textclf.reference.vectorize.Vectorizer` (the exact
``TextVectorization`` + ``TruncateTokens`` steps) and
:class:`~textclf.reference.model.NumpyModel`. Nothing here imports TensorFlow
or Keras, so the process starts in a fraction of a second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .export import NUMPY_WEIGHTS_FILE, TEXT_KEY, VOCABULARY_FILE, read_vocabulary
from .model import NumpyModel, decode_json
from .vectorize import Vectorizer


def text_settings_from_config(run_dir: Path) -> dict:
    """The vectorizer settings a run was trained with, from its ``config.yaml``."""
    from ..config import config_from_dict, parse_yaml
    from ..errors import RunDirError
    from ..text import standardize_mode

    path = run_dir / "config.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read the run's config ({exc.strerror})") from None
    cfg = config_from_dict(parse_yaml(text, str(path)), source=str(path)).text
    return {"standardize": standardize_mode(cfg), "split": cfg.split,
            "max_length": cfg.max_length, "output_sequence_length": None}


class NumpyEngine:
    """A trained run's classifier in NumPy.

    ``predict_proba(texts)`` -> (len(texts), n_classes) float64 probabilities, in
    batches of ``batch_size`` documents of similar length (the models mask the
    padding, so batching does not change the result beyond rounding).
    """

    def __init__(self, run_dir: str | os.PathLike, batch_size: int = 128, dtype=np.float64):
        run_dir = Path(run_dir)
        npz = run_dir / NUMPY_WEIGHTS_FILE
        if not npz.is_file():
            from ..errors import RunDirError
            raise RunDirError(f"{run_dir}: no {NUMPY_WEIGHTS_FILE}; this run was saved "
                              "without NumPy weights (retrain with this version)")
        with np.load(npz, allow_pickle=False) as data:
            text = decode_json(data[TEXT_KEY]) if TEXT_KEY in data.files else None
        if text is None:
            text = text_settings_from_config(run_dir)
        vocabulary = text.get("vocabulary")
        if vocabulary is None:
            vocabulary = read_vocabulary(run_dir / VOCABULARY_FILE)
        self.vectorizer = Vectorizer(vocabulary, text["standardize"], text["split"],
                                     text["max_length"], text.get("output_sequence_length"),
                                     text.get("stop_words", 0))
        self.model = NumpyModel.from_npz(npz, dtype)
        self.batch_size = int(batch_size)

    @property
    def n_classes(self) -> int:
        return int(self.model.spec["n_classes"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> int32 ids (B, T >= 1), as the Keras model's vectorizer + truncate."""
        return self.vectorizer.encode(texts, min_length=1)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        rows = [self.vectorizer.encode_one(t) for t in texts]
        order = np.argsort([len(r) for r in rows], kind="stable")
        probs = np.zeros((len(texts), self.n_classes), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            width = max(1, max(len(rows[i]) for i in chosen))
            ids = np.zeros((len(chosen), width), dtype=np.int32)
            for j, i in enumerate(chosen):
                ids[j, :len(rows[i])] = rows[i]
            probs[chosen] = self.model.forward(ids)
        return probs

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Class indices (B,), the argmax of :meth:`predict_proba`."""
        return self.predict_proba(texts).argmax(axis=1)
