"""THE NAIVE BASELINE of ``make bench``: the yardstick, not product code.

The same two architectures as textclf's BBC recipes, written the way a Keras
tutorial writes them (project issue 7):

- ``TextVectorization`` adapted on the training texts, every document padded or
  cut to a fixed 400 tokens, vocabulary 20,000, embedding 128;
- (a) Kim's TextCNN: Conv1D 3/4/5 x 100 filters (ReLU), global max pooling,
  concatenation, dropout 0.5, softmax;
- (b) embedding with ``mask_zero`` -> ``LSTM(128, return_sequences=True)`` ->
  ``GlobalAveragePooling1D`` -> softmax;
- Adam (Keras defaults), sparse categorical cross-entropy, batch 32, early
  stopping on validation loss (best weights restored), plain ``model.fit`` on
  NumPy arrays; prediction with an end-to-end model (strings in) and
  ``model.predict`` at its default batch of 32.

Nothing from textclf is used except the data split (``textclf.data.load_splits``,
so every contender sees the same texts) and the metric code.

    python scripts/bench_naive.py train --spec SPEC.json --out RESULT.json
    python scripts/bench_naive.py predict MODEL.keras INPUT.txt OUTPUT.txt   # whole-process timing
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from bench_common import (Architecture, cycled, epoch_work, inference_flops,  # noqa: E402
                          load_recipe_splits, make_epoch_clock, recurrent_ops, scores,
                          steady_state, worker_main)

SEQUENCE_LENGTH = 400
VOCABULARY = 20_000
EMBEDDING = 128
BATCH = 32
KERNEL_SIZES = (3, 4, 5)
FILTERS = 100
UNITS = 128


def naive_vectorizer(train_texts: list[str]):
    """Tutorial TextVectorization: strings (B,) -> ids (B, 400), 0 = padding."""
    import keras

    layer = keras.layers.TextVectorization(max_tokens=VOCABULARY, output_mode="int",
                                           output_sequence_length=SEQUENCE_LENGTH)
    layer.adapt(np.array(train_texts, dtype=object))
    return layer


def naive_textcnn(n_classes: int):
    """Ids (B, 400) -> probabilities (B, n_classes)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int64")
    x = layers.Embedding(VOCABULARY, EMBEDDING)(inputs)
    pooled = [layers.GlobalMaxPooling1D()(layers.Conv1D(FILTERS, k, activation="relu")(x))
              for k in KERNEL_SIZES]
    x = layers.Concatenate()(pooled)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="naive_textcnn")


def naive_lstm(n_classes: int):
    """Ids (B, 400) -> probabilities (B, n_classes)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int64")
    x = layers.Embedding(VOCABULARY, EMBEDDING, mask_zero=True)(inputs)
    x = layers.LSTM(UNITS, return_sequences=True)(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="naive_lstm")


def architecture(family: str, n_classes: int) -> Architecture:
    if family == "cnn":
        return Architecture("cnn", EMBEDDING, n_classes, KERNEL_SIZES, FILTERS, end_pad=0)
    return Architecture("rnn", EMBEDDING, n_classes, cell="lstm", units=UNITS)


def train(spec: dict) -> dict:
    """Train, evaluate, time and save one naive model; the result dict of a Result."""
    import keras
    import tensorflow as tf

    cfg, splits = load_recipe_splits(spec["recipe"], spec["overrides"])
    labels = list(splits.label_map.labels)
    y = {name: np.asarray(splits.label_map.encode(getattr(splits, name).labels))
         for name in ("train", "valid", "test")}
    keras.utils.set_random_seed(spec["seed"])

    started = time.perf_counter()
    vectorizer = naive_vectorizer(splits.train.texts)
    x = {name: vectorizer(np.array(getattr(splits, name).texts, dtype=object)).numpy()
         for name in ("train", "valid", "test")}
    vectorize_seconds = time.perf_counter() - started

    model = naive_textcnn(len(labels)) if spec["family"] == "cnn" else naive_lstm(len(labels))
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    forward = tf.function(lambda ids: model(ids, training=False))

    def test_accuracy(_model) -> float:
        predicted = np.concatenate([forward(x["test"][i:i + 256]).numpy().argmax(axis=1)
                                    for i in range(0, len(x["test"]), 256)])
        return float(np.mean(predicted == y["test"]))

    clock = make_epoch_clock(test_accuracy)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec["patience"],
                                            restore_best_weights=True)
    model.fit(x["train"], y["train"], batch_size=BATCH, epochs=spec["epochs"],
              validation_data=(x["valid"], y["valid"]), callbacks=[stopper, clock], verbose=2)
    predicted = model.predict(x["test"], batch_size=256, verbose=0).argmax(axis=1)
    accuracy, macro_f1 = scores(y["test"], predicted, labels)

    # Work per epoch: every batch runs at the full 400 steps. Keras shuffles the
    # rows, so the batches below are in file order: per-epoch totals are exact.
    arch = architecture(spec["family"], len(labels))
    lengths = np.count_nonzero(x["train"], axis=1)
    rows = [np.arange(i, min(i + BATCH, len(lengths))) for i in range(0, len(lengths), BATCH)]
    work = epoch_work(arch, rows, lengths, [SEQUENCE_LENGTH] * len(rows))
    steady = steady_state(clock.epochs, [work] * len(clock.epochs))

    # The end-to-end model a tutorial saves: strings in, probabilities out.
    text = keras.Input(shape=(), dtype="string")
    end_to_end = keras.Model(text, model(vectorizer(text)))
    model_path = Path(spec["workdir"]) / f"{spec['name']}.keras"
    end_to_end.save(model_path)

    docs = cycled(splits.test.texts, spec["predict_docs"])
    doc_lengths = np.array(cycled(list(np.count_nonzero(x["test"], axis=1)), len(docs)))
    end_to_end.predict(tf.data.Dataset.from_tensor_slices(docs[:2 * BATCH]).batch(BATCH),
                       verbose=0)  # warm-up: trace
    started = time.perf_counter()
    end_to_end.predict(tf.data.Dataset.from_tensor_slices(docs).batch(BATCH), verbose=0)
    predict_seconds = time.perf_counter() - started

    return {
        "contender": spec["contender"], "dataset": spec["dataset"], "family": spec["family"],
        "kind": "naive", "n_train": len(y["train"]), "n_test": len(y["test"]),
        "test_accuracy": accuracy, "macro_f1": macro_f1,
        "train_seconds": clock.fit_seconds, "epochs": len(clock.epochs),
        "steady_ex_per_s": steady["ex_per_s"], "steady_note": steady["note"],
        "curve": clock.curve, "predict_docs": len(docs),
        "predict_docs_per_s": len(docs) / predict_seconds, "predict_batch": BATCH,
        "model_bytes": model_path.stat().st_size,
        "flops": {"architecture": arch.describe(), "train": steady,
                  "predict": inference_flops(arch, np.full(len(docs), SEQUENCE_LENGTH),
                                             doc_lengths, predict_seconds)},
        "extra": {"model_path": str(model_path), "vectorize_seconds": vectorize_seconds,
                  "epoch_times": [{k: e[k] for k in ("train", "total", "first_batch_wait")}
                                  for e in clock.epochs],
                  "max_epochs": spec["epochs"], "patience": spec["patience"],
                  "recurrent_ops": recurrent_ops(model) if spec["family"] == "rnn" else []},
    }


def predict_main(model_path: str, input_path: str, output_path: str) -> int:
    """What a tutorial's prediction script does: load the model, predict, write."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    texts = Path(input_path).read_text(encoding="utf-8").splitlines()
    model = keras.models.load_model(model_path)
    probabilities = model.predict(tf.constant(texts), batch_size=BATCH, verbose=0)
    Path(output_path).write_text("".join(f"{i}\n" for i in probabilities.argmax(axis=1)),
                                 encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "predict":
        sys.exit(predict_main(*sys.argv[2:5]))
    sys.exit(worker_main({"train": train}))
