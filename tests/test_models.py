"""Model builders: shapes, masking, and invariance to how a batch was padded."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.config import ModelConfig


@pytest.fixture(scope="module")
def keras():
    from textclf.runtime import import_tensorflow

    import_tensorflow()
    import keras

    return keras


def build(keras, **options):
    from textclf.models import build_model

    keras.utils.set_random_seed(1)
    return build_model(ModelConfig(**options), vocab_size=50, n_classes=3)


IDS = np.array([[5, 6, 7, 8, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0], [0] * 7,
                [1, 2, 3, 4, 5, 6, 7]], dtype=np.int32)

MODELS = [dict(type="cnn", embedding_dim=8, filters=4, kernel_sizes=(2, 5)),
          dict(type="rnn", cell="lstm", units=6, embedding_dim=8),
          dict(type="rnn", cell="gru", units=6, embedding_dim=8, bidirectional=True),
          dict(type="rnn", cell="simple_rnn", units=6, embedding_dim=8, layers=2),
          dict(type="rnn", cell="simple_rnn", units=6, embedding_dim=8, activation="relu")]


@pytest.mark.parametrize("options", MODELS, ids=lambda o: f"{o['type']}-{o.get('cell', '')}")
def test_probabilities_shape_and_padding_invariance(keras, options):
    model = build(keras, **options)
    probabilities = model.predict_on_batch(IDS)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert np.isfinite(probabilities).all(), "an empty document must not give NaN"
    # Each document alone, padded only to its own length, gets the same answer.
    for row, ids in enumerate(IDS):
        alone = model.predict_on_batch(ids[None, : max(int((ids != 0).sum()), 1)])
        np.testing.assert_allclose(alone[0], probabilities[row], atol=1e-6,
                                   err_msg=f"row {row} depends on its batch's padding")


def test_masked_mean_pooling_equals_numpy_mean_over_unpadded_steps(keras):
    from textclf.models.layers import MaskedMeanPooling

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
    pooled = np.asarray(MaskedMeanPooling()(x, mask=mask))
    expected = np.stack([x[0, :3].mean(0), x[1, :1].mean(0), np.zeros(4)])
    np.testing.assert_allclose(pooled, expected, rtol=1e-6, atol=1e-7)


def test_rnn_defaults_keep_the_cudnn_conditions(keras):
    """tanh, sigmoid gates, bias, no recurrent dropout, no unroll: the cuDNN kernel's terms."""
    model = build(keras, type="rnn", cell="gru", units=4)
    layer = model.get_layer("rnn_1")
    assert layer.cell.activation.__name__ == "tanh"
    assert layer.cell.recurrent_activation.__name__ == "sigmoid"
    assert layer.cell.use_bias and layer.cell.recurrent_dropout == 0 and not layer.unroll
    assert layer.cell.reset_after


def test_cnn_max_norm_constrains_output_columns(keras):
    model = build(keras, type="cnn", embedding_dim=8, filters=4, max_norm=0.5)
    constraint = model.get_layer("output").kernel_constraint
    assert constraint is not None and constraint.max_value == 0.5


def test_models_save_and_load_in_safe_mode(keras, tmp_path):
    for options in MODELS[:2]:
        model = build(keras, **options)
        path = tmp_path / f"{options['type']}.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        np.testing.assert_allclose(loaded.predict_on_batch(IDS), model.predict_on_batch(IDS),
                                   atol=1e-6)
