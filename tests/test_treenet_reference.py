"""NumPy reference tree nets: golden values, Keras-tied degenerate trees, gradient checks."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from textclf.reference.gradcheck import check_gradients
from textclf.reference.treenet import CELLS, TreeNetReference, init_params, param_shapes
from textclf.trees import Tree, TreeVocab, parse_tree, tokens_to_tree, trees_to_batch

VOCAB = TreeVocab(["a", "b", "c", "d"])


def chain_tree(words: list[str]) -> Tree:
    """Node t reads word t and has node t-1 as its only (left) child: an LSTM over words."""
    n = len(words)
    return Tree(tuple(words), np.arange(n), np.arange(n) - 1, np.full(n, -1),
                np.full(n, -1))


def labelled(tree: Tree, rng) -> Tree:
    """Random labels 0-2 with some nodes unlabelled (-1)."""
    return tree.with_labels(rng.integers(-1, 3, tree.n_nodes))


def mixed_batch(cell: str, seed: int = 0):
    """Trees of several shapes and sizes in one left-padded batch; 'a' repeats."""
    rng = np.random.default_rng(seed)
    trees = [parse_tree("(3 (1 (2 a) (0 b)) (4 (2 a) (3 (2 c) (1 a))))"),
             tokens_to_tree(["d", "a", "b"], "right"),
             tokens_to_tree(["b", "c", "a", "d", "a"], "left"),
             tokens_to_tree(["c"])]
    if cell != "rnn":  # nodes that read a word and have a child
        trees.append(chain_tree(["a", "b", "a", "zzz"]))
    return trees_to_batch([labelled(t, rng) for t in trees], VOCAB)


def test_golden_rnn_parent():
    # (1 (0 a) (1 b)) with U = 1: p = tanh(E[a] * 1 + E[b] * 2 + 0.1) = tanh(0.1).
    params = {"embedding": np.array([[9.0], [9.0], [0.5], [-0.25], [0.0], [0.0]]),
              "kernel": np.array([[1.0], [2.0]]), "bias": np.array([0.1]),
              "output_kernel": np.array([[1.0, -1.0]]), "output_bias": np.array([0.0, 0.5])}
    batch = trees_to_batch([parse_tree("(1 (0 a) (1 b))")], VOCAB)
    fwd = TreeNetReference(params, "rnn").forward(batch)
    np.testing.assert_allclose(fwd.h[0, :, 0], [0.5, -0.25, np.tanh(0.1)], rtol=1e-15)
    p = np.tanh(0.1)
    expected = np.exp([p, 0.5 - p]) / np.exp([p, 0.5 - p]).sum()
    np.testing.assert_allclose(fwd.probs[0, -1], expected, rtol=1e-15)
    loss = TreeNetReference(params, "rnn").loss(batch, root_only=True)
    np.testing.assert_allclose(loss, -np.log(expected[1]), rtol=1e-14)


def test_golden_tree_lstm_leaf():
    # A leaf has no children: c = i * u, h = o * tanh(c), with x = E[word].
    U = 1
    params = {"embedding": np.array([[0.0], [0.0], [2.0]] + [[0.0]] * 3),
              "kernel": np.array([[0.5, 9.0, 1.0, -0.5]]), "bias": np.array([0.0, 0.0, 0.2, 0.1]),
              "recurrent_kernel": np.ones((2 * U, 5 * U)),
              "output_kernel": np.ones((1, 2)), "output_bias": np.zeros(2)}
    batch = trees_to_batch([parse_tree("(1 a)")], VOCAB)
    fwd = TreeNetReference(params, "tree_lstm").forward(batch)
    sig = lambda z: 1 / (1 + np.exp(-z))
    c = sig(1.0) * np.tanh(2.2)
    np.testing.assert_allclose(fwd.c[0, 0, 0], c, rtol=1e-15)
    np.testing.assert_allclose(fwd.h[0, 0, 0], sig(-0.9) * np.tanh(c), rtol=1e-15)


@pytest.mark.parametrize("n_words", [2, 3, 7])
def test_left_chain_rnn_equals_keras_simple_rnn(n_words):
    import keras

    U = 4
    params = init_params("rnn", len(VOCAB), U, U, 3, scale=0.6, seed=n_words)
    words = ["a", "c", "b", "a", "d", "zzz", "c"][:n_words]
    batch = trees_to_batch([tokens_to_tree(words, "left"),
                            tokens_to_tree(["b"] * (n_words + 2), "left")], VOCAB)
    fwd = TreeNetReference(params, "rnn").forward(batch)
    ids = VOCAB.ids(words)
    rnn = keras.layers.SimpleRNN(U, return_sequences=True, dtype="float64")
    x = params["embedding"][ids[1:]][None]  # (1, T - 1, U): the words after the first
    rnn.build(x.shape)
    # Socher's W' = [W_left, W_right] (column vectors); Keras: x @ kernel + h @ recurrent.
    rnn.set_weights([params["kernel"][U:], params["kernel"][:U], params["bias"]])
    keras_h = np.asarray(rnn(x, initial_state=[params["embedding"][ids[:1]]]))[0]
    tree = tokens_to_tree(words, "left")
    inner = np.flatnonzero(tree.leaf < 0) + batch["word_ids"].shape[1] - tree.n_nodes
    np.testing.assert_allclose(fwd.h[0, inner], keras_h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", ["tree_lstm", "child_sum"])
@pytest.mark.parametrize("n_words", [1, 4, 9])
def test_chain_tree_lstm_equals_keras_lstm(cell, n_words):
    import keras

    D, U = 3, 5
    params = init_params(cell, len(VOCAB), D, U, 2, scale=0.6, seed=n_words)
    words = (["a", "b", "zzz", "c", "d"] * 2)[:n_words]
    batch = trees_to_batch([chain_tree(words), chain_tree(["d"] * 11)], VOCAB)
    fwd = TreeNetReference(params, cell).forward(batch)
    lstm = keras.layers.LSTM(U, return_sequences=True, dtype="float64")
    x = params["embedding"][VOCAB.ids(words)][None]
    lstm.build(x.shape)
    R = params["recurrent_kernel"]
    if cell == "tree_lstm":  # the left child's rows, blocks [i, f_left, c, o]
        R = np.concatenate([R[:U, :2 * U], R[:U, 3 * U:]], axis=1)
    lstm.set_weights([params["kernel"], R, params["bias"]])
    keras_h = np.asarray(lstm(x))[0]
    np.testing.assert_allclose(fwd.h[0, -n_words:], keras_h, rtol=1e-12, atol=1e-14)


def test_child_sum_ignores_child_order_and_n_ary_does_not():
    ab = trees_to_batch([parse_tree("(2 (2 a) (2 b))")], VOCAB)
    ba = trees_to_batch([parse_tree("(2 (2 b) (2 a))")], VOCAB)
    for cell, symmetric in [("child_sum", True), ("tree_lstm", False)]:
        net = TreeNetReference(init_params(cell, len(VOCAB), 3, 4, 2, seed=1), cell)
        same = np.allclose(net.forward(ab).h[0, -1], net.forward(ba).h[0, -1], rtol=1e-12)
        assert same == symmetric, cell


@pytest.mark.parametrize("cell", CELLS)
def test_trees_do_not_see_their_batch_mates(cell):
    """Per-tree results do not depend on padding or on the other trees of the batch."""
    batch = mixed_batch(cell)
    net = TreeNetReference(init_params(cell, len(VOCAB), 4, 4, 3, seed=3), cell)
    together = net.forward(batch)
    for row in range(batch["word_ids"].shape[0]):
        keep = batch["height"][row] >= 0
        alone = {k: v[row:row + 1, keep] for k, v in batch.items()}  # the tree unpadded
        shift = int(np.sum(~keep))
        for k in ("left", "right"):
            alone[k] = np.where(alone[k] >= 0, alone[k] - shift, -1)
        np.testing.assert_allclose(net.forward(alone).probs[0], together.probs[row, keep],
                                   rtol=1e-13, err_msg=f"{cell} row {row}")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("root_only", [False, True])
@pytest.mark.parametrize("l2", [0.0, 0.03])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_central_differences(cell, root_only, l2, seed):
    batch = mixed_batch(cell, seed)
    params = init_params(cell, len(VOCAB), 4, 4, 3, scale=0.7, seed=seed)
    net = TreeNetReference(params, cell, l2)
    _, analytic = net.loss_and_gradients(batch, root_only)
    errors = check_gradients(lambda p: TreeNetReference(p, cell, l2).loss(batch, root_only),
                             params, analytic, eps=1e-6)
    assert set(errors) == set(param_shapes(cell, len(VOCAB), 4, 4, 3))
    assert max(errors.values()) < 1e-6, errors
    # The check has teeth: the gradients are far from zero.
    assert all(np.abs(analytic[n]).max() > 1e-3 for n in analytic if n != "embedding")


@pytest.mark.parametrize("cell", CELLS)
def test_repeated_words_accumulate_embedding_gradients(cell):
    """'a' used at three leaves gets the sum of what three distinct words would get."""
    tree = labelled(parse_tree("(3 (1 (2 a) (0 b)) (4 (2 a) (3 (2 c) (1 a))))"),
                    np.random.default_rng(5))
    vocab = TreeVocab(["a", "b", "c", "a2", "a3"])
    distinct = Tree(("a", "b", "a2", "c", "a3"), tree.leaf, tree.left, tree.right, tree.labels)
    params = init_params(cell, len(vocab), 4, 4, 3, seed=2)
    for copy in (5, 6):  # rows of a2, a3 = row of a
        params["embedding"][copy] = params["embedding"][2]
    net = TreeNetReference(params, cell)
    _, shared = net.loss_and_gradients(trees_to_batch([tree], vocab))
    _, split = net.loss_and_gradients(trees_to_batch([distinct], vocab))
    np.testing.assert_allclose(shared["embedding"][2], split["embedding"][[2, 5, 6]].sum(axis=0),
                               rtol=1e-12)
    assert not np.allclose(split["embedding"][2], split["embedding"][5])


def test_rnn_cell_rejects_a_node_with_one_child():
    params = init_params("rnn", len(VOCAB), 3, 3, 2)
    with pytest.raises(ValueError, match="two children"):
        TreeNetReference(params, "rnn").forward(trees_to_batch([chain_tree(["a", "b"])], VOCAB))


def test_rnn_needs_embedding_dim_equal_units():
    with pytest.raises(ValueError, match="embedding_dim == units"):
        param_shapes("rnn", 10, 3, 4, 2)
