"""The NumPy recurrent layers against Keras (float64) and against finite differences.

Three tiers: golden values with constant initialisers; reference vs Keras over
cells x masks x directions (outputs, final states and every gradient by
``tf.GradientTape``); central-difference checks with weights of scale 0.5,
non-zero initial states and masks with holes, which must also catch a
deliberately broken backward pass.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from textclf.reference.gradcheck import check_gradients
from textclf.reference.gru import GRUCell
from textclf.reference.keras_weights import (build_recurrent, recurrent_params, recurrent_spec,
                                             set_recurrent_params)
from textclf.reference.lstm import LSTMCell
from textclf.reference.recurrent import Bidirectional, Recurrent
from textclf.reference.rnn import SimpleRNNCell

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

B, T, D, U = 3, 6, 4, 5
F64 = dict(rtol=1e-10, atol=1e-12)

# (B, T) masks; each has a fully masked row or a hole somewhere.
MASKS = {
    "none": None,
    "right": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool),
    "left": np.array([[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1]], bool),
    "holes": np.array([[1, 0, 1, 1, 0, 1], [0, 1, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1]], bool),
}

CELLS = {  # name -> (keras layer class, options, reference cell factory)
    "simple_rnn_tanh": ("SimpleRNN", {}, lambda: SimpleRNNCell(U, "tanh")),
    "simple_rnn_relu": ("SimpleRNN", {"activation": "relu"}, lambda: SimpleRNNCell(U, "relu")),
    "lstm": ("LSTM", {}, lambda: LSTMCell(U)),
    "gru_reset_after": ("GRU", {}, lambda: GRUCell(U, reset_after=True)),
    "gru_reset_before": ("GRU", {"reset_after": False}, lambda: GRUCell(U, reset_after=False)),
}


def keras_layer(cell: str, dtype="float64", **options):
    class_name, cell_options, _ = CELLS[cell]
    layer_class = getattr(keras.layers, class_name)
    return layer_class(U, return_sequences=True, dtype=dtype, **cell_options, **options)


def randomise(layer, rng, scale=0.5):
    """Every weight ~ N(0, scale^2): far from the near-linear regime of tiny weights."""
    for var in layer.weights:
        var.assign(rng.normal(scale=scale, size=var.shape))


def n_states(cell: str) -> int:
    return 2 if cell == "lstm" else 1


# --- golden values -------------------------------------------------------------

# x = ones (1, 3, 2), U = 3, kernel 0.125, recurrent kernel 0.25, bias 0.375
# (exact in float32: Keras' Constant initializer rounds through float32; LSTM's
# unit_forget_bias makes the f block 1.0). Every unit follows the same scalar
# recursion, computed by hand with math.tanh and 1 / (1 + math.exp(-v)):
#   simple_rnn: h' = tanh(0.625 + 0.75 h)
#   lstm: i = o = s(0.625 + 0.75 h), f = s(1.25 + 0.75 h), g = tanh(0.625 + 0.75 h)
#   gru: z = r = s(1 + 0.75 h), hh = tanh(0.625 + r (0.75 h + 0.375))
GOLDEN = {
    "simple_rnn_tanh": [0.5545997223493823, 0.7782628529773825, 0.8362882471653194],
    "lstm": [0.2255686657310424, 0.4357819729694686, 0.5906081376722657],
    "gru_reset_after": [0.1925303924753382, 0.33186228233854154, 0.43709857100570626],
}


@pytest.mark.parametrize("cell", sorted(GOLDEN))
def test_golden_values_with_constant_initialisers(cell):
    class_name, options, _ = CELLS[cell]
    layer = getattr(keras.layers, class_name)(
        3, return_sequences=True, dtype="float64", **options,
        kernel_initializer=keras.initializers.Constant(0.125),
        recurrent_initializer=keras.initializers.Constant(0.25),
        bias_initializer=keras.initializers.Constant(0.375))
    x = np.ones((1, 3, 2))
    expected = np.repeat(np.array(GOLDEN[cell])[None, :, None], 3, axis=2)
    keras_out = np.asarray(layer(x))
    reference = build_recurrent(recurrent_spec(layer))
    ours, _, _ = reference.forward(recurrent_params(layer), x)
    np.testing.assert_allclose(keras_out, expected, rtol=1e-14, err_msg=f"keras {cell}")
    np.testing.assert_allclose(ours, expected, rtol=1e-14, err_msg=f"reference {cell}")


# --- reference vs Keras, float64 ------------------------------------------------------

def _keras_run(layer, x, mask, states, weight_grads: dict):
    """Keras outputs, final states and gradients of a fixed random projection."""
    xt = tf.constant(x)
    st = [tf.constant(s) for s in states]
    variables = [v.value for v in weight_grads.values()]
    rng = np.random.default_rng(7)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        tape.watch(st)
        result = layer(xt, mask=None if mask is None else tf.constant(mask),
                       initial_state=st if len(st) > 1 else st[0])
        y, finals = result[0], result[1:]
        g_y = rng.normal(size=y.shape)
        g_s = [rng.normal(size=s.shape) for s in finals]
        loss = tf.reduce_sum(y * g_y) + sum(tf.reduce_sum(s * g) for s, g in zip(finals, g_s))
    grads = tape.gradient(loss, [xt] + st + variables)
    grads = [tf.convert_to_tensor(g).numpy() for g in grads]
    return (np.asarray(y), [np.asarray(s) for s in finals], g_y, g_s,
            grads[0], grads[1:1 + len(st)], dict(zip(weight_grads, grads[1 + len(st):])))


def _compare(reference, params, layer_vars, layer, x, mask, states, label):
    y_k, finals_k, g_y, g_s, dx_k, ds_k, dw_k = _keras_run(layer, x, mask, states, layer_vars)
    y, finals, cache = reference.forward(params, x, mask, tuple(states))
    np.testing.assert_allclose(y, y_k, **F64, err_msg=f"{label}: outputs")
    for k, (ours, theirs) in enumerate(zip(finals, finals_k)):
        np.testing.assert_allclose(ours, theirs, **F64, err_msg=f"{label}: final state {k}")
    grads, dx, ds = reference.backward(params, g_y, cache, tuple(g_s))
    np.testing.assert_allclose(dx, dx_k, **F64, err_msg=f"{label}: d inputs")
    for k, (ours, theirs) in enumerate(zip(ds, ds_k)):
        np.testing.assert_allclose(ours, theirs, **F64, err_msg=f"{label}: d initial state {k}")
    assert sorted(grads) == sorted(dw_k)
    for name in grads:
        np.testing.assert_allclose(grads[name], dw_k[name], **F64, err_msg=f"{label}: d {name}")


def _layer_variables(layer):
    from textclf.reference.keras_weights import _recurrent_variables
    return _recurrent_variables(layer)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "go_backwards"])
@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_matches_keras_float64(cell, mask, go_backwards):
    rng = np.random.default_rng(zlib.crc32(f"{cell}/{mask}/{go_backwards}".encode()))
    layer = keras_layer(cell, go_backwards=go_backwards, return_state=True)
    layer.build((B, T, D))
    randomise(layer, rng)
    x = rng.normal(size=(B, T, D))
    states = [rng.normal(scale=0.5, size=(B, U)) for _ in range(n_states(cell))]
    reference = build_recurrent(recurrent_spec(layer))
    assert reference.go_backwards == go_backwards
    _compare(reference, recurrent_params(layer), _layer_variables(layer), layer, x,
             MASKS[mask], states, f"{cell}/{mask}/{go_backwards}")


# Every cell with concat (what the models use); the other merge modes, which do
# not depend on the cell, once each.
BIDIRECTIONAL_CASES = [(cell, "concat") for cell in sorted(CELLS)] + [
    ("lstm", "sum"), ("gru_reset_after", "ave"), ("simple_rnn_relu", "mul")]


@pytest.mark.parametrize("cell, merge_mode", BIDIRECTIONAL_CASES)
def test_bidirectional_matches_keras_float64(cell, merge_mode):
    rng = np.random.default_rng(len(cell) * 10 + len(merge_mode))
    layer = keras.layers.Bidirectional(keras_layer(cell, return_state=True),
                                       merge_mode=merge_mode, dtype="float64")
    layer.build((B, T, D))
    randomise(layer, rng)
    x = rng.normal(size=(B, T, D))
    states = [rng.normal(scale=0.5, size=(B, U)) for _ in range(2 * n_states(cell))]
    reference = build_recurrent(recurrent_spec(layer))
    assert isinstance(reference, Bidirectional)
    _compare(reference, recurrent_params(layer), _layer_variables(layer), layer, x,
             MASKS["holes"], states, f"bidirectional {cell}/{merge_mode}")


def test_set_recurrent_params_round_trip():
    rng = np.random.default_rng(3)
    layer = keras.layers.Bidirectional(keras_layer("gru_reset_after"), dtype="float64")
    layer.build((B, T, D))
    params = {k: rng.normal(size=v.shape) for k, v in recurrent_params(layer).items()}
    assert params["forward/bias"].shape == (2, 3 * U)  # GRU reset_after: two bias rows
    set_recurrent_params(layer, params)
    for name, value in recurrent_params(layer).items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)
    with pytest.raises(ValueError, match="expected shape"):
        set_recurrent_params(layer, {**params, "backward/bias": params["backward/bias"][0]})


def test_masked_outputs_repeat_or_zero_as_keras():
    """The masking rule itself, on a case small enough to read."""
    cell = SimpleRNNCell(1, "linear")
    params = {"kernel": np.ones((1, 1)), "recurrent_kernel": np.ones((1, 1)), "bias": np.zeros(1)}
    x = np.array([[[1.0], [2.0], [4.0], [8.0]]])
    mask = np.array([[False, True, False, True]])
    h0 = (np.array([[10.0]]),)
    y, (h,), _ = Recurrent(cell).forward(params, x, mask, h0)
    # step 0 masked: output 0, state 10; step 1: 12; step 2 masked: repeat 12; step 3: 20
    np.testing.assert_array_equal(y[0, :, 0], [0.0, 12.0, 12.0, 20.0])
    assert h[0, 0] == 20.0
    y0, _, _ = Recurrent(cell, zero_output_for_mask=True).forward(params, x, mask, h0)
    np.testing.assert_array_equal(y0[0, :, 0], [0.0, 12.0, 0.0, 20.0])
    yb, _, _ = Recurrent(cell, go_backwards=True).forward(params, x, mask, h0)
    # processing order 8, 4, 2, 1 with mask T, F, T, F: 18, 18, 20, 20
    np.testing.assert_array_equal(yb[0, :, 0], [18.0, 18.0, 20.0, 20.0])


# --- central differences ------------------------------------------------------------

def _gradcheck_problem(layer, cell_name, rng, mask):
    """params (weights, inputs, initial states) at scale 0.5 and a scalar loss of them."""
    n = n_states(cell_name) * (2 if isinstance(layer, Bidirectional) else 1)
    params = {"x": rng.normal(size=(B, T, D))}
    params.update({f"s{k}": rng.normal(scale=0.5, size=(B, U)) for k in range(n)})
    if isinstance(layer, Bidirectional):
        for side in ("forward", "backward"):
            for name, shape in _shapes(cell_name).items():
                params[f"{side}/{name}"] = rng.normal(scale=0.5, size=shape)
    else:
        params.update({name: rng.normal(scale=0.5, size=shape)
                       for name, shape in _shapes(cell_name).items()})
    out_dim = layer.units
    g_y = rng.normal(size=(B, T, out_dim))
    g_s = [rng.normal(size=(B, U)) for _ in range(n)]

    def split(p):
        weights = {k: v for k, v in p.items() if k != "x" and not k.startswith("s")}
        return weights, p["x"], tuple(p[f"s{k}"] for k in range(n))

    def loss(p):
        weights, x, states = split(p)
        y, finals, _ = layer.forward(weights, x, mask, states)
        return float(np.sum(y * g_y) + sum(np.sum(s * g) for s, g in zip(finals, g_s)))

    def analytic(p):
        weights, x, states = split(p)
        _, _, cache = layer.forward(weights, x, mask, states)
        grads, dx, ds = layer.backward(weights, g_y, cache, tuple(g_s))
        return {**grads, "x": dx, **{f"s{k}": d for k, d in enumerate(ds)}}

    return params, loss, analytic


def _shapes(cell_name):
    gates = {"lstm": 4, "gru_reset_after": 3, "gru_reset_before": 3}.get(cell_name, 1)
    bias = (2, 3 * U) if cell_name == "gru_reset_after" else (gates * U,)
    return {"kernel": (D, gates * U), "recurrent_kernel": (U, gates * U), "bias": bias}


@pytest.mark.parametrize("bidirectional", [False, True], ids=["single", "bidirectional"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_gradients_by_central_differences(cell, bidirectional):
    rng = np.random.default_rng(11)
    factory = CELLS[cell][2]
    layer = (Bidirectional(factory(), factory(), "concat") if bidirectional
             else Recurrent(factory(), go_backwards=True))
    params, loss, analytic = _gradcheck_problem(layer, cell, rng, MASKS["holes"])
    grads = analytic(params)
    assert set(grads) == set(params)
    errors = check_gradients(loss, params, grads)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{cell}: {worst} relative error {errors[worst]:.2e}"


def _broken_simple_rnn_backward(self, params, d_states, cache):
    """The course code's bug: times the state h_t instead of tanh'(z_t) = 1 - h_t^2."""
    (dh,) = d_states
    dz = dh * cache.h
    return dz, dz, (dz @ params["recurrent_kernel"].T,)


_LSTM_BACKWARD = LSTMCell.step_backward  # the correct one, before monkeypatching


def _broken_lstm_backward(self, params, d_states, cache):
    """The course code's other bug: the cell-state carry path dc_t is dropped."""
    dh, dc_next = d_states
    return _LSTM_BACKWARD(self, params, (dh, np.zeros_like(dc_next)), cache)


@pytest.mark.parametrize("cell, broken", [
    ("simple_rnn_tanh", _broken_simple_rnn_backward),
    ("lstm", _broken_lstm_backward),
], ids=["rnn_state_instead_of_derivative", "lstm_without_cell_carry"])
def test_broken_backward_is_caught(monkeypatch, cell, broken):
    rng = np.random.default_rng(5)
    cell_class = type(CELLS[cell][2]())
    monkeypatch.setattr(cell_class, "step_backward", broken)
    layer = Recurrent(CELLS[cell][2]())
    params, loss, analytic = _gradcheck_problem(layer, cell, rng, MASKS["holes"])
    errors = check_gradients(loss, params, analytic(params))
    assert errors["recurrent_kernel"] > 1e-2, errors
