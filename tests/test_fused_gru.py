"""FusedGRU (textclf's CPU loop) against keras.layers.GRU and the NumPy reference.

As tests/test_fused_lstm.py: the same float64 weights in both layers; outputs,
final state and the gradients of every weight, the inputs and the initial
state agree to 1e-9 relative (only the order of additions differs).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (RNN_B, RNN_D, RNN_MASKS, RNN_T, RNN_U, assert_relatively_close,
                      twin_recurrent_layers)


@pytest.fixture(scope="module")
def tf():
    from textclf.runtime import import_tensorflow

    return import_tensorflow()


B, T, D, U = RNN_B, RNN_T, RNN_D, RNN_U
MASKS = RNN_MASKS


def twin_layers(tf, groups: int = 2, **options):
    """A stock GRU and a FusedGRU with the same float64 weights."""
    import keras

    from textclf.models.fused_gru import FusedGRU

    return twin_recurrent_layers(keras.layers.GRU, FusedGRU, groups, **options)


def outputs_and_gradients(tf, layer, x, mask, h0, training):
    """Outputs (seq, h) and d(loss)/d(x, h0, *weights) for a loss that reads both."""
    x, h0 = tf.convert_to_tensor(x), tf.convert_to_tensor(h0)
    with tf.GradientTape() as tape:
        tape.watch([x, h0])
        seq, h = layer(x, mask=None if mask is None else tf.constant(mask),
                       initial_state=h0, training=training)
        loss = tf.reduce_sum(tf.sin(seq) * np.linspace(0.5, 1.5, U)) + tf.reduce_sum(h * h)
    return [seq, h], tape.gradient(loss, [x, h0, *layer.trainable_weights])


assert_close = assert_relatively_close


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("groups", [1, 2, 3])
@pytest.mark.parametrize("training", [True, False], ids=["hand-written-backward", "lean-loop"])
def test_matches_keras_outputs_and_gradients(tf, mask_name, go_backwards, groups, training):
    stock, fused = twin_layers(tf, groups, go_backwards=go_backwards)
    rng = np.random.default_rng(0)
    x, h0 = rng.normal(size=(B, T, D)), rng.normal(0, 0.5, size=(B, U))
    expected, expected_grads = outputs_and_gradients(tf, stock, x, MASKS[mask_name], h0, training)
    actual, actual_grads = outputs_and_gradients(tf, fused, x, MASKS[mask_name], h0, training)
    for name, a, e in zip(["outputs", "h_T"], actual, expected):
        assert_close(a, e, name)
    names = ["d_x", "d_h0", "d_kernel", "d_recurrent_kernel", "d_bias"]
    for name, a, e in zip(names, actual_grads, expected_grads):
        assert_close(a, e, name)


def test_inside_a_function_and_batches_smaller_than_the_groups(tf):
    stock, fused = twin_layers(tf, groups=3)
    x = np.random.default_rng(1).normal(size=(2, T, D))  # 2 rows, 3 slices: one is empty
    zeros = np.zeros((2, U))

    @tf.function
    def run(layer):
        return outputs_and_gradients(tf, layer, x, None, zeros, training=True)

    (e_out, e_grads), (a_out, a_grads) = run(stock), run(fused)
    for a, e in zip(a_out + a_grads, e_out + e_grads):
        assert_close(a, e, "function")


def test_falls_back_to_keras_where_the_fused_loop_does_not_apply(tf):
    from textclf.models.fused_lstm import fused_path_applies

    for options in ({"recurrent_dropout": 0.2}, {"reset_after": False}, {"unroll": True}):
        _, fused = twin_layers(tf, **options)
        assert not fused_path_applies(fused, training=False), options
        stock, fused = twin_layers(tf, **options)
        x = np.random.default_rng(2).normal(size=(B, T, D))
        np.testing.assert_allclose(fused(x)[0], stock(x)[0], atol=1e-12)
    _, fused = twin_layers(tf)
    assert fused_path_applies(fused, training=True)


def test_mixed_precision_stays_close_to_float32(tf):
    """bfloat16 projections, float32 loop: within bfloat16 rounding of the
    float32 layer, outputs and gradients."""
    from textclf.models.fused_gru import FusedGRU

    x = np.random.default_rng(4).normal(size=(B, T, D)).astype("float32")
    exact = FusedGRU(U, return_sequences=True)
    mixed = FusedGRU(U, return_sequences=True, dtype="mixed_bfloat16")
    exact.build((None, None, D))
    mixed.build((None, None, D))
    mixed.set_weights(exact.get_weights())
    results = []
    for layer in (exact, mixed):
        with tf.GradientTape() as tape:
            out = tf.cast(layer(x, mask=MASKS["right"], training=True), "float32")
            loss = tf.reduce_sum(tf.sin(out) * np.linspace(0.5, 1.5, U))
        results.append((out, tape.gradient(loss, layer.trainable_weights)))
    (want, want_grads), (got, got_grads) = results
    assert mixed(x).dtype == "bfloat16"
    np.testing.assert_allclose(got, want, atol=0.03)
    for name, w, g in zip(("kernel", "recurrent_kernel", "bias"), want_grads, got_grads):
        error = np.max(np.abs(np.asarray(g) - np.asarray(w))) / np.max(np.abs(np.asarray(w)))
        assert 0 < error < 0.02, f"{name}: relative difference {error:.2e}"


def test_model_builder_saved_model_and_numpy_reference(tf, tmp_path):
    import keras

    from textclf.config import ModelConfig
    from textclf.models import build_model
    from textclf.models.fused_gru import FusedGRU
    from textclf.reference.model import NumpyModel

    options = dict(type="rnn", cell="gru", units=6, embedding_dim=8, bidirectional=True)
    keras.utils.set_random_seed(1)
    fused_model = build_model(ModelConfig(**options), vocab_size=30, n_classes=3)
    keras.utils.set_random_seed(1)
    stock_model = build_model(ModelConfig(**options, cpu_loop="keras"), vocab_size=30,
                              n_classes=3)
    assert isinstance(fused_model.get_layer("rnn_1").forward_layer, FusedGRU)
    assert type(stock_model.get_layer("rnn_1").forward_layer) is keras.layers.GRU
    ids = np.array([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [0] * 5], dtype=np.int32)
    probabilities = fused_model.predict(ids, verbose=0)
    np.testing.assert_allclose(probabilities, stock_model.predict(ids, verbose=0), atol=1e-6)
    np.testing.assert_allclose(NumpyModel.from_keras(fused_model).forward(ids),
                               probabilities, atol=1e-5)
    path = tmp_path / "model.keras"
    fused_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("rnn_1").backward_layer, FusedGRU)
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0), probabilities)
