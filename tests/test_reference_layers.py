"""The reference's non-recurrent layers and activations, and the gradient checker itself."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.reference import activations, layers
from textclf.reference.gradcheck import check_gradients, numeric_gradient, relative_error

F64 = dict(rtol=1e-10, atol=1e-12)


# --- the gradient checker ------------------------------------------------------------

def test_check_gradients_measures_and_restores():
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    saved = {k: v.copy() for k, v in params.items()}

    def loss(p):
        return float(np.sum(np.sin(p["a"] @ p["b"])))

    good = {"a": np.cos(params["a"] @ params["b"])[:, None] * params["b"][None, :],
            "b": params["a"].T @ np.cos(params["a"] @ params["b"])}
    errors = check_gradients(loss, params, good)
    assert max(errors.values()) < 1e-8
    bad = {"a": good["a"], "b": good["b"] * 1.01}
    assert check_gradients(loss, params, bad)["b"] == pytest.approx(0.005, rel=0.01)
    for name in params:
        np.testing.assert_array_equal(params[name], saved[name], err_msg=name)
    sampled = check_gradients(loss, params, good, max_entries=5)
    assert max(sampled.values()) < 1e-8


def test_gradient_checks_need_float64():
    with pytest.raises(TypeError, match="float64"):
        numeric_gradient(lambda p: 0.0, {"w": np.zeros(3, np.float32)}, "w")


def test_relative_error_of_zero_gradients_is_zero():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.ones(3), -np.ones(3)) == 1.0


# --- activations ---------------------------------------------------------------------

@pytest.mark.parametrize("name", activations.ACTIVATIONS)
def test_activation_derivatives(name):
    z = np.linspace(-3, 3, 61) + 0.013  # avoids relu's kink at exactly 0
    eps = 1e-6
    numeric = (activations.apply(name, z + eps) - activations.apply(name, z - eps)) / (2 * eps)
    analytic = activations.derivative(name, z, activations.apply(name, z))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("name", activations.ACTIVATIONS)
def test_activations_match_keras(name):
    keras = pytest.importorskip("keras")
    z = np.linspace(-6, 6, 49)
    expected = np.asarray(keras.activations.get(name)(keras.ops.convert_to_tensor(z)))
    # TensorFlow's float64 exact GELU is off by up to 4e-7 relative in the left tail
    # (ours, via erfc, agrees with math.erfc to the last digit: -4.8311454022e-06 at -4.75).
    tolerance = dict(rtol=1e-6, atol=1e-12) if name == "gelu" else F64
    np.testing.assert_allclose(activations.apply(name, z), expected, **tolerance, err_msg=name)


def test_sigmoid_does_not_overflow():
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(activations.sigmoid(np.array([-1e4, 0.0, 1e4])),
                                      [0.0, 0.5, 1.0])


# --- layers against Keras (float64) -------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
def test_conv1d_matches_keras(activation):
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    layer = keras.layers.Conv1D(5, 3, activation=activation, dtype="float64")
    x = rng.normal(size=(2, 7, 4))
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=5))
    g = rng.normal(size=(2, 5, 5))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y_k = layer(xt)
        loss = tf.reduce_sum(y_k * g)
    dx_k, dk_k, db_k = tape.gradient(loss, [xt, layer.kernel.value, layer.bias.value])
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    y, cache = layers.conv1d_forward(x, kernel, bias, activation)
    np.testing.assert_allclose(y, y_k.numpy(), **F64)
    dx, grads = layers.conv1d_backward(kernel, g, cache)
    np.testing.assert_allclose(dx, dx_k.numpy(), **F64)
    np.testing.assert_allclose(grads["kernel"], dk_k.numpy(), **F64)
    np.testing.assert_allclose(grads["bias"], db_k.numpy(), **F64)


def test_length_masked_max_pool_matches_keras_with_ties():
    pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    from textclf.models.layers import LengthMaskedMaxPooling

    rng = np.random.default_rng(2)
    ids = np.array([[3, 4, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
    features = rng.normal(size=(3, 6, 4))
    features[0, 1, 0] = features[0, 0, 0] = 9.0  # a tie inside the valid windows
    features[0, 3, 1] = 50.0                     # beyond the length: must not win
    features[1, 2, 2] = 50.0                     # empty document keeps window 0 only
    layer = LengthMaskedMaxPooling(dtype="float64")
    ft = tf.constant(features)
    g = rng.normal(size=(3, 4))
    with tf.GradientTape() as tape:
        tape.watch(ft)
        pooled_k = layer([ft, tf.constant(ids)])
        loss = tf.reduce_sum(pooled_k * g)
    d_k = tape.gradient(loss, ft).numpy()
    pooled, cache = layers.length_masked_max_pool(features, ids)
    np.testing.assert_allclose(pooled, pooled_k.numpy(), **F64)
    assert pooled[0, 0] == 9.0 and pooled[0, 1] < 50 and pooled[1, 2] == features[1, 0, 2]
    d = layers.length_masked_max_pool_backward(g, cache)
    np.testing.assert_allclose(d, d_k, **F64)
    assert d[0, 0, 0] == d[0, 1, 0] == g[0, 0] / 2  # the tie shares the gradient
    first = layers.length_masked_max_pool_backward(g, cache, ties="first")
    assert first[0, 0, 0] == g[0, 0] and first[0, 1, 0] == 0  # or the first window takes it
    np.testing.assert_array_equal(first.sum(axis=1), g)  # one window each, masked ones never
    untied = np.ones(d.shape[1:], bool)
    untied[:, 0] = False  # filter 0 of row 0 holds the tie
    np.testing.assert_array_equal(first[0][untied], d[0][untied])
    np.testing.assert_array_equal(first[1:], d[1:])


@pytest.mark.parametrize("with_mask", [True, False])
def test_masked_mean_pool_matches_keras(with_mask):
    pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    from textclf.models.layers import MaskedMeanPooling

    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 2))
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 1]], bool) if with_mask else None
    xt = tf.constant(x)
    g = rng.normal(size=(3, 2))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y_k = MaskedMeanPooling(dtype="float64")(xt, mask=None if mask is None else tf.constant(mask))
        loss = tf.reduce_sum(y_k * g)
    y = layers.masked_mean_pool(x, mask)
    np.testing.assert_allclose(y, y_k.numpy(), **F64)
    if with_mask:
        np.testing.assert_array_equal(y[1], 0.0)  # empty row: zeros, not NaN
    dx = layers.masked_mean_pool_backward(g, mask, x.shape[1])
    np.testing.assert_allclose(dx, tape.gradient(loss, xt).numpy(), **F64)


# --- central differences through the CNN pieces and the head -------------------------------

def test_cnn_pieces_and_head_by_central_differences():
    rng = np.random.default_rng(4)
    ids = np.array([[2, 3, 1, 0], [4, 4, 4, 4], [0, 0, 0, 0]])  # a repeat, an empty row
    labels = np.array([1, 0, 2])
    params = {"embeddings": rng.normal(scale=0.5, size=(5, 3)),
              "kernel": rng.normal(scale=0.5, size=(2, 3, 4)), "bias": rng.normal(size=4),
              "w": rng.normal(scale=0.5, size=(4, 3)), "b": rng.normal(size=3)}

    def forward(p):
        padded = layers.end_padding(ids, 2)
        x = layers.embedding_forward(p["embeddings"], padded)
        f, conv_cache = layers.conv1d_forward(x, p["kernel"], p["bias"], "tanh")
        pooled, pool_cache = layers.length_masked_max_pool(f, ids)
        probs = layers.dense_forward(pooled, p["w"], p["b"])
        return padded, conv_cache, pooled, pool_cache, probs

    def loss(p):
        return layers.cross_entropy(forward(p)[-1], labels)

    padded, conv_cache, pooled, pool_cache, probs = forward(params)
    d_logits = layers.softmax_cross_entropy_backward(probs, labels)
    d_pooled, head = layers.dense_backward(pooled, params["w"], d_logits)
    d_f = layers.length_masked_max_pool_backward(d_pooled, pool_cache)
    dx, conv = layers.conv1d_backward(params["kernel"], d_f, conv_cache)
    analytic = {"embeddings": layers.embedding_backward(params["embeddings"].shape, padded, dx),
                "kernel": conv["kernel"], "bias": conv["bias"], "w": head["kernel"],
                "b": head["bias"]}
    errors = check_gradients(loss, params, analytic)
    assert max(errors.values()) < 1e-6, errors
