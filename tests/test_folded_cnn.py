"""Folded TextCNN prediction (embedding x filters as lookup tables) against the model.

Random weights of scale ~1 (not a trained model's small ones), texts of every
length (empty, one token, longer than max_length, out-of-vocabulary words), one
and several kernel widths, relu and tanh: the folded function must give the
end-to-end model's probabilities to 1e-5 and the same labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from textclf.config import ModelConfig, TextConfig

TRAIN = ["the cat sat on the mat", "dogs bark at the mail man", "stocks fell sharply today",
         "the match ended in a draw", "rates rise as markets fall", "a cat and a dog"]
TEXTS = ["", "cat", "the the the", "unknownword another", "the cat sat on the mat " * 12,
         "stocks fell as the cat sat", "markets"] * 3


@pytest.fixture(scope="module")
def tf():
    from textclf.runtime import import_tensorflow

    return import_tensorflow()


def end_to_end(tf, **model_options):
    import keras

    from textclf.models import build_model
    from textclf.text import build_vectorizer
    from textclf.training import end_to_end_model

    keras.utils.set_random_seed(4)
    vectorizer = build_vectorizer(TextConfig(max_tokens=40), TRAIN)
    vocab_size = len(vectorizer.get_vocabulary())
    classifier = build_model(ModelConfig(type="cnn", embedding_dim=6, filters=5,
                                         **model_options), vocab_size, n_classes=4)
    rng = np.random.default_rng(0)
    classifier.set_weights([rng.normal(0, 1.0, size=w.shape) for w in classifier.get_weights()])
    return end_to_end_model(vectorizer, classifier, max_length=20)


@pytest.mark.parametrize("options", [dict(kernel_sizes=(3, 4, 5)), dict(kernel_sizes=(2,)),
                                     dict(kernel_sizes=(1, 7), activation="tanh")],
                         ids=["kim", "one-branch", "tanh"])
def test_folded_equals_the_model(tf, options):
    from textclf.models.folded_cnn import folded_predict_fn

    model = end_to_end(tf, **options)
    folded = folded_predict_fn(model)
    assert folded is not None
    for start in (0, 5):  # two batches of different padded widths
        texts = TEXTS[start:start + 9]
        expected = model(tf.constant(texts), training=False).numpy()
        actual = folded(tf.constant(texts)).numpy()
        np.testing.assert_allclose(actual, expected, atol=1e-5)
        np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))


def test_mixed_precision_model_folds_to_its_own_rounding(tf):
    """bfloat16 convolutions: the tables use the same rounded embeddings and
    kernels and round their sums alike, so only a bfloat16 unit in the last place
    (0.4%) can differ, from the order of the float32 additions."""
    import keras

    from textclf.models.folded_cnn import folded_predict_fn

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = end_to_end(tf)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.get_layer("textcnn").get_layer("conv_3").compute_dtype == "bfloat16"
    texts = TEXTS[:9]
    expected = model(tf.constant(texts), training=False).numpy()
    actual = folded_predict_fn(model)(tf.constant(texts)).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-2)


def test_declines_tables_over_the_limit_and_other_models(tf):
    import keras

    from textclf.models.folded_cnn import folded_predict_fn

    model = end_to_end(tf)
    assert folded_predict_fn(model, max_table_bytes=100) is None
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert folded_predict_fn(plain) is None


def test_keras_engine_uses_the_folded_form_and_both_agree(tmp_path, tf):
    """Through a real run directory: textclf's predictor with and without folding."""
    from conftest import train_tiny_run
    from textclf.artifact import open_run
    from textclf.inference import keras_predictor

    run = open_run(train_tiny_run(tmp_path, epochs=1)[0])
    folded, plain = keras_predictor(run), keras_predictor(run, fold=False)
    np.testing.assert_allclose(folded(TEXTS), plain(TEXTS), atol=1e-5)
