"""Whole textclf models in NumPy against Keras: forward, gradients, export, check report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textclf.config import ModelConfig
from textclf.reference.check import check_run, format_check
from textclf.reference.export import export_numpy_weights
from textclf.reference.gradcheck import check_gradients
from textclf.reference.keras_weights import (UnsupportedLayerError, model_spec, model_weights,
                                             set_model_weights)
from textclf.reference.model import SPEC_KEY, NumpyModel, decode_json
from textclf.reference.threads import limited_blas

keras = pytest.importorskip("keras")

VOCAB, CLASSES = 40, 3
CONFIGS = {
    "cnn_relu_2_3": ModelConfig(type="cnn", embedding_dim=6, kernel_sizes=(2, 3), filters=5),
    "cnn_tanh_4": ModelConfig(type="cnn", embedding_dim=6, kernel_sizes=(4,), filters=5,
                              activation="tanh"),
    # gelu is not monotone: Conv1D then max_pool_K, the layout of runs trained
    # before MaxPooledConv1D.
    "cnn_gelu_2_3": ModelConfig(type="cnn", embedding_dim=6, kernel_sizes=(2, 3), filters=5,
                                activation="gelu"),
    "lstm": ModelConfig(type="rnn", cell="lstm", embedding_dim=6, units=4),
    "gru_bidirectional_2_layers": ModelConfig(type="rnn", cell="gru", embedding_dim=6, units=4,
                                              bidirectional=True, layers=2),
    "simple_rnn_relu_bidirectional": ModelConfig(type="rnn", cell="simple_rnn", embedding_dim=6,
                                                 units=4, bidirectional=True,
                                                 activation="relu"),
    "simple_rnn_tanh_2_layers": ModelConfig(type="rnn", cell="simple_rnn", embedding_dim=6,
                                            units=4, layers=2),
    "lstm_bidirectional": ModelConfig(type="rnn", cell="lstm", embedding_dim=6, units=4,
                                      bidirectional=True),
}


def token_ids(rng, n=24, steps=10):
    """Right-padded ids with lengths 0..steps (an empty document included)."""
    ids = rng.integers(1, VOCAB, size=(n, steps)).astype(np.int32)
    lengths = rng.integers(0, steps + 1, size=n)
    lengths[0] = 0
    ids[np.arange(steps)[None, :] >= lengths[:, None]] = 0
    return ids


def build(name, seed=0):
    from textclf.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(CONFIGS[name], VOCAB, CLASSES)
    # Embeddings start at U(-0.05, 0.05): widen them so the nets leave their linear regime.
    rng = np.random.default_rng(seed)
    table = model.get_layer("embedding")
    table.set_weights([rng.uniform(-1, 1, size=(VOCAB, 6)).astype(np.float32)])
    return model


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_whole_model_matches_keras(name):
    model = build(name)
    rng = np.random.default_rng(1)
    ids = token_ids(rng)
    labels = rng.integers(0, CLASSES, size=len(ids))
    report = check_run(model, NumpyModel.from_keras(model), ids, labels, gradients=True,
                       batch_size=16)
    text = format_check(report)
    assert report.ok, text
    assert report.probabilities.max_abs <= 1e-5
    assert report.same_labels == len(ids)
    expected_layers = {"embedding", "dropout"} | (
        {"end_padding"} | {f"conv_{k}" for k in CONFIGS[name].kernel_sizes}
        if CONFIGS[name].type == "cnn" else {"mean_pool", "rnn_1"})
    assert expected_layers <= {d.name for d in report.layers}, text
    names = {d.name for d in report.gradients}
    assert names == set(NumpyModel.from_keras(model).weights)
    assert {"embedding/embeddings", "output/kernel", "output/bias"} <= names


@pytest.mark.parametrize("name", ["cnn_relu_2_3", "gru_bidirectional_2_layers",
                                  "lstm_bidirectional"])
def test_whole_model_gradients_by_central_differences(name):
    model = NumpyModel.from_keras(build(name))
    rng = np.random.default_rng(2)
    for key, value in model.weights.items():  # scale 0.5, float64, in place
        value[...] = rng.normal(scale=0.5, size=value.shape)
    ids = token_ids(rng, n=5, steps=7)
    ids[1, 2] = 0  # a hole: the masks must handle more than right padding
    labels = rng.integers(0, CLASSES, size=len(ids))
    model.blas_threads = None  # capped once around the whole check, not per call
    with limited_blas(1):
        _, grads = model.loss_and_gradients(ids, labels)
        errors = check_gradients(lambda p: model.loss(ids, labels), model.weights, grads,
                                 max_entries=40)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"


@pytest.mark.parametrize("pool_gradient, ties", [("argmax", "first"), ("shared", "shared")])
def test_the_reference_follows_the_layers_rule_for_ties(pool_gradient, ties):
    """Two tokens with the same embedding row make different windows tie
    exactly. MaxPooledConv1D's argmax gives the first of them the gradient,
    sharing splits it: the embedding gradients then differ, and the NumPy
    model must apply the rule the layer was built with (read from its config)."""
    from textclf.models import build_model

    keras.utils.set_random_seed(0)
    config = ModelConfig(type="cnn", embedding_dim=6, kernel_sizes=(1,), filters=5,
                         pool_gradient=pool_gradient)
    model = build_model(config, VOCAB, CLASSES)
    rng = np.random.default_rng(4)
    table = rng.uniform(-1, 1, size=(VOCAB, 6)).astype(np.float32)
    table[8] = table[7]  # tokens 7 and 8: different ids, identical windows
    model.get_layer("embedding").set_weights([table])
    ids = np.array([[7, 8, 7, 0], [8, 3, 7, 5], [2, 3, 4, 5]], dtype=np.int32)
    labels = np.array([0, 1, 2])
    reference = NumpyModel.from_keras(model)
    assert [conv["ties"] for conv in reference.spec["convs"]] == [ties]
    report = check_run(model, reference, ids, labels, gradients=True)
    assert report.ok, format_check(report)
    # The other rule misplaces the gradient between rows 7 and 8.
    other = "shared" if ties == "first" else "first"
    reference.spec["convs"][0]["ties"] = other
    report = check_run(model, reference, ids, labels, gradients=True)
    assert {d.name for d in report.gradients if not d.ok} == {"embedding/embeddings"}


def test_a_wrong_numpy_weight_fails_the_check():
    model = build("lstm")
    reference = NumpyModel.from_keras(model)
    reference.weights["rnn_1/recurrent_kernel"][0, 0] += 1e-3
    ids = token_ids(np.random.default_rng(3))
    report = check_run(model, reference, ids)
    assert not report.ok
    assert [d.name for d in report.layers if not d.ok] == ["rnn_1"]
    assert "FAILED: beyond tolerance: rnn_1" in format_check(report)


def test_a_wrong_backward_pass_fails_the_gradient_check(monkeypatch):
    from textclf.reference.lstm import LSTMCell

    correct = LSTMCell.step_backward

    def without_cell_carry(self, params, d_states, cache):
        return correct(self, params, (d_states[0], 0 * d_states[1]), cache)

    monkeypatch.setattr(LSTMCell, "step_backward", without_cell_carry)
    model = build("lstm")
    rng = np.random.default_rng(3)
    ids = token_ids(rng)
    report = check_run(model, None, ids, rng.integers(0, CLASSES, len(ids)), gradients=True)
    assert all(d.ok for d in report.layers) and report.probabilities.ok
    bad = {d.name for d in report.gradients if not d.ok}
    assert {"rnn_1/kernel", "rnn_1/recurrent_kernel", "embedding/embeddings"} <= bad
    assert not report.ok


def test_export_round_trip(tmp_path):
    model = build("gru_bidirectional_2_layers")
    path = export_numpy_weights(model, tmp_path / "weights.npz")
    with np.load(path, allow_pickle=False) as data:
        spec = decode_json(data[SPEC_KEY])
        assert data["rnn_2/backward/bias"].dtype == np.float32
        assert data["rnn_2/backward/bias"].shape == (2, 12)
    assert spec == json.loads(json.dumps(model_spec(model)))
    assert spec["recurrent"][1]["forward"]["cell"] == "gru"
    ids = token_ids(np.random.default_rng(4))
    np.testing.assert_array_equal(NumpyModel.from_npz(path).forward(ids),
                                  NumpyModel.from_keras(model).forward(ids))


def test_set_model_weights_round_trip():
    source, target = build("lstm_bidirectional", seed=1), build("lstm_bidirectional", seed=2)
    ids = token_ids(np.random.default_rng(5))
    assert not np.allclose(np.asarray(source(ids)), np.asarray(target(ids)))
    set_model_weights(target, model_weights(source))
    np.testing.assert_array_equal(np.asarray(source(ids)), np.asarray(target(ids)))
    with pytest.raises(ValueError, match="missing"):
        set_model_weights(target, {"output/bias": np.zeros(CLASSES)})


def test_all_padding_batch():
    for name in ("cnn_relu_2_3", "lstm"):
        model = build(name)
        ids = np.zeros((2, 1), np.int32)
        np.testing.assert_allclose(NumpyModel.from_keras(model).forward(ids),
                                   np.asarray(model(ids)), atol=1e-6, err_msg=name)


def test_unsupported_model_is_refused():
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(10, 3, name="embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="output")(x))
    with pytest.raises(UnsupportedLayerError, match="neither a textclf cnn"):
        model_spec(model)
