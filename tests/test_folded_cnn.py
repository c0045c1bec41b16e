"""Folded TextCNN prediction (embedding x filters as lookup tables) against the model.

Random weights of scale ~1 (not a trained model's small ones), texts of every
length (empty, one token, longer than max_length, out-of-vocabulary words), one
and several kernel widths, relu and tanh: the folded function must give the
end-to-end model's probabilities to 1e-5 and the same labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FOLD_TEXTS as TEXTS
from conftest import assert_folded_matches, random_end_to_end
from textclf.config import ModelConfig


@pytest.fixture(scope="module")
def tf():
    from textclf.runtime import import_tensorflow

    return import_tensorflow()


def end_to_end(**model_options):
    return random_end_to_end(ModelConfig(type="cnn", embedding_dim=6, filters=5,
                                         **model_options), weight_scale=1.0)


@pytest.mark.parametrize("options", [dict(kernel_sizes=(3, 4, 5)), dict(kernel_sizes=(2,)),
                                     dict(kernel_sizes=(1, 7), activation="tanh"),
                                     dict(kernel_sizes=(2, 3), activation="gelu")],
                         ids=["kim", "one-branch", "tanh", "gelu-conv-then-pool"])
def test_folded_equals_the_model(tf, options):
    from textclf.models.folded_cnn import folded_predict_fn

    model = end_to_end(**options)
    folded = folded_predict_fn(model)
    assert folded is not None
    assert_folded_matches(model, folded)


def test_mixed_precision_model_folds_to_its_own_rounding(tf):
    """bfloat16 convolutions: the tables use the same rounded embeddings and
    kernels and round their sums alike, so only a bfloat16 unit in the last place
    (0.4%) can differ, from the order of the float32 additions."""
    import keras

    from textclf.models.folded_cnn import folded_predict_fn

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = end_to_end()
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

    model = end_to_end()
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
