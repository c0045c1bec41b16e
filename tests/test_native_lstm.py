"""textclf's native LSTM ops (textclf/kernels) against Keras, the graph loop
and the NumPy reference.

The ops run in float32 only, so the ground truth is the float64 stock layer
(or the float64 reference net) with the same weights: every output and
gradient must agree to 2e-5 relative to the largest value of its tensor.
float32 rounds each operation to about 6e-8; the tolerance leaves room for
seven steps of rounding, summed gradients and the sigmoid computed from tanh,
and is still far below what any wrong term of the backward pass gives
(those differ by 1e-2 or more). The loader and the build script are tested
without a compiled library.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import RNN_B, RNN_D, RNN_MASKS, RNN_T, RNN_U

B, T, D, U = RNN_B, RNN_T, RNN_D, RNN_U
MASKS = {**RNN_MASKS, "left": ~RNN_MASKS["right"]}  # padding first, as go_backwards sees it
TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def tf():
    from textclf.runtime import import_tensorflow

    return import_tensorflow()


@pytest.fixture(scope="module")
def ops(tf):
    from textclf.kernels import native_ops

    loaded = native_ops()
    if loaded is None:
        from textclf.kernels import unusable_because

        pytest.skip(f"native kernels unusable: {unusable_because(tf.__version__)}")
    return loaded


def assert_close(actual, expected, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0)))
    error = float(np.max(np.abs(actual - expected), initial=0)) / scale
    assert error < TOLERANCE, f"{what}: relative difference {error:.2e}"


def layers_with_the_same_weights(units=U, draw=None, **options):
    """A float64 keras.layers.LSTM and a float32 FusedLSTM on the native ops,
    with weights ``draw(shape)`` (default: N(0, 0.7), each from seed 3)."""
    import keras

    from textclf.models.fused_lstm import FusedLSTM

    if draw is None:
        def draw(shape):
            return np.random.default_rng(3).normal(0, 0.7, size=shape)
    stock = keras.layers.LSTM(units, return_sequences=True, return_state=True, dtype="float64",
                              **options)
    native = FusedLSTM(units, return_sequences=True, return_state=True, **options)
    native.native_loop = True
    for layer in (stock, native):
        layer.build((None, None, D))
    weights = [draw(w.shape) for w in stock.get_weights()]
    stock.set_weights(weights)
    native.set_weights([w.astype("float32") for w in weights])
    return stock, native


def outputs_and_gradients(tf, layer, x, mask, h0, c0, training):
    """(seq, h, c) and d(loss)/d(x, h0, c0, *weights) for a loss reading every output."""
    dtype = layer.compute_dtype
    x, h0, c0 = (tf.constant(a, dtype) for a in (x, h0, c0))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        seq, h, c = layer(x, mask=None if mask is None else tf.constant(mask),
                          initial_state=[h0, c0], training=training)
        loss = (tf.reduce_sum(tf.sin(seq) * tf.cast(np.linspace(0.5, 1.5, U), dtype))
                + tf.reduce_sum(h * h) + tf.reduce_sum(tf.cos(c)))
    return [seq, h, c], tape.gradient(loss, [x, h0, c0, *layer.trainable_weights])


def random_inputs(batch=B, steps=T, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, steps, D)), rng.normal(0, 0.5, size=(batch, U)),
            rng.normal(0, 0.5, size=(batch, U)))


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("training", [True, False], ids=["recorded", "lean-forward"])
def test_matches_keras_outputs_and_gradients(tf, ops, mask_name, go_backwards, training):
    """training=False: the forward op without records, whose gradient reruns it
    with records (``textclf check --gradients`` differentiates that path)."""
    stock, native = layers_with_the_same_weights(go_backwards=go_backwards)
    x, h0, c0 = random_inputs()
    mask = MASKS[mask_name]
    expected = outputs_and_gradients(tf, stock, x, mask, h0, c0, training)
    actual = outputs_and_gradients(tf, native, x, mask, h0, c0, training)
    names = ["outputs", "h", "c", "d/dx", "d/dh0", "d/dc0", "d/dkernel",
             "d/drecurrent_kernel", "d/dbias"]
    for name, a, e in zip(names, actual[0] + actual[1], expected[0] + expected[1]):
        assert a is not None and e is not None, name
        assert_close(a, e, name)


@pytest.mark.parametrize("training,entry", [(False, "native_lstm"),
                                            (True, "native_lstm_training")])
def test_the_native_path_is_the_one_taken(tf, ops, monkeypatch, training, entry):
    """Guards the comparisons above: with the ops made to fail, the layer
    fails (training runs the variant that includes the input projection)."""
    from textclf.kernels import native_lstm_available
    from textclf.models import fused_lstm

    assert native_lstm_available("float32") and not native_lstm_available("float64")
    _, native = layers_with_the_same_weights()
    x, h0, c0 = random_inputs()

    def broken(*args, **kwargs):
        raise RuntimeError("native op called")

    monkeypatch.setattr(fused_lstm, entry, broken)
    with pytest.raises(RuntimeError, match="native op called"):
        native(x.astype("float32"), training=training)
    native.native_loop = False  # the graph loop does not call it
    native(x.astype("float32"), training=training)


def test_runtime_names_the_loop_an_lstm_runs(tf, ops):
    """What `train` logs, and what decides the thread setting (textclf.runtime)."""
    from textclf.config import ModelConfig
    from textclf.runtime import cpu_lstm_loop

    assert cpu_lstm_loop(ModelConfig(type="rnn", cell="lstm")) == "native ops"
    assert cpu_lstm_loop(ModelConfig(type="rnn", cell="gru")) is None
    assert cpu_lstm_loop(ModelConfig(type="rnn", cell="lstm", cpu_loop="keras")) is None
    assert cpu_lstm_loop(ModelConfig(type="cnn")) is None


@pytest.mark.parametrize("batch,steps", [(1, 6), (3, 2), (40, 9)])
def test_batch_sizes_and_row_blocks_inside_a_tf_function(tf, ops, batch, steps):
    """B = 1 and 3 (one row block: fewer rows than a block's minimum) and 40
    (one block per thread), inside a tf.function as Keras trains."""
    stock, native = layers_with_the_same_weights()
    x, h0, c0 = random_inputs(batch, steps, seed=batch)
    mask = np.random.default_rng(batch).random((batch, steps)) > 0.3

    @tf.function
    def run(layer):
        return outputs_and_gradients(tf, layer, x, mask, h0, c0, training=True)

    (e_out, e_grads), (a_out, a_grads) = run(stock), run(native)
    for k, (a, e) in enumerate(zip(a_out + a_grads, e_out + e_grads)):
        assert_close(a, e, f"B={batch} T={steps} tensor {k}")


@pytest.mark.parametrize("units", [17, 40])
def test_widths_over_several_packed_panels_and_unaligned_rows(tf, ops, units):
    """The per-step products run on the recurrent kernel packed in panels of
    up to 32 columns, tiles of up to 8 rows: 4U = 68 and 160 columns take
    several panels, the last one partly padding, and U = 17 puts the rows the
    ops stream out at addresses that are not 64-byte aligned. Batch 21 gives
    each thread's block full tiles and a remainder."""
    rng = np.random.default_rng(units)
    stock, native = layers_with_the_same_weights(
        units, draw=lambda shape: rng.normal(0, 0.3, size=shape))
    batch, steps = 21, 6
    x = rng.normal(size=(batch, steps, D))
    mask = rng.random((batch, steps)) > 0.25
    readout = np.linspace(0.5, 1.5, units)

    def run(layer):
        xt = tf.constant(x, layer.compute_dtype)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            seq, h, c = layer(xt, mask=tf.constant(mask), training=True)
            loss = (tf.reduce_sum(tf.sin(seq) * tf.cast(readout, layer.compute_dtype))
                    + tf.reduce_sum(h * c))
        return [seq, h, c, *tape.gradient(loss, [xt, *layer.trainable_weights])]

    for k, (a, e) in enumerate(zip(run(native), run(stock))):
        assert_close(a, e, f"U={units} tensor {k}")


def test_numpy_reference_agrees_forward_and_backward(tf, ops):
    """The reference net (float64) with the layer's weights: outputs, the
    input gradient and every weight gradient for an upstream gradient dy."""
    from textclf.reference.keras_weights import build_recurrent, recurrent_params, recurrent_spec

    _, native = layers_with_the_same_weights()
    x, _, _ = random_inputs(seed=5)
    mask = MASKS["holes"]
    dy = np.random.default_rng(6).normal(size=(B, T, U))
    params = {k: v.astype(np.float64) for k, v in recurrent_params(native).items()}
    net = build_recurrent(recurrent_spec(native))
    outputs, _, cache = net.forward(params, x, mask)
    grads, dx, _ = net.backward(params, dy, cache)
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        seq = native(xt, mask=tf.constant(mask), training=True)[0]
        loss = tf.reduce_sum(seq * tf.constant(dy, tf.float32))
    actual_dx, *actual_grads = tape.gradient(loss, [xt, *native.trainable_weights])
    assert_close(seq, outputs, "outputs")
    assert_close(actual_dx, dx, "dx")
    for name, got in zip(("kernel", "recurrent_kernel", "bias"), actual_grads):
        assert_close(got, grads[name], f"d/d{name}")


def test_ops_with_zero_steps_and_without_records(tf, ops):
    """T = 0 gives empty outputs and the initial states back; record=False
    gives empty records and the same outputs."""
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(U, 4 * U)), tf.float32)
    bias = tf.zeros([4 * U])
    h0, c0 = (tf.constant(rng.normal(size=(B, U)), tf.float32) for _ in range(2))
    out, h, c, gates, cells = ops.textclf_lstm_forward(
        tf.zeros([B, 0, 4 * U]), bias, kernel, h0, c0, tf.zeros([B, 0]))
    assert out.shape == (B, 0, U) and gates.shape == (0, B, 4 * U) and cells.shape == (0, B, U)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, c0)
    d_projected, d_bias, d_h0, d_c0 = ops.textclf_lstm_backward(
        tf.zeros([B, 0, U]), h0, c0, kernel, c0, tf.zeros([B, 0]), gates, cells)
    assert d_projected.shape == (B, 0, 4 * U)
    np.testing.assert_array_equal(d_bias, np.zeros(4 * U))
    np.testing.assert_array_equal(d_h0, h0)  # passed straight through
    np.testing.assert_array_equal(d_c0, c0)
    projected = tf.constant(rng.normal(size=(B, T, 4 * U)), tf.float32)
    mask = tf.constant(MASKS["holes"], tf.float32)
    recorded = ops.textclf_lstm_forward(projected, bias, kernel, h0, c0, mask, record=True)
    lean = ops.textclf_lstm_forward(projected, bias, kernel, h0, c0, mask, record=False)
    assert [tuple(t.shape) for t in lean[3:]] == [(0, B, 4 * U), (0, B, U)]
    for a, e in zip(lean[:3], recorded[:3]):
        np.testing.assert_array_equal(a, e)


def h_before_each_step(outputs, h0, mask):
    """NumPy: h before step t is outputs[t - 1] once a real step came before
    it, else h0 (row by row, step by step)."""
    h_prev = np.empty_like(outputs)
    for b in range(outputs.shape[0]):
        started = False
        for t in range(outputs.shape[1]):
            h_prev[b, t] = outputs[b, t - 1] if started else h0[b]
            started = started or mask[b, t] > 0
    return h_prev


@pytest.mark.parametrize("batch,steps,width,units", [
    (7, 90, 130, 40), (5, 7, 13, 17), (1, 3, 3, 4), (0, 5, 3, 4), (4, 0, 3, 4)])
def test_gradients_op_over_all_steps(tf, ops, batch, steps, width, units):
    """d_inputs = d_z kernel^T, d_kernel = x^T d_z and d_recurrent =
    h_prev^T d_z over the B*T steps, against float64 NumPy, with h_prev read
    from the outputs, h0 and a mask whose rows start late, have holes, or
    have no real step at all. 630 steps span
    several 128-step chunks (the last partial) and one block per thread; 35
    and 3 steps fewer than a chunk (3: one block); none at all gives zeros.
    Widths 130, 13 and 3 leave partial 8-row tiles and partial 32-column
    panels of d_inputs, and 4U = 160, 68 and 16 partial panels of the
    weights' gradients. The big case runs first, so the smaller ones reuse
    its larger packing buffers."""
    rng = np.random.default_rng(batch * 1000 + width)
    x, outputs, d_z = (rng.normal(size=(batch, steps, n)) for n in (width, units, 4 * units))
    h0 = rng.normal(size=(batch, units))
    mask = (rng.random((batch, steps)) < 0.7).astype(float)
    mask[:, :steps // 3] = 0  # a late start
    if batch > 1:
        mask[1] = 0  # no real step: h0 throughout
    h_prev = h_before_each_step(outputs, h0, mask)
    kernel = rng.normal(size=(width, 4 * units))
    d_inputs, d_kernel, d_recurrent = ops.textclf_lstm_gradients(
        *(tf.constant(a, tf.float32) for a in (x, outputs, h0, mask, d_z, kernel)))

    def summed(a):
        return a.reshape(-1, a.shape[-1]).T @ d_z.reshape(-1, 4 * units)

    assert_close(d_inputs, d_z @ kernel.T, "d_inputs")
    assert_close(d_kernel, summed(x), "d_kernel")
    assert_close(d_recurrent, summed(h_prev), "d_recurrent")


def test_h_before_each_step_follows_the_outputs_rule(tf):
    """The TensorFlow version (the matmul path's dU under bfloat16) equals the
    NumPy rule the gradients op is tested against, on every kind of row."""
    from textclf.models.fused_lstm import h_before_each_step as in_tensorflow

    rng = np.random.default_rng(5)
    outputs, h0 = rng.normal(size=(4, 9, 3)), rng.normal(size=(4, 3))
    mask = np.array([[1] * 9, [0, 0, 1, 1, 0, 1, 1, 1, 0], [0] * 9, [1] + [0] * 8], float)
    got = in_tensorflow(*(tf.constant(a, tf.float64) for a in (outputs, h0, mask)))
    np.testing.assert_array_equal(got, h_before_each_step(outputs, h0, mask))


def test_ops_reject_inconsistent_shapes(tf, ops):
    kernel, bias = tf.zeros([U, 4 * U]), tf.zeros([4 * U])
    state = tf.zeros([B, U])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"mask must be \(B, T\)"):
        ops.textclf_lstm_forward(tf.zeros([B, T, 4 * U]), bias, kernel, state, state,
                                 tf.zeros([B, T + 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"kernel must be \(U, 4U\)"):
        ops.textclf_lstm_forward(tf.zeros([B, T, 4 * U]), bias, tf.zeros([U, 3 * U]), state,
                                 state, tf.zeros([B, T]))
    for h0, mask, d_projected, kernel in [
            ([B, U], [B, T], [B, T + 1, 4 * U], [D, 4 * U]),
            ([B, U], [B, T], [B, T, 4 * U], [U, 4 * U]),
            ([B + 1, U], [B, T], [B, T, 4 * U], [D, 4 * U]),
            ([B, U], [B, T + 1], [B, T, 4 * U], [D, 4 * U])]:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"outputs must be \(B, T, U\), h0 \(B, U\), mask \(B, T\), "
                                 r"d_projected \(B, T, 4U\) and kernel \(D, 4U\)"):
            ops.textclf_lstm_gradients(tf.zeros([B, T, D]), tf.zeros([B, T, U]), tf.zeros(h0),
                                       tf.zeros(mask), tf.zeros(d_projected), tf.zeros(kernel))


def test_mixed_precision_uses_the_native_loop_in_float32(tf, ops):
    """bfloat16 projection, float32 native loop: within bfloat16's rounding of
    the float32 graph loop's outputs."""
    from textclf.models.fused_lstm import FusedLSTM

    x = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
    graph = FusedLSTM(U, return_sequences=True)
    mixed = FusedLSTM(U, return_sequences=True, dtype="mixed_bfloat16")
    graph.native_loop = False
    for layer in (graph, mixed):
        layer.build((None, None, D))
    mixed.set_weights(graph.get_weights())
    out = mixed(x, mask=MASKS["right"])
    assert out.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(tf.cast(out, "float32")),
                               np.asarray(graph(x, mask=MASKS["right"])), atol=0.03)


# --- the loader and the build script, with or without a compiled library ------

def test_loader_names_why_a_library_cannot_be_used(tmp_path, monkeypatch):
    from textclf import kernels

    library, info = tmp_path / "lib.so", tmp_path / "lib.json"
    monkeypatch.setattr(kernels, "LIBRARY", library)
    monkeypatch.setattr(kernels, "BUILD_INFO", info)
    monkeypatch.delenv(kernels.SWITCH, raising=False)
    assert "not built" in kernels.unusable_because("2.21.0")
    library.write_bytes(b"")
    assert "missing or unreadable" in kernels.unusable_because("2.21.0")
    info.write_text(json.dumps({"tensorflow": "2.20.0", "cpu_flags": []}))
    assert "built for TensorFlow 2.20.0, running 2.21.0" in kernels.unusable_because("2.21.0")
    info.write_text(json.dumps({"tensorflow": "2.21.0", "cpu_flags": ["no_such_flag"]}))
    monkeypatch.setattr(kernels, "cpu_flags", lambda: {"sse2"})
    assert "no_such_flag, which this one lacks" in kernels.unusable_because("2.21.0")
    info.write_text(json.dumps({"tensorflow": "2.21.0", "cpu_flags": ["sse2"]}))
    assert kernels.unusable_because("2.21.0") is None
    monkeypatch.setenv(kernels.SWITCH, "0")
    assert kernels.unusable_because("2.21.0") == f"{kernels.SWITCH}=0"


def test_switching_the_kernels_off_runs_the_graph_loop():
    """TEXTCLF_NATIVE_KERNELS=0 in a fresh process: native_ops() is None, silently."""
    code = ("from textclf.kernels import native_ops; from textclf.runtime import "
            "import_tensorflow; import_tensorflow(); print(native_ops())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "TEXTCLF_NATIVE_KERNELS": "0"},
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "None"
    assert "native LSTM kernels" not in run.stderr


def test_build_without_a_compiler_is_not_an_error_unless_required(monkeypatch, capsys):
    from textclf.kernels import build

    monkeypatch.setenv("CXX", "no-such-compiler-textclf")
    monkeypatch.setattr(build, "up_to_date", lambda: False)
    assert build.main([]) == 0
    assert "no C++ compiler found" in capsys.readouterr().err
    assert build.main(["--require"]) == 1


def test_build_command_uses_tensorflows_flags(tf):
    from textclf.kernels import build

    command = build.compile_command("out.so")
    assert "-march=native" in command and "-shared" in command
    assert set(tf.sysconfig.get_compile_flags()) <= set(command)
    assert set(tf.sysconfig.get_link_flags()) <= set(command)
    assert command[command.index("-o") + 1] == "out.so"


def test_bench_lstm_times_the_ops_alone(tf, ops, capsys):
    """``scripts/bench_lstm.py --ops``, whose numbers the README quotes, runs
    the op variants at a tiny size and reports each."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import bench_lstm

    assert bench_lstm.main(["--ops", "--batch", "3", "--steps", "4", "--units", "5",
                            "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "us/step" in line]
    names = ["forward, with records", "forward, lean", "backward", "dX, dW, dU: op",
             "dX, dW, dU: matmuls"]
    assert len(rows) == 5 and all(name in row for name, row in zip(names, rows)), rows


PORTABLE_RUN = """
import sys
import numpy as np
import tensorflow as tf
ops = tf.load_op_library(sys.argv[1])
data = np.load(sys.argv[2])
forward = ops.textclf_lstm_forward(data["projected"], data["bias"], data["kernel"], data["h0"],
                                   data["c0"], data["mask"])
backward = ops.textclf_lstm_backward(data["d_outputs"], data["h0"], data["c0"], data["kernel"],
                                     data["c0"], data["mask"], forward[3], forward[4])
gradients = ops.textclf_lstm_gradients(data["inputs"], forward[0], data["h0"], data["mask"],
                                       backward[0], data["w"])
np.savez(sys.argv[3], *[t.numpy() for t in (*forward, *backward, *gradients)])
"""


@pytest.mark.parametrize("flags", [["-mno-avx512f"], ["-mno-avx"]], ids=["avx2", "sse"])
def test_builds_for_older_cpus_compute_the_same(tf, ops, tmp_path, flags):
    """The per-step product and the gradients op's tiles have an
    AVX-512, an AVX2 and a plain C++ version, chosen by the build's CPU
    flags, and the AVX-512 build also has a tanh of its own (a reciprocal
    instead of Eigen's division); this machine's build runs one of them.
    The library built without AVX-512 (and without AVX at all), run in a
    process of its own (two builds cannot register the same ops in one),
    must give the same outputs and gradients as this process's build, at a
    size with several panels, tile remainders and unaligned rows."""
    import os
    import shutil

    from textclf.kernels import build

    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler")
    command = build.compile_command(tmp_path / "variant.so")
    after_march = command.index("-march=native") + 1
    command[after_march:after_march] = flags  # later flags win over -march=native's
    subprocess.run(command, check=True, capture_output=True)

    rng = np.random.default_rng(11)
    batch, steps, units = 21, 5, 17
    data = {"projected": rng.normal(0, 0.5, (batch, steps, 4 * units)),
            "bias": rng.normal(0, 0.1, 4 * units), "kernel": rng.normal(0, 0.3, (units, 4 * units)),
            "h0": rng.normal(0, 0.5, (batch, units)), "c0": rng.normal(0, 0.5, (batch, units)),
            "mask": (rng.random((batch, steps)) > 0.25).astype(float),
            "d_outputs": rng.normal(size=(batch, steps, units)),
            "inputs": rng.normal(size=(batch, steps, 13)), "w": rng.normal(size=(13, 4 * units))}
    data = {k: v.astype(np.float32) for k, v in data.items()}
    np.savez(tmp_path / "inputs.npz", **data)
    subprocess.run([sys.executable, "-c", PORTABLE_RUN, str(tmp_path / "variant.so"),
                    str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")],
                   check=True, capture_output=True)
    variant = np.load(tmp_path / "outputs.npz")
    forward = ops.textclf_lstm_forward(data["projected"], data["bias"], data["kernel"],
                                       data["h0"], data["c0"], data["mask"])
    backward = ops.textclf_lstm_backward(data["d_outputs"], data["h0"], data["c0"],
                                         data["kernel"], data["c0"], data["mask"], forward[3],
                                         forward[4])
    gradients = ops.textclf_lstm_gradients(data["inputs"], forward[0], data["h0"], data["mask"],
                                           backward[0], data["w"])
    for k, expected in enumerate((*forward, *backward, *gradients)):
        assert_close(variant[f"arr_{k}"], expected.numpy(), f"{flags} output {k}")
