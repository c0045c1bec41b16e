"""Time one Adam update of a text model's embedding: Keras' class against FusedAdam.

The variable is a (vocabulary x dim) embedding; its gradient arrives as Keras
hands it to the optimizer for an embedding lookup: ``tf.IndexedSlices`` with
one row per looked-up token (``--tokens`` rows, drawn from a Zipf-like
distribution so that frequent tokens repeat as in text). Each optimizer's
``apply`` runs inside a ``tf.function`` (traced first), one update per
call as in a training step; the best of ``--repeats`` runs of 30 updates is
reported, in ms per update. FusedAdam runs twice: as training runs it (with
textclf's native rows op where the kernels are built, see
``textclf/fused_adam.py``) and on TensorFlow's ops alone. ``--clipnorm``
(default 5, the shipped recipes' ``train.clipnorm``) clips as Keras does.

    python scripts/bench_adam.py [--vocabulary 20000 --dim 128 --tokens 19200 --clipnorm 5]
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


def ms_per_update(optimizer, vocabulary: int, dim: int, tokens: int, repeats: int) -> float:
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    embedding = keras.Variable(rng.normal(size=(vocabulary, dim)).astype(np.float32))
    optimizer.build([embedding])
    zipf = 1 / np.arange(1, vocabulary + 1)
    rows = tf.constant(rng.choice(vocabulary, tokens, p=zipf / zipf.sum()), tf.int32)
    values = tf.constant(rng.normal(size=(tokens, dim)).astype(np.float32))
    shape = tf.constant([vocabulary, dim])

    @tf.function
    def update(values, rows):  # arguments, not constants, which grappler would fold
        optimizer.apply([tf.IndexedSlices(values, rows, shape)], [embedding])

    update(values, rows)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(30):
            update(values, rows)
        embedding.numpy()  # wait for the updates
        best = min(best, time.perf_counter() - start)
    return best / 30 * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=19200,
                        help="looked-up rows per batch (bbc_cnn: 64 documents of ~300 tokens)")
    parser.add_argument("--clipnorm", type=float, default=5.0,
                        help="Keras' clipnorm; 0 for none (default: the recipes' 5)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from textclf.runtime import import_tensorflow

    import_tensorflow()
    import keras

    from textclf.fused_adam import FusedAdam
    from textclf.kernels import ADAM_SWITCH, native_adam_available

    clip = {"clipnorm": args.clipnorm} if args.clipnorm > 0 else {}
    before = os.environ.pop(ADAM_SWITCH, None)
    rows_op = "native rows op" if native_adam_available() else "not usable here"
    print(f"Adam update of a {args.vocabulary:,} x {args.dim} embedding, "
          f"{args.tokens:,} looked-up rows, clipnorm {args.clipnorm:g} "
          f"(ms per update, best of {args.repeats} x 30):")
    # The switch is read when the update is traced, in ms_per_update's first call.
    for name, make, switch in (("keras.optimizers.Adam", keras.optimizers.Adam, "1"),
                               ("textclf FusedAdam, TensorFlow ops", FusedAdam, "0"),
                               (f"textclf FusedAdam ({rows_op})", FusedAdam, "1")):
        os.environ[ADAM_SWITCH] = switch
        ms = ms_per_update(make(**clip), args.vocabulary, args.dim, args.tokens, args.repeats)
        print(f"  {name:40s} {ms:6.2f}")
    os.environ.pop(ADAM_SWITCH)
    if before is not None:
        os.environ[ADAM_SWITCH] = before
    return 0


if __name__ == "__main__":
    sys.exit(main())
