"""FusedLSTM (textclf's CPU loop) against keras.layers.LSTM and the NumPy reference.

Same weights in both layers; outputs, final states and the gradients of every
weight, the inputs and the initial state are compared in float64, where the
only difference is the order of floating-point additions (tolerance 1e-9
relative to the largest value of each tensor).
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
    """A stock LSTM and a FusedLSTM with the same float64 weights."""
    import keras

    from textclf.models.fused_lstm import FusedLSTM

    return twin_recurrent_layers(keras.layers.LSTM, FusedLSTM, groups, **options)


def outputs_and_gradients(tf, layer, x, mask, h0, c0, training=False):
    """Outputs (seq, h, c) and d(loss)/d(x, h0, c0, *weights) for a loss that
    reads every output (so each gradient path is exercised)."""
    x, h0, c0 = (tf.convert_to_tensor(a) for a in (x, h0, c0))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        seq, h, c = layer(x, mask=None if mask is None else tf.constant(mask),
                          initial_state=[h0, c0], training=training)
        loss = (tf.reduce_sum(tf.sin(seq) * np.linspace(0.5, 1.5, U))
                + tf.reduce_sum(h * h) + tf.reduce_sum(tf.cos(c)))
    grads = tape.gradient(loss, [x, h0, c0, *layer.trainable_weights])
    return [seq, h, c], grads


assert_close = assert_relatively_close


def random_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(B, T, D)), rng.normal(0, 0.5, size=(B, U)),
            rng.normal(0, 0.5, size=(B, U)))


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("groups", [1, 2, 3])
@pytest.mark.parametrize("training", [True, False], ids=["hand-written-backward", "lean-loop"])
def test_matches_keras_outputs_and_gradients(tf, mask_name, go_backwards, groups, training):
    """training=True: the loop with the hand-written backward pass; False: the
    prediction loop, which TensorFlow differentiates by itself."""
    from textclf.models.fused_lstm import fused_path_applies

    stock, fused = twin_layers(tf, groups, go_backwards=go_backwards)
    assert fused_path_applies(fused, training=training)
    x, h0, c0 = random_inputs()
    mask = MASKS[mask_name]
    expected_out, expected_grads = outputs_and_gradients(tf, stock, x, mask, h0, c0, training)
    actual_out, actual_grads = outputs_and_gradients(tf, fused, x, mask, h0, c0, training)
    for name, a, e in zip(("outputs", "h", "c"), actual_out, expected_out):
        assert_close(a, e, name)
    names = ["x", "h0", "c0", "kernel", "recurrent_kernel", "bias"]
    for name, a, e in zip(names, actual_grads, expected_grads):
        assert e is not None and a is not None, name
        assert_close(a, e, f"d/d{name}")


def test_tensorflow_function_and_batches_smaller_than_the_groups(tf):
    """Inside a tf.function (as Keras trains), with B = 1 and 3 < groups."""
    stock, fused = twin_layers(tf, groups=4)
    for batch, steps in ((1, 6), (3, 2)):
        x = np.random.default_rng(batch).normal(size=(batch, steps, D))
        zeros = np.zeros((batch, U))

        @tf.function
        def run(layer, x):
            return outputs_and_gradients(tf, layer, x, None, zeros, zeros, training=True)

        (e_out, e_grads), (a_out, a_grads) = run(stock, x), run(fused, x)
        for a, e in zip(a_out + a_grads, e_out + e_grads):
            assert_close(a, e, f"B={batch} T={steps}")


def test_falls_back_to_keras_where_the_fused_loop_does_not_apply(tf):
    from textclf.models.fused_lstm import fused_path_applies

    _, with_dropout = twin_layers(tf, dropout=0.3)
    assert not fused_path_applies(with_dropout, training=True)
    assert fused_path_applies(with_dropout, training=False)  # dropout is off at inference
    for options in (dict(recurrent_dropout=0.2), dict(activation="relu"), dict(unroll=True)):
        stock, fused = twin_layers(tf, **options)
        assert not fused_path_applies(fused, training=False), options
        x, h0, c0 = random_inputs(1)
        for a, e in zip(outputs_and_gradients(tf, fused, x, MASKS["holes"], h0, c0)[0],
                        outputs_and_gradients(tf, stock, x, MASKS["holes"], h0, c0)[0]):
            np.testing.assert_allclose(a, e, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_the_keras_path_never_sees_an_empty_row(tf, cell, go_backwards):
    """Where the fused loop does not apply (a GPU among others) the layers run
    Keras' loop, whose cuDNN kernel asserts that every row has a real step; an
    empty document must not fail there. keras_loop_with_empty_rows hands the
    loop no empty row and gives those rows what Keras' generic loop gives them."""
    import keras

    from textclf.models.fused_gru import FusedGRU
    from textclf.models.fused_lstm import FusedLSTM, keras_loop_with_empty_rows

    classes = {"lstm": (keras.layers.LSTM, FusedLSTM), "gru": (keras.layers.GRU, FusedGRU)}
    stock, _ = twin_recurrent_layers(*classes[cell], go_backwards=go_backwards)
    x, h0, c0 = (tf.constant(a) for a in random_inputs(2))
    initial = [h0, c0] if cell == "lstm" else [h0]
    mask = tf.constant(MASKS["holes"])
    assert not MASKS["holes"][1].any()  # row 1 is an empty document
    handed = []

    def cudnn_like_loop(sequences, initial_state, loop_mask, training):
        handed.append(loop_mask)
        return stock.inner_loop(sequences, initial_state, loop_mask, training)

    def results_and_gradients(loop):
        with tf.GradientTape() as tape:
            tape.watch([x, *initial])
            last, seq, states = loop(x, initial, mask, False)
            loss = (tf.reduce_sum(tf.sin(seq)) + tf.reduce_sum(last * last)
                    + sum(tf.reduce_sum(tf.cos(state)) for state in states))
        return [last, seq, *states], tape.gradient(loss, [x, *initial,
                                                          *stock.trainable_weights])

    got, got_grads = results_and_gradients(
        lambda *args: keras_loop_with_empty_rows(cudnn_like_loop, *args))
    expected, expected_grads = results_and_gradients(stock.inner_loop)  # the generic loop
    assert len(handed) == 1 and bool(tf.reduce_all(tf.reduce_any(handed[0], axis=1)))
    np.testing.assert_array_equal(handed[0][0], MASKS["holes"][0])  # other rows untouched
    for a, e in zip(got + got_grads, expected + expected_grads):
        assert_close(a, e, f"{cell} go_backwards={go_backwards}")
    assert not np.any(np.asarray(got[1])[1]) and not np.any(np.asarray(got[0])[1])
    for state, start in zip(got[2:], initial):
        np.testing.assert_array_equal(state[1], start[1])


def test_mixed_precision_keeps_float32_states(tf):
    """bfloat16 projection, float32 loop: close to the float32 layer, not equal."""
    import keras

    from textclf.models.fused_lstm import FusedLSTM

    x = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
    exact = FusedLSTM(U, return_sequences=True)
    mixed = FusedLSTM(U, return_sequences=True, dtype="mixed_bfloat16")
    exact.build((None, None, D))
    mixed.build((None, None, D))
    mixed.set_weights(exact.get_weights())
    out = mixed(x, mask=MASKS["right"])
    assert out.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(tf.cast(out, "float32")),
                               np.asarray(exact(x, mask=MASKS["right"])), atol=0.03)
    assert keras.config.dtype_policy().name == "float32"  # the layer's own policy only


def test_mixed_precision_gradients_stay_close_to_float32(tf):
    """Under mixed_bfloat16 the projection's gradients come from bfloat16
    matmuls (dU from a float32 one): within bfloat16's rounding of the
    float32 layer's gradients, and not equal to them."""
    from textclf.models.fused_lstm import FusedLSTM

    rng = np.random.default_rng(4)
    x = rng.normal(size=(B, T, D)).astype("float32")
    exact = FusedLSTM(U, return_sequences=True)
    mixed = FusedLSTM(U, return_sequences=True, dtype="mixed_bfloat16")
    exact.build((None, None, D))
    mixed.build((None, None, D))
    mixed.set_weights(exact.get_weights())
    gradients = []
    for layer in (exact, mixed):
        with tf.GradientTape() as tape:
            out = tf.cast(layer(x, mask=MASKS["right"], training=True), "float32")
            loss = tf.reduce_sum(tf.sin(out) * np.linspace(0.5, 1.5, U))
        gradients.append(tape.gradient(loss, layer.trainable_weights))
    for name, want, got in zip(("kernel", "recurrent_kernel", "bias"), *gradients):
        want, got = np.asarray(want), np.asarray(got)
        error = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert 0 < error < 0.02, f"{name}: relative difference {error:.2e}"  # seen: <= 0.007


def test_model_builder_choice_and_saved_model_round_trip(tf, tmp_path):
    import keras

    from textclf.config import ModelConfig
    from textclf.models import build_model
    from textclf.models.fused_lstm import FusedLSTM

    options = dict(type="rnn", cell="lstm", units=6, embedding_dim=8, bidirectional=True)
    keras.utils.set_random_seed(1)
    fused_model = build_model(ModelConfig(**options), vocab_size=30, n_classes=3)
    keras.utils.set_random_seed(1)
    stock_model = build_model(ModelConfig(**options, cpu_loop="keras"), vocab_size=30,
                              n_classes=3)
    assert isinstance(fused_model.get_layer("rnn_1").forward_layer, FusedLSTM)
    assert type(stock_model.get_layer("rnn_1").forward_layer) is keras.layers.LSTM
    ids = np.array([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [0] * 5], dtype=np.int32)
    np.testing.assert_allclose(fused_model.predict(ids, verbose=0),
                               stock_model.predict(ids, verbose=0), atol=1e-6)
    path = tmp_path / "model.keras"
    fused_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("rnn_1").backward_layer, FusedLSTM)
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0),
                                  fused_model.predict(ids, verbose=0))


def test_numpy_reference_reads_a_fused_layer(tf):
    """The reference nets take FusedLSTM's weights as an LSTM's, and agree."""
    from textclf.models.fused_lstm import FusedLSTM
    from textclf.reference.keras_weights import (build_recurrent, recurrent_params,
                                                 recurrent_spec)

    layer = FusedLSTM(U, return_sequences=True, go_backwards=True, dtype="float64")
    layer.build((None, None, D))
    spec = recurrent_spec(layer)
    assert spec["cell"] == "lstm" and spec["go_backwards"]
    x, _, _ = random_inputs(2)
    mask = MASKS["holes"]
    outputs = build_recurrent(spec).forward(recurrent_params(layer), x, mask)[0]
    np.testing.assert_allclose(outputs, np.asarray(layer(x, mask=mask)), atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_fresh_process_loads_and_predicts_with_a_fused_run(tmp_path, cell):
    """`textclf predict` in a new process: FusedLSTM and FusedGRU must be
    registered before the run's model.keras is read (in-process tests have
    them imported already)."""
    import subprocess
    import sys

    from conftest import train_tiny_lstm_run

    run_dir = train_tiny_lstm_run(tmp_path, cell)
    (tmp_path / "docs.txt").write_text("alpha beta\n\ngamma\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "textclf.cli", "predict", str(run_dir),
                           str(tmp_path / "docs.txt"), "--format", "tsv"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4  # a header, then one line per input line
