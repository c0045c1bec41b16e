"""Using a finished run: its evaluation data, and predictors for raw texts.

Both engines are callables ``list[str] -> probabilities (B, C) float32``:
the Keras engine runs the saved end-to-end model; the NumPy engine
(``textclf.reference.engine``) reproduces it without importing TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .artifact import Run
from .errors import DataError, RunDirError, UsageError


LENGTH_GROUP = 64  # documents per model call within a prediction batch


def keras_predictor(run: Run, fold: bool = True) -> Callable[[list[str]], np.ndarray]:
    """The saved end-to-end model as one compiled function of a batch of strings.

    A TextCNN predicts through its folded form (embedding x filters looked up,
    textclf.models.folded_cnn), an LSTM through its folded input projection
    (textclf.models.folded_lstm), unless ``fold`` is False or the model has no
    such form (the plain model runs then).
    """
    import tensorflow as tf

    from .runtime import fused_loops_get_one_thread_per_op

    fused_loops_get_one_thread_per_op(run.config.model)  # before the model loads
    model = run.model

    # One trace serves every batch: the strings' tensor shape is (None,) and
    # the padded width is decided inside the graph.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def plain_forward(texts):
        return model(texts, training=False)

    forward = plain_forward
    if fold and run.config.model.type == "cnn":
        from .models.folded_cnn import folded_predict_fn

        forward = folded_predict_fn(model) or plain_forward
    elif fold and run.config.model.type == "rnn":
        from .models.folded_lstm import folded_predict_fn

        forward = folded_predict_fn(model) or plain_forward

    def predict_proba(texts: list[str]) -> np.ndarray:
        # A batch is padded to its longest document, so the texts run in groups of
        # similar length (by characters, a cheap proxy for tokens) and the answers
        # go back to input order. The models are batch-invariant (masked pooling),
        # so the grouping changes the cost, never an answer.
        order = np.argsort([len(text) for text in texts], kind="stable")
        out = np.empty((len(texts), len(run.labels)), dtype=np.float32)
        for start in range(0, len(order), LENGTH_GROUP):
            rows = order[start:start + LENGTH_GROUP]
            out[rows] = forward(tf.constant([texts[i] for i in rows], dtype=tf.string))
        return out

    return predict_proba


def numpy_predictor(run: Run) -> Callable[[list[str]], np.ndarray]:
    from .reference.engine import NumpyEngine

    return NumpyEngine(run.path).predict_proba


def predictor(run: Run, engine: str) -> Callable[[list[str]], np.ndarray]:
    if run.config.model.type == "treenet":  # lines are trees or raw text: textclf.tree_runs
        from .tree_runs import TreePredictor

        return TreePredictor(run, engine)
    return numpy_predictor(run) if engine == "numpy" else keras_predictor(run)


def evaluation_data(run: Run, data_paths: Sequence[str], split: str):
    """Examples to evaluate on: DATA files read with the run's data options, or the
    run's own ``valid``/``test`` split (re-carved from the training source when it
    was carved at training time, after checking that source is unchanged)."""
    from .data import load_data, read_data, reload_carved

    if run.config.model.type == "treenet":  # a list of textclf.trees.Tree
        from .tree_runs import tree_evaluation_data

        return tree_evaluation_data(run, data_paths, split)
    cfg = run.config.data
    if data_paths:
        return read_data(list(data_paths), cfg.format, text_column=cfg.text_column,
                         label_column=cfg.label_column, encoding=cfg.encoding,
                         on_bad_line=cfg.on_bad_line, tree_labels=cfg.tree_labels)
    if getattr(cfg, split) is not None:
        return load_data(cfg, split)
    record = run.split()
    if record is None or not record.get(split):
        raise UsageError(f"{run.path} has no {split} split; pass DATA to evaluate on")
    return reload_carved(cfg, np.asarray(record[split], dtype=np.int64),
                         record["fingerprint"], split)


def evaluate(run: Run, data, predict_proba, batch_size: int = 256,
             source: str = "evaluation data") -> dict:
    """The classification report of ``run`` on ``data`` (a LoadedData) read from
    ``source`` (named in errors)."""
    from .evaluation import check_known_labels, classification_report

    if run.config.model.type == "treenet":  # root report + all_nodes_accuracy
        from .tree_runs import evaluate_tree_run

        return evaluate_tree_run(run, data, predict_proba)
    if len(data) == 0:
        raise DataError("no examples to evaluate on")
    check_known_labels(data.labels, run.labels, source)
    index = {label: i for i, label in enumerate(run.labels)}
    y_true = np.array([index[label] for label in data.labels], dtype=np.int64)
    y_pred = np.empty(len(data), dtype=np.int64)
    # Sorting by length keeps each batch's padding short; results go back in order.
    order = np.argsort([len(t) for t in data.texts], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        probabilities = predict_proba([data.texts[i] for i in rows])
        y_pred[rows] = np.asarray(probabilities).argmax(axis=1)
    return classification_report(y_true, y_pred, run.labels)


def require_run_dir(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: no such run directory")
    return p
