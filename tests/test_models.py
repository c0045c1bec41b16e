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
          dict(type="cnn", embedding_dim=8, filters=4, kernel_sizes=(3,), activation="gelu"),
          dict(type="rnn", cell="lstm", units=6, embedding_dim=8),
          dict(type="rnn", cell="gru", units=6, embedding_dim=8, bidirectional=True),
          dict(type="rnn", cell="simple_rnn", units=6, embedding_dim=8, layers=2),
          dict(type="rnn", cell="simple_rnn", units=6, embedding_dim=8, activation="relu")]


@pytest.mark.parametrize("options", MODELS,
                         ids=lambda o: f"{o['type']}-{o.get('cell', o.get('activation', ''))}")
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
    for options in MODELS[:3]:
        model = build(keras, **options)
        path = tmp_path / f"{options['type']}.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        np.testing.assert_allclose(loaded.predict_on_batch(IDS), model.predict_on_batch(IDS),
                                   atol=1e-6)


@pytest.mark.parametrize("pool_gradient", ["shared", "argmax"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "linear"])
def test_max_pooled_conv_equals_conv_then_pooling(keras, activation, pool_gradient):
    """MaxPooledConv1D (bias and activation after the max) against Conv1D then
    LengthMaskedMaxPooling with the same weights, in float64: outputs and the
    gradients of the input and both weights, on rows with repeated windows
    (ties), padding of every length and an empty row.

    ``shared`` splits a tie's gradient as the two layers do. ``argmax`` gives
    it to one of the tied windows: the same weight gradients here (the tied
    windows read the same inputs), the same input gradient on the rows
    without ties, and on the tied row the same total, placed differently."""
    import tensorflow as tf

    from textclf.models.layers import (EndPadding, LengthMaskedMaxPooling,
                                       MaxPooledConv1D)

    width, channels, filters = 3, 4, 5
    ids = np.array([[4, 4, 4, 4, 4, 4, 0, 0],  # identical windows: exact ties
                    [3, 1, 2, 7, 5, 6, 2, 1],
                    [9, 8, 0, 0, 0, 0, 0, 0],
                    [0] * 8], dtype=np.int32)
    rng = np.random.default_rng(5)
    table = rng.normal(size=(10, channels))
    x = tf.constant(table[np.asarray(EndPadding(width)(ids))])  # (B, T + pad, E)
    fused = MaxPooledConv1D(filters, width, activation=activation, dtype="float64",
                            pool_gradient=pool_gradient)
    conv = keras.layers.Conv1D(filters, width, activation=activation, dtype="float64")
    pool = LengthMaskedMaxPooling(dtype="float64")
    fused.build([x.shape, ids.shape])
    conv.build(x.shape)
    weights = [rng.normal(size=w.shape) for w in conv.get_weights()]
    weights[1][0] = -50.0  # a filter whose every window is negative: relu's flat part
    fused.set_weights(weights)
    conv.set_weights(weights)
    upstream = rng.normal(size=(len(ids), filters))

    def outputs_and_gradients(layer_fn, variables):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer_fn()
            loss = tf.reduce_sum(out * upstream)
        return out, tape.gradient(loss, [x, *variables])

    want, want_grads = outputs_and_gradients(lambda: pool([conv(x), ids]), conv.trainable_weights)
    got, got_grads = outputs_and_gradients(lambda: fused([x, ids]), fused.trainable_weights)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for name, g, w in zip(["kernel", "bias"], got_grads[1:], want_grads[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=name)
    got_dx, want_dx = np.asarray(got_grads[0]), np.asarray(want_grads[0])
    untied = 0 if pool_gradient == "argmax" else slice(None)  # row 0 holds the ties
    np.testing.assert_allclose(np.delete(got_dx, untied, axis=0),
                               np.delete(want_dx, untied, axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_dx[0].sum(axis=0), want_dx[0].sum(axis=0), rtol=1e-10)
    if pool_gradient == "argmax" and activation != "relu":
        # relu's flat part can zero a filter's whole gradient; elsewhere the
        # tie's share moved onto one window, so the rows differ.
        assert not np.allclose(got_dx[0], want_dx[0])


def test_argmax_pool_gradient_matches_the_dense_one_on_random_inputs(keras):
    """Where no two windows tie, the argmax gradient (computed from the winning
    windows alone) is the dense one: float64, several widths, ragged rows."""
    import tensorflow as tf

    from textclf.models.layers import EndPadding, MaxPooledConv1D

    rng = np.random.default_rng(11)
    ids = rng.integers(1, 30, size=(7, 40)).astype(np.int32)
    for row, length in enumerate([40, 33, 17, 5, 1, 0, 26]):
        ids[row, length:] = 0
    upstream = rng.normal(size=(len(ids), 6))
    for width in (1, 3, 5):
        x = tf.constant(rng.normal(size=(*np.shape(EndPadding(width)(ids)), 9)))
        results = []
        for pool_gradient in ("argmax", "shared"):
            layer = MaxPooledConv1D(6, width, dtype="float64", pool_gradient=pool_gradient,
                                    bias_initializer="random_normal")
            layer.build([x.shape, ids.shape])
            if not results:
                weights = [rng.normal(size=w.shape) for w in layer.get_weights()]
            layer.set_weights(weights)
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer([x, ids]) * upstream)
            results.append(tape.gradient(loss, [x, *layer.trainable_weights]))
        for name, got, want in zip(["x", "kernel", "bias"], *results):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name}, width {width}")


def test_pool_gradient_is_saved_with_the_layer(keras):
    from textclf.models.layers import MaxPooledConv1D

    layer = MaxPooledConv1D(4, 2, pool_gradient="shared")
    assert MaxPooledConv1D.from_config(layer.get_config()).pool_gradient == "shared"
    assert MaxPooledConv1D(4, 2).pool_gradient == "argmax"
    with pytest.raises(ValueError, match="pool_gradient must be one of argmax, shared"):
        MaxPooledConv1D(4, 2, pool_gradient="first")


def test_cnn_builder_pools_inside_the_conv_for_monotone_activations(keras):
    from textclf.models.layers import MaxPooledConv1D

    relu = build(keras, type="cnn", embedding_dim=8, filters=4, kernel_sizes=(2, 5))
    assert all(isinstance(relu.get_layer(f"conv_{k}"), MaxPooledConv1D) for k in (2, 5))
    assert not any(layer.name.startswith("max_pool_") for layer in relu.layers)
    assert relu.get_layer("conv_2").pool_gradient == "argmax"
    shared = build(keras, type="cnn", embedding_dim=8, filters=4, kernel_sizes=(2,),
                   pool_gradient="shared")
    assert shared.get_layer("conv_2").pool_gradient == "shared"
    gelu = build(keras, type="cnn", embedding_dim=8, filters=4, kernel_sizes=(2, 5),
                 activation="gelu")  # not monotone: max and gelu do not commute
    assert type(gelu.get_layer("conv_2")) is keras.layers.Conv1D
    assert {"max_pool_2", "max_pool_5"} <= {layer.name for layer in gelu.layers}
    separate = build(keras, type="cnn", embedding_dim=8, filters=4, kernel_sizes=(2,),
                     pool_in_conv=False)
    assert type(separate.get_layer("conv_2")) is keras.layers.Conv1D
    assert "max_pool_2" in {layer.name for layer in separate.layers}
    with pytest.raises(ValueError, match="non-decreasing activation"):
        MaxPooledConv1D(4, 2, activation="gelu")
    for options in ({"padding": "same"}, {"strides": 2}, {"dilation_rate": 2},
                    {"use_bias": False}):
        with pytest.raises(ValueError, match="valid, stride-1"):
            MaxPooledConv1D(4, 2, activation="relu", **options)
