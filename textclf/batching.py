"""Training batches: shuffled per epoch, bucketed by length, padded to their longest.

A plain ``padded_batch`` to a fixed 400 tokens spends most of its time on
padding for short documents. Sorting each shuffled window of
``batch_size * WINDOW_BATCHES`` documents by length and cutting it into batches
keeps the batches random in composition but tight in padding.

The plan of epoch ``e`` depends only on ``(seed, e)``, so a run resumed at
epoch ``e`` sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math

import numpy as np

WINDOW_BATCHES = 32  # batches per sorting window: bigger = less padding, less randomness


def round_up(width: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``width``."""
    return -(-width // multiple) * multiple


def pad_batch(sequences: list[np.ndarray], min_length: int = 1, multiple: int = 1) -> np.ndarray:
    """Right-pad 1-D int arrays with 0 to the longest (at least ``min_length``),
    rounded up to a multiple of ``multiple`` (textclf.compilation): (B, T)."""
    width = max(min_length, max((len(s) for s in sequences), default=0))
    width = round_up(width, multiple)
    batch = np.zeros((len(sequences), width), dtype=np.int32)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = seq
    return batch


def epoch_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
               bucketing: bool) -> list[np.ndarray]:
    """Index arrays of the batches of one epoch, ``ceil(N / batch_size)`` of them."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not bucketing:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * WINDOW_BATCHES
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    # Only the final window can leave a short batch, so the count is ceil(N / batch_size).
    return [batches[i] for i in rng.permutation(len(batches))]


class BatchSequence:
    """Batches ``(ids (B, T) int32, one-hot (B, C) float32[, weights (B,)])`` for ``fit``.

    ``shuffle=False`` keeps input order (validation); batches are then still
    padded only to their own longest document. ``as_dataset()`` wraps the
    batches in a ``tf.data.Dataset`` whose time axis is declared ``None``
    (Keras' own PyDataset adapter guesses the signature from the first batches
    and would fix the width if those happen to be equally long).
    """

    def __init__(self, sequences: list[np.ndarray], label_ids: np.ndarray, n_classes: int,
                 batch_size: int, seed: int = 0, shuffle: bool = True, bucketing: bool = True,
                 fixed_length: int | None = None, min_length: int = 1,
                 sample_weights: np.ndarray | None = None, start_epoch: int = 0,
                 pad_multiple: int = 1):
        self.sequences = sequences
        self.label_ids = np.asarray(label_ids, dtype=np.int64)
        self.n_classes = n_classes
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.bucketing = bucketing
        self.fixed_length = fixed_length
        self.min_length = min_length
        self.pad_multiple = pad_multiple
        self.sample_weights = sample_weights
        self.lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64,
                                   count=len(sequences))
        self.epoch = start_epoch  # the epoch the next full pass belongs to

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Row indices of each batch of ``epoch``."""
        if not self.shuffle:
            order = np.arange(len(self.sequences))
            return [order[i:i + self.batch_size]
                    for i in range(0, len(order), self.batch_size)]
        return epoch_plan(self.lengths, self.batch_size, self.seed, epoch, self.bucketing)

    def __len__(self) -> int:
        return math.ceil(len(self.sequences) / self.batch_size)

    def batch(self, rows: np.ndarray):
        width = self.fixed_length or self.min_length
        # A fixed width is one shape already: rounding it up would only add padding.
        multiple = 1 if self.fixed_length else self.pad_multiple
        ids = pad_batch([self.sequences[i] for i in rows], width, multiple)
        one_hot = np.eye(self.n_classes, dtype=np.float32)[self.label_ids[rows]]
        if self.sample_weights is None:
            return ids, one_hot
        return ids, one_hot, self.sample_weights[rows].astype(np.float32)

    def epoch_batches(self):
        """All batches of the current epoch; the next call gives the next epoch.

        The epoch advances on entry: with a declared cardinality tf.data stops
        after the last batch without resuming the generator past its final yield.
        """
        epoch, self.epoch = self.epoch, self.epoch + 1
        for rows in self.plan(epoch):
            yield self.batch(rows)

    def as_dataset(self):
        """A ``tf.data.Dataset``; each iteration (Keras makes one per epoch) is one epoch."""
        import tensorflow as tf

        spec = [tf.TensorSpec((None, None), tf.int32),
                tf.TensorSpec((None, self.n_classes), tf.float32)]
        if self.sample_weights is not None:
            spec.append(tf.TensorSpec((None,), tf.float32))
        dataset = tf.data.Dataset.from_generator(self.epoch_batches,
                                                 output_signature=tuple(spec))
        # Known length lets Keras show a progress bar with a total.
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
        return with_epoch_options(dataset).prefetch(2)


def with_epoch_options(dataset):
    """``dataset`` (a fresh pass per epoch) with the options textclf's training uses.

    Autotuning off: the pipeline is a generator and a fixed prefetch of 2 with
    nothing to tune, and with it on, TensorFlow (2.21) starts a model thread
    per iterator that the next epoch's iterator waits for when the previous one
    is deleted: measured on bbc_rnn, one epoch in three began with a 3-4 s
    stall (once 23 s) with the process idle, the main thread blocked in
    ``RootDataset::Iterator::~Iterator`` on the autotune thread's timed wait.
    Sharding by data: each worker of a multi-worker run reads its own batches.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)
