"""``NumpyEngine``: raw texts -> probabilities without TensorFlow, equal to the Keras model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textclf.config import ModelConfig
from textclf.reference.engine import NumpyEngine
from textclf.reference.export import export_numpy_weights, write_vocabulary

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]
WORD_TEXTS = ["The match was a great WIN for the team!", "Stock prices fell; the bank's profit...",
              "", "unknown words only: zzz qqq", "team team team goal", "Ünïcödé Team\u00a0win",
              "a b c d e f g h i j k l m n o p team win goal"]
CHAR_TEXTS = ["这部电影很好看！", "质量太差了，不推荐。", "", "好", "Good 好 bad 差\n新",
              "物流很快，包装完好，五星好评" * 3]


def end_to_end(kind: str, max_length: int):
    """vectorizer -> truncate -> classifier, as a run directory's model.keras holds it."""
    from textclf.models import build_model
    from textclf.models.layers import TruncateTokens

    keras.utils.set_random_seed(0)
    if kind == "word_cnn":
        vectorizer = keras.layers.TextVectorization(
            standardize="lower_and_strip_punctuation", split="whitespace", name="vectorizer")
        vectorizer.adapt(WORD_TEXTS)
        cfg = ModelConfig(type="cnn", embedding_dim=8, kernel_sizes=(2, 3), filters=4)
    else:
        vectorizer = keras.layers.TextVectorization(standardize="lower", split="character",
                                                    name="vectorizer")
        vectorizer.adapt(CHAR_TEXTS[:3])
        cfg = ModelConfig(type="rnn", cell="gru", embedding_dim=8, units=4, bidirectional=True)
    classifier = build_model(cfg, vectorizer.vocabulary_size(), 3)
    rng = np.random.default_rng(0)
    table = classifier.get_layer("embedding")
    table.set_weights([rng.uniform(-1, 1, size=table.embeddings.shape).astype(np.float32)])
    text = keras.Input(shape=(), dtype="string", name="text")
    ids = TruncateTokens(max_length, name="truncate")(vectorizer(text))
    return keras.Model(text, classifier(ids), name="textclf"), classifier, vectorizer


@pytest.mark.parametrize("kind, texts", [("word_cnn", WORD_TEXTS), ("char_rnn", CHAR_TEXTS)])
def test_engine_equals_keras_end_to_end(tmp_path, kind, texts):
    model, _, _ = end_to_end(kind, max_length=12)
    export_numpy_weights(model, tmp_path / "weights.npz")
    engine = NumpyEngine(tmp_path, batch_size=2)  # batches of mixed lengths
    expected = np.asarray(model(tf.constant(texts)))
    probs = engine.predict_proba(texts)
    assert probs.shape == (len(texts), 3)
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(engine.predict(texts), expected.argmax(axis=1))
    keras_ids = np.asarray(model.get_layer("truncate")(model.get_layer("vectorizer")(
        tf.constant(texts))))
    np.testing.assert_array_equal(engine.encode(texts)[:, :keras_ids.shape[1]], keras_ids)


@pytest.mark.parametrize("kind", ["word_cnn", "char_rnn"])
def test_a_batch_of_empty_texts_alone(tmp_path, kind):
    """It vectorizes to (B, 0); Keras' recurrent layers cannot run zero steps, so
    TruncateTokens gives it one padding column: the answer for an empty text is
    the same alone as among longer texts, and the NumPy engine's."""
    model, _, _ = end_to_end(kind, max_length=12)
    export_numpy_weights(model, tmp_path / "weights.npz")
    alone = np.asarray(model(tf.constant(["", ""])))
    among = np.asarray(model(tf.constant(["", "a longer text here"])))
    np.testing.assert_allclose(alone, among[[0, 0]], atol=1e-6)
    np.testing.assert_allclose(NumpyEngine(tmp_path).predict_proba(["", ""]), alone, atol=1e-5)


def test_engine_from_config_and_vocabulary_file(tmp_path):
    """A run exported from the bare classifier: settings from config.yaml, vocabulary.txt."""
    model, classifier, vectorizer = end_to_end("char_rnn", max_length=5)
    export_numpy_weights(classifier, tmp_path / "weights.npz")
    write_vocabulary(vectorizer.get_vocabulary(), tmp_path / "vocabulary.txt")
    (tmp_path / "config.yaml").write_text(
        "data: {train: train.tsv}\n"
        "text: {lowercase: true, strip_punctuation: false, split: character, max_length: 5}\n"
        "model: {type: rnn, cell: gru, units: 4, bidirectional: true}\n", encoding="utf-8")
    probs = NumpyEngine(tmp_path).predict_proba(CHAR_TEXTS)
    np.testing.assert_allclose(probs, np.asarray(model(tf.constant(CHAR_TEXTS))), atol=1e-5, rtol=0)


def test_engine_does_not_import_tensorflow(tmp_path):
    model, _, _ = end_to_end("word_cnn", max_length=12)
    export_numpy_weights(model, tmp_path / "weights.npz")
    script = (
        "import sys\n"
        "from textclf.reference.engine import NumpyEngine\n"
        f"probs = NumpyEngine(sys.argv[1]).predict_proba({WORD_TEXTS!r})\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
        "print(probs.shape, heavy)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"({len(WORD_TEXTS)}, 3) []"


def test_missing_weights_is_a_run_dir_error(tmp_path):
    from textclf.errors import RunDirError

    with pytest.raises(RunDirError, match="no weights.npz"):
        NumpyEngine(tmp_path)


def test_check_texts_on_a_run_directory(tmp_path):
    from textclf.reference.check import check_texts, format_check

    model, classifier, vectorizer = end_to_end("char_rnn", max_length=6)
    export_numpy_weights(model, tmp_path / "weights.npz")
    labels = np.arange(len(CHAR_TEXTS)) % 3
    report = check_texts(model, CHAR_TEXTS, labels, run_dir=tmp_path, gradients=True)
    text = format_check(report)
    assert report.ok, text
    assert report.same_token_ids == len(CHAR_TEXTS)
    assert f"identical token ids (NumPy engine vs the saved vectorizer): {len(CHAR_TEXTS)}/" in text

    # A run whose vocabulary does not match its model: the tokenisation check fails.
    export_numpy_weights(classifier, tmp_path / "weights.npz")
    swapped = vectorizer.get_vocabulary()
    swapped[2], swapped[3] = swapped[3], swapped[2]
    write_vocabulary(swapped, tmp_path / "vocabulary.txt")
    (tmp_path / "config.yaml").write_text(
        "data: {train: train.tsv}\n"
        "text: {lowercase: true, strip_punctuation: false, split: character, max_length: 6}\n"
        "model: {type: rnn, cell: gru, units: 4, bidirectional: true}\n", encoding="utf-8")
    report = check_texts(model, CHAR_TEXTS, run_dir=tmp_path)
    assert not report.ok and report.same_token_ids < len(CHAR_TEXTS)
    assert "FAILED: beyond tolerance: token ids" in format_check(report)


@pytest.mark.parametrize("kind, texts", [("word_cnn", WORD_TEXTS), ("char_rnn", CHAR_TEXTS)])
def test_check_texts_compares_a_mixed_precision_model_in_float32(tmp_path, kind, texts):
    """bfloat16 compute misses the float32 tolerance by design; the check then
    compares the same weights computing in float32, and reports the bfloat16
    model's own distance from the reference beside it."""
    from textclf.reference.check import check_run, check_texts, format_check

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model, classifier, _ = end_to_end(kind, max_length=12)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    export_numpy_weights(model, tmp_path / "weights.npz")
    ids = np.asarray(model.get_layer("truncate")(model.get_layer("vectorizer")(
        tf.constant(texts))))
    assert not check_run(classifier, None, ids).ok  # 16-bit compute against float32 tolerance

    report = check_texts(model, texts, np.arange(len(texts)) % 3, run_dir=tmp_path,
                         gradients=True)
    text = format_check(report)
    assert report.ok, text
    assert report.mixed["compute_dtype"] == "bfloat16"
    assert 0 < report.mixed["max_abs"] < 0.05 and "the run computes in bfloat16" in text
    # The model is left as it was: still computing in bfloat16.
    assert all(layer.dtype_policy.name == "mixed_bfloat16" for layer in classifier.layers
               if layer.name.startswith(("conv", "rnn")))
