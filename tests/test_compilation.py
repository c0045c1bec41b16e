"""train.pad_to_multiple_of and train.jit_compile: what auto picks, and the batches it makes."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.batching import BatchSequence, pad_batch
from textclf.compilation import GPU_PAD_MULTIPLE, resolve_jit_compile, resolve_pad_multiple


@pytest.mark.parametrize("setting, gpu, expected", [
    ("auto", True, GPU_PAD_MULTIPLE),  # bounded shapes for cuDNN's per-shape search
    ("auto", False, 1),  # a CPU pays for padding and nothing per shape
    (8, True, 8),
    (1, True, 1),
])
def test_pad_multiple(setting, gpu, expected):
    multiple, why = resolve_pad_multiple(setting, gpu=gpu)
    assert multiple == expected and why


@pytest.mark.parametrize("setting, bucketing, expected", [
    ("auto", True, False),  # a new width per batch would be a new XLA compile per batch
    ("auto", False, "auto"),  # one shape: Keras decides (XLA on a GPU)
    (True, True, True),
    (False, False, False),
])
def test_jit_compile(setting, bucketing, expected):
    assert resolve_jit_compile(setting, bucketing)[0] == expected


def test_pad_batch_rounds_the_width_up_to_the_multiple():
    rows = [np.arange(1, 6), np.arange(1, 3)]
    assert pad_batch(rows, multiple=4).shape == (2, 8)
    assert pad_batch(rows, multiple=5).shape == (2, 5)  # already a multiple
    padded = pad_batch(rows, multiple=64)
    assert padded.shape == (2, 64) and padded[:, 5:].sum() == 0 and padded[0, :5].tolist() == [
        1, 2, 3, 4, 5]


def test_bucketed_batches_take_few_widths_and_fixed_ones_keep_theirs():
    rng = np.random.default_rng(0)
    sequences = [np.ones(n, dtype=np.int32) for n in rng.integers(1, 300, size=400)]
    labels = np.zeros(len(sequences), dtype=np.int64)
    plain = BatchSequence(sequences, labels, 2, batch_size=8)
    rounded = BatchSequence(sequences, labels, 2, batch_size=8, pad_multiple=64)
    plain_widths = {plain.batch(rows)[0].shape[1] for rows in plain.plan(0)}
    rounded_widths = {rounded.batch(rows)[0].shape[1] for rows in rounded.plan(0)}
    assert rounded_widths <= {64, 128, 192, 256, 320} and len(plain_widths) > 20
    fixed = BatchSequence(sequences, labels, 2, batch_size=8, bucketing=False,
                          fixed_length=300, pad_multiple=64)
    assert {fixed.batch(rows)[0].shape[1] for rows in fixed.plan(0)} == {300}
