"""Folded LSTM prediction (embedding x input kernel as one lookup table) against the model.

Random weights of scale 0.5 (larger than a trained model's, small enough not
to saturate every gate), texts of every length (empty, one token, longer than
max_length, out-of-vocabulary words) batched at different padded widths, the
fused and the stock Keras layer, one and two layers: the folded function must
give the end-to-end model's probabilities to 1e-5 and the same labels.
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
    options = {**dict(type="rnn", cell="lstm", units=7, embedding_dim=6), **model_options}
    return random_end_to_end(ModelConfig(**options), weight_scale=0.5)


@pytest.mark.parametrize("options", [{}, dict(cpu_loop="keras"), dict(layers=2)],
                         ids=["fused", "keras-lstm", "two-layers"])
@pytest.mark.parametrize("native", [True, False], ids=["native-ops", "graph-loop"])
def test_folded_equals_the_model(tf, options, native, monkeypatch):
    """Folded with the first layer in textclf's native ops (where built) and
    in the graph loop."""
    from textclf import kernels
    from textclf.models.folded_lstm import folded_predict_fn

    if not native:
        monkeypatch.setattr(kernels, "native_lstm_available", lambda dtype: False)
    model = end_to_end(**options)
    folded = folded_predict_fn(model)
    assert folded is not None
    assert_folded_matches(model, folded)
    # A batch of empty texts alone (one padding column, see TruncateTokens): the
    # same answer as the model's, and as an empty text's among longer ones.
    alone = folded(tf.constant(["", ""])).numpy()
    np.testing.assert_allclose(alone, model(tf.constant(["", ""]), training=False).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(alone[0], folded(tf.constant(TEXTS[:2])).numpy()[0], atol=1e-6)


def test_mixed_precision_model_folds_to_its_own_rounding(tf):
    """bfloat16 input projection: the table uses the same rounded embeddings and
    kernel and rounds the product alike, so only a bfloat16 unit in the last
    place can differ (from the order of the float32 additions), then carried
    through the float32 recurrence."""
    import keras

    from textclf.models.folded_lstm import folded_predict_fn

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = end_to_end()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.layers[-1].get_layer("rnn_1").compute_dtype == "bfloat16"
    texts = TEXTS[:9]
    expected = model(tf.constant(texts), training=False).numpy()
    actual = folded_predict_fn(model)(tf.constant(texts)).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-2)


@pytest.mark.parametrize("options", [dict(cell="gru"), dict(bidirectional=True),
                                     dict(activation="relu")],
                         ids=["gru", "bidirectional", "relu"])
def test_declines_what_the_fused_loop_does_not_compute(tf, options):
    from textclf.models.folded_lstm import folded_predict_fn

    assert folded_predict_fn(end_to_end(**options)) is None


def test_declines_tables_over_the_limit_and_other_models(tf):
    import keras

    from textclf.models.folded_lstm import folded_predict_fn

    model = end_to_end()
    assert folded_predict_fn(model, max_table_bytes=100) is None
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert folded_predict_fn(plain) is None


def test_keras_engine_uses_the_folded_form_and_both_agree(tmp_path, tf):
    """Through a real run directory: textclf's predictor with and without folding."""
    from conftest import train_tiny_lstm_run
    from textclf.artifact import open_run
    from textclf.inference import keras_predictor

    run = open_run(train_tiny_lstm_run(tmp_path))
    folded, plain = keras_predictor(run), keras_predictor(run, fold=False)
    np.testing.assert_allclose(folded(TEXTS), plain(TEXTS), atol=1e-5)
