"""Time one TextCNN branch's training step: MaxPooledConv1D's argmax gradient
against the dense backprops (``pool_gradient: shared``).

One branch per kernel width, as in a TextCNN, on (batch, length + pad, dim)
inputs with ragged document lengths (``--length`` is the batch's width, the
rows' lengths are drawn below it) under the given dtype policy. Each step is
the layers' forward pass and the gradients of every kernel, bias and of the
input, inside a ``tf.function`` (traced first); the best of ``--repeats`` runs
of 20 steps is reported, in ms per step, with the forward pass alone for scale.

    python scripts/bench_conv_max.py [--batch 64 --length 400 --dim 128 --filters 100
                                      --widths 3 4 5 --policy mixed_bfloat16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402


def ms_per_step(step, repeats: int) -> float:
    step()  # trace
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(20):
            result = step()
        [np.asarray(r) for r in result]  # wait for the last step
        best = min(best, time.perf_counter() - start)
    return best / 20 * 1e3


def branch_steps(args, pool_gradient: str):
    """(training step, forward-only step) of one MaxPooledConv1D per width."""
    import tensorflow as tf

    from textclf.models.layers import MaxPooledConv1D

    rng = np.random.default_rng(0)
    pad = max(args.widths)
    ids = np.zeros((args.batch, args.length), np.int32)
    for row, length in enumerate(rng.integers(args.length // 4, args.length + 1, args.batch)):
        ids[row, :length] = 1  # only the lengths matter to the layer
    ids = tf.constant(ids)
    x = tf.constant(rng.normal(size=(args.batch, args.length + pad, args.dim)), tf.float32)
    layers = [MaxPooledConv1D(args.filters, width, pool_gradient=pool_gradient)
              for width in args.widths]
    upstream = tf.constant(rng.normal(size=(args.batch, args.filters)), tf.float32)

    def forward(inputs):
        return [tf.cast(layer([inputs, ids]), tf.float32) for layer in layers]

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.add_n([tf.reduce_sum(out * upstream) for out in forward(x)])
        variables = [v for layer in layers for v in layer.trainable_variables]
        return tape.gradient(loss, [x, *variables])

    @tf.function
    def forward_step():
        return forward(x)

    return train_step, forward_step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--filters", type=int, default=100)
    parser.add_argument("--widths", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--policy", default="mixed_bfloat16",
                        help="Keras dtype policy (float32, mixed_bfloat16, ...)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from textclf.runtime import import_tensorflow

    import_tensorflow()
    import keras

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(args.policy)
    try:
        report(args)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return 0


def report(args) -> None:
    print(f"MaxPooledConv1D widths {'/'.join(map(str, args.widths))} x {args.filters}, "
          f"batch {args.batch} x {args.length} tokens x {args.dim}, {args.policy} "
          f"(ms per step, best of {args.repeats} x 20):")
    forward_ms = None
    for pool_gradient in ("shared", "argmax"):
        train_step, forward_step = branch_steps(args, pool_gradient)
        if forward_ms is None:  # the forward pass is the same for both gradients
            forward_ms = ms_per_step(forward_step, args.repeats)
        print(f"  forward + backward, pool_gradient {pool_gradient:7s}"
              f" {ms_per_step(train_step, args.repeats):7.2f}")
    print(f"  forward alone {'':24s} {forward_ms:7.2f}")


if __name__ == "__main__":
    sys.exit(main())
