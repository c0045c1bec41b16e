"""``textclf export``: a run directory -> a TensorFlow SavedModel for serving.

The SavedModel holds the run's end-to-end model (tokeniser included) behind one
serving signature, ``serving_default``::

    inputs:  text            string  (B,)     raw documents
    outputs: label           string  (B,)     predicted label name (the argmax)
             label_id        int32   (B,)     its index in labels.json
             probabilities   float32 (B, C)   column k is label k of labels.json

Label names live in the graph as a constant, so a client needs nothing but the
SavedModel. TensorFlow Serving wants a numbered version folder
(``OUT_DIR/1``); see docs/SCALE_AND_SERVE.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from .artifact import Run
from .atomic import atomic_directory
from .errors import UsageError
from .kernels import stock_ops_only

SIGNATURE = "serving_default"
FORMATS = ("saved_model",)


def export_saved_model(run: Run, out_dir: str | os.PathLike, force: bool = False) -> dict:
    """Write ``run``'s model as a SavedModel at ``out_dir``; return a description.

    Written to a temporary folder beside ``out_dir`` and renamed onto it, so
    ``out_dir`` is never half a model. An existing ``out_dir`` is replaced only
    with ``force``.
    """
    import keras
    import tensorflow as tf

    out = Path(out_dir)
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    model = run.model
    labels = tf.constant(run.labels, dtype=tf.string)

    def serve(text):
        probabilities = model(text, training=False)  # (B, C)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)  # (B,)
        return {"label": tf.gather(labels, label_id), "label_id": label_id,
                "probabilities": probabilities}

    archive = keras.export.ExportArchive()
    archive.track(model)  # the vectoriser's lookup table must be tracked explicitly
    # A server has TensorFlow's ops, not textclf's native ones: trace the graph loops.
    with stock_ops_only():
        archive.add_endpoint(SIGNATURE, serve,
                             input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        with atomic_directory(out, force) as build:
            archive.write_out(str(build), verbose=False)
    return {"format": "saved_model", "path": str(out), "run_dir": str(run.path),
            "signature": SIGNATURE, "inputs": {"text": "string (batch,)"},
            "outputs": {"label": "string (batch,)", "label_id": "int32 (batch,)",
                        "probabilities": f"float32 (batch, {len(run.labels)})"},
            "labels": list(run.labels)}
