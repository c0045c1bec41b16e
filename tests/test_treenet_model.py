"""TensorFlow tree net: agreement with the NumPy reference and with Keras' own RNN/LSTM on
degenerate trees, padding independence, saving, a tiny training run, evaluation."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

from textclf.config import ModelConfig, config_from_dict
from textclf.errors import ConfigError
from textclf.models.treenet import (
    NodeAccuracy,
    NodeCrossEntropy,
    RootAccuracy,
    build_treenet,
    compare_with_reference,
    evaluate_trees,
    fit_treenet,
    numpy_treenet_from_keras,
    predict_trees,
    tree_dataset,
)
from textclf.trees import (
    MODEL_INPUTS,
    Tree,
    TreeVocab,
    parse_tree,
    sentence_to_tree,
    tokens_to_tree,
    trees_to_batch,
)

VOCAB = TreeVocab(["a", "b", "c", "d"])
CELLS = ("rnn", "tree_lstm")


def chain_tree(words):
    n = len(words)
    return Tree(tuple(words), np.arange(n), np.arange(n) - 1, np.full(n, -1), np.full(n, -1))


def sample_trees(cell: str, seed: int = 0) -> list[Tree]:
    rng = np.random.default_rng(seed)
    trees = [parse_tree("(3 (1 (2 a) (0 b)) (4 (2 a) (3 (2 c) (1 a))))"),
             tokens_to_tree(["d", "a", "b"], "right"),
             tokens_to_tree(["b", "c", "a", "d", "a", "zzz"], "balanced"),
             tokens_to_tree(["c"])]
    if cell == "tree_lstm":
        trees.append(chain_tree(["a", "b", "a", "zzz"]))
    return [t.with_labels(rng.integers(-1, 3, t.n_nodes)) for t in trees]


def model_for(cell: str, dtype: str = "float32", l2: float = 0.0, units: int = 4, seed: int = 0):
    cfg = ModelConfig(type="treenet", tree_cell=cell, embedding_dim=units, units=units, l2=l2)
    model = build_treenet(cfg, len(VOCAB), 3, dtype=dtype)
    rng = np.random.default_rng(seed)
    for weight in model.weights:  # non-trivial weights: tanh and gates far from linear
        weight.assign(rng.normal(0.0, 0.6, weight.shape))
    return model


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("root_only", [False, True])
def test_float64_model_equals_reference(cell, root_only):
    model = model_for(cell, "float64", l2=0.01)
    report = compare_with_reference(model, sample_trees(cell), VOCAB, gradients=True,
                                    root_only=root_only)
    assert set(report) >= {"node_vectors", "probabilities", "loss", "grad/embedding",
                           "grad/kernel", "grad/bias", "grad/output_kernel"}
    for name, result in report.items():
        assert result["max_abs"] < 1e-12, (name, result)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("seed", [0, 1])
def test_float32_model_within_float32_tolerance(cell, seed):
    report = compare_with_reference(model_for(cell, seed=seed), sample_trees(cell, seed), VOCAB,
                                    gradients=True)
    assert all(result["ok"] for result in report.values()), report
    assert report["node_vectors"]["max_abs"] > 0  # float32 really differs from float64


def test_reference_check_catches_a_wrong_weight():
    model = model_for("tree_lstm")
    reference = numpy_treenet_from_keras(model)
    reference.params["recurrent_kernel"][0, 0] += 0.05
    batch = trees_to_batch(sample_trees("tree_lstm"), VOCAB)
    ours = model({k: batch[k] for k in MODEL_INPUTS}).numpy()
    assert np.abs(ours - reference.forward(batch).probs).max() > 1e-5


def test_left_chain_rnn_equals_keras_simple_rnn():
    U = 4
    model = model_for("rnn", "float64", units=U, seed=3)
    words = ["a", "c", "b", "a", "d", "zzz"]
    tree = tokens_to_tree(words, "left")
    batch = trees_to_batch([tree, tokens_to_tree(["b"] * 9, "left")], VOCAB)
    h = model.encode({k: batch[k] for k in MODEL_INPUTS}).numpy()
    E = model.embedding.embeddings.numpy()
    W, b = model.encoder.kernel.numpy(), model.encoder.bias.numpy()
    ids = VOCAB.ids(words)
    rnn = keras.layers.SimpleRNN(U, return_sequences=True, dtype="float64")
    x = E[ids[1:]][None]
    rnn.build(x.shape)
    rnn.set_weights([W[U:], W[:U], b])
    expected = np.asarray(rnn(x, initial_state=[E[ids[:1]]]))[0]
    inner = np.flatnonzero(tree.leaf < 0) + batch["word_ids"].shape[1] - tree.n_nodes
    np.testing.assert_allclose(h[0, inner], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_chain_tree_lstm_equals_keras_lstm(dtype, tol):
    U = 5
    model = model_for("tree_lstm", dtype, units=U, seed=4)
    words = ["a", "b", "zzz", "c", "d", "a", "a"]
    batch = trees_to_batch([chain_tree(words), chain_tree(["d"] * 3)], VOCAB)
    h = model.encode({k: batch[k] for k in MODEL_INPUTS}).numpy()
    R = model.encoder.recurrent_kernel.numpy()
    lstm = keras.layers.LSTM(U, return_sequences=True, dtype=dtype)
    x = model.embedding.embeddings.numpy()[VOCAB.ids(words)][None]
    lstm.build(x.shape)
    lstm.set_weights([model.encoder.kernel.numpy(),
                      np.concatenate([R[:U, :2 * U], R[:U, 3 * U:]], axis=1),
                      model.encoder.bias.numpy()])
    np.testing.assert_allclose(h[0], np.asarray(lstm(x))[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", CELLS)
def test_predictions_do_not_depend_on_batch_mates(cell):
    model = model_for(cell)
    trees = sample_trees(cell)
    together = predict_trees(model, trees, VOCAB, batch_size=64)
    for tree, probs in zip(trees, together):
        alone = predict_trees(model, [tree], VOCAB)[0]
        assert alone.shape == (tree.n_nodes, 3)
        np.testing.assert_allclose(alone, probs, rtol=1e-5, atol=1e-6)


# Saved before any training step, the optimizer has no slots yet; Keras says so on load.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_saved_model_loads_in_safe_mode(tmp_path):
    model = model_for("tree_lstm")
    config = config_from_dict({"data": {"train": "x", "format": "ptb_trees"},
                               "model": {"type": "treenet"}})
    from textclf.models.treenet import compile_treenet
    compile_treenet(model, config.train, n_train=1)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    trees = sample_trees("tree_lstm")
    for ours, theirs in zip(predict_trees(model, trees, VOCAB), predict_trees(loaded, trees, VOCAB)):
        np.testing.assert_array_equal(ours, theirs)
    assert loaded.get_config()["cell"] == "tree_lstm"


def test_rnn_cell_needs_equal_embedding_and_units():
    cfg = ModelConfig(type="treenet", tree_cell="rnn", embedding_dim=8, units=6)
    with pytest.raises(ConfigError, match=r"^model.units must be equal to model.embedding_dim"):
        build_treenet(cfg, 10, 2)


def test_node_loss_and_metrics_skip_unlabelled_nodes():
    probs = tf.constant([[[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]],
                         [[0.5, 0.5], [0.6, 0.4], [0.1, 0.9]]])
    labels = tf.constant([[0, -1, 1], [-1, 1, 0]])
    per_tree = NodeCrossEntropy().call(labels, probs).numpy()
    np.testing.assert_allclose(per_tree, [-np.log(0.9) - np.log(0.7),
                                          -np.log(0.4) - np.log(0.1)], rtol=1e-6)
    root, nodes = RootAccuracy(), NodeAccuracy()
    root.update_state(labels, probs)
    nodes.update_state(labels, probs)
    assert float(root.result()) == 0.5  # roots: 1 vs 0.7 right, 0 vs 0.9 wrong
    assert float(nodes.result()) == 0.5  # 4 labelled nodes: 2 right


def test_dataset_reshuffles_each_epoch_and_covers_every_tree():
    trees = [tokens_to_tree(["a"] * (i % 7 + 1)).with_labels(np.full(2 * (i % 7) + 1, i % 2))
             for i in range(40)]
    data = tree_dataset(trees, VOCAB, batch_size=6, shuffle=True, seed=1)
    epochs = [[x["word_ids"].shape for x, _ in data] for _ in range(2)]
    assert len(epochs[0]) == 7 and sum(s[0] for s in epochs[0]) == 40
    assert epochs[0] != epochs[1]
    root_only = next(iter(tree_dataset(trees, VOCAB, batch_size=6, root_only=True)))[1].numpy()
    assert np.all(root_only[:, :-1] == -1) and np.all(root_only[:, -1] >= 0)


def sentiment_trees(n: int, seed: int) -> list[Tree]:
    """Random word strings; a node is 1 if its span holds 'good', 0 if 'bad', else unlabelled."""
    rng = np.random.default_rng(seed)
    trees = []
    for _ in range(n):
        words = list(rng.choice(["the", "film", "is", "a", "plot"], size=rng.integers(2, 8)))
        words.insert(int(rng.integers(len(words) + 1)), "good" if rng.random() < 0.5 else "bad")
        tree = tokens_to_tree(words, str(rng.choice(["balanced", "right", "left"])))
        labels = np.full(tree.n_nodes, -1)
        span: list[set] = []
        for i in range(tree.n_nodes):
            span.append({tree.words[i]} if tree.leaf[i] >= 0 else
                        span[tree.left[i]] | span[tree.right[i]])
            labels[i] = 1 if "good" in span[i] else 0 if "bad" in span[i] else -1
        trees.append(tree.with_labels(labels))
    return trees


@pytest.mark.parametrize("cell", CELLS)
def test_tiny_training_run_learns(cell):
    keras.utils.set_random_seed(0)
    config = config_from_dict({
        "data": {"train": "x", "format": "ptb_trees", "tree_labels": "binary"},
        "model": {"type": "treenet", "tree_cell": cell, "embedding_dim": 12, "units": 12,
                  "dropout": 0.0},
        "train": {"epochs": 6, "batch_size": 16, "learning_rate": 0.02, "optimizer": "adam"}})
    train, test = sentiment_trees(160, 0), sentiment_trees(60, 1)
    vocab = TreeVocab.build(train)
    model = build_treenet(config.model, len(vocab), 2)
    before = evaluate_trees(model, test, vocab)
    history = fit_treenet(config, model, train, test, vocab, verbose=0)
    after = evaluate_trees(model, test, vocab)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after["accuracy"] >= 0.95 and after["all_nodes_accuracy"] >= 0.95, (before, after)
    assert set(history.history) >= {"accuracy", "all_nodes_accuracy", "val_accuracy", "loss"}
    # Raw sentences without a parse: a balanced tree over the tokens.
    probs = predict_trees(model, [sentence_to_tree("a good film"), sentence_to_tree("")], vocab)
    assert probs[0].shape == (5, 2) and probs[1].shape == (1, 2)
    assert probs[0][-1].argmax() == 1


def test_evaluate_counts_labelled_roots_and_nodes():
    model = model_for("tree_lstm")
    trees = sample_trees("tree_lstm")
    result = evaluate_trees(model, trees, VOCAB)
    probs = predict_trees(model, trees, VOCAB)
    roots = [(p[-1].argmax(), t.root_label) for p, t in zip(probs, trees) if t.root_label >= 0]
    nodes = [(p.argmax(axis=1)[t.labels >= 0], t.labels[t.labels >= 0])
             for p, t in zip(probs, trees)]
    assert result["n_roots"] == len(roots)
    assert result["accuracy"] == pytest.approx(np.mean([a == b for a, b in roots]))
    hits = np.concatenate([a == b for a, b in nodes])
    assert result["n_nodes"] == hits.size
    assert result["all_nodes_accuracy"] == pytest.approx(hits.mean())
    assert result["root_probs"].shape == (len(trees), 3)


def test_compile_passes_steps_per_execution():
    """train.steps_per_execution reaches a tree net's compiled model too
    (tests/test_tree_cli.py: with the same run as one step per call)."""
    from textclf.models.treenet import compile_treenet

    model = model_for("tree_lstm")
    config = config_from_dict({"data": {"train": "x", "format": "ptb_trees"},
                               "model": {"type": "treenet"}, "train": {"steps_per_execution": 3}})
    compile_treenet(model, config.train, n_train=1)
    assert model.steps_per_execution == 3
