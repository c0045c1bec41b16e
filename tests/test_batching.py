"""Training batches: per-epoch shuffles that a resumed run reproduces."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.batching import BatchSequence, epoch_plan, pad_batch


def sequences(n=103, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 50, size=rng.integers(0, 40)).astype(np.int32) for _ in range(n)]


def test_pad_batch_right_pads_to_the_longest():
    batch = pad_batch([np.array([1, 2]), np.array([], dtype=np.int32), np.array([3])])
    np.testing.assert_array_equal(batch, [[1, 2], [0, 0], [3, 0]])
    assert pad_batch([np.array([], dtype=np.int32)]).shape == (1, 1)


@pytest.mark.parametrize("bucketing", [True, False])
def test_each_epoch_covers_every_example_once(bucketing):
    lengths = np.array([len(s) for s in sequences()])
    plan = epoch_plan(lengths, 8, seed=3, epoch=0, bucketing=bucketing)
    assert len(plan) == int(np.ceil(len(lengths) / 8))
    np.testing.assert_array_equal(np.sort(np.concatenate(plan)), np.arange(len(lengths)))


def test_bucketing_reduces_padding():
    seqs = sequences(2000)
    lengths = np.array([len(s) for s in seqs])

    def padded_tokens(bucketing):
        plan = epoch_plan(lengths, 32, seed=0, epoch=0, bucketing=bucketing)
        return sum(len(rows) * lengths[rows].max() for rows in plan)

    assert padded_tokens(True) < 0.7 * padded_tokens(False)


def test_epochs_differ_and_resuming_reproduces_them():
    seqs = sequences()
    labels = np.arange(len(seqs)) % 3
    whole = BatchSequence(seqs, labels, 3, batch_size=10, seed=5)
    epochs = [[ids.tolist() for ids, _ in whole.epoch_batches()] for _ in range(3)]
    assert epochs[0] != epochs[1]
    resumed = BatchSequence(seqs, labels, 3, batch_size=10, seed=5, start_epoch=2)
    assert [ids.tolist() for ids, _ in resumed.epoch_batches()] == epochs[2]


def test_dataset_advances_an_epoch_per_iteration():
    """tf.data stops at the declared cardinality; the epoch must still advance."""
    seqs = sequences(30)
    data = BatchSequence(seqs, np.zeros(30, dtype=np.int64), 2, batch_size=7, seed=1)
    dataset = data.as_dataset()
    first = [ids.numpy().tolist() for ids, _ in dataset]
    second = [ids.numpy().tolist() for ids, _ in dataset]
    assert first != second
    assert data.epoch == 2


def test_training_datasets_do_not_autotune():
    """With tf.data autotuning on, deleting an epoch's iterator waited for the
    autotune thread (3-4 s stalls at one epoch start in three on bbc_rnn; see
    textclf.batching.with_epoch_options). The tree net's batches too."""
    from textclf.models.treenet import tree_dataset
    from textclf.trees import TreeVocab, tokens_to_tree

    data = BatchSequence(sequences(10), np.zeros(10, dtype=np.int64), 2, batch_size=4)
    assert data.as_dataset().options().autotune.enabled is False
    trees = [tokens_to_tree(["a", "b"]).with_labels(np.zeros(3, dtype=np.int64))]
    assert tree_dataset(trees, TreeVocab(["a", "b"]), batch_size=2).options().autotune.enabled \
        is False
