"""Time one LSTM layer's forward + backward: Keras' CPU loop against textclf's FusedLSTM.

The layer as textclf trains it: (batch, steps, features) inputs with a
right-padding mask, ``return_sequences=True``, the gradient of a loss that reads
every output with respect to the inputs and all weights, inside one
``tf.function`` (traced before timing). Rows:

- ``keras.layers.LSTM``: the stock layer (on a CPU, its generic loop);
- ``FusedLSTM, groups 1``: textclf's loop (input projection as one matmul,
  hand-written backward), the whole batch in one loop;
- ``FusedLSTM, groups N``: the same with the batch cut into N slices run side
  by side (N = usable cores; what textclf's graph loop uses);
- ``FusedLSTM, native ops``: the same layer with its recurrence in textclf's
  native ops (:mod:`textclf.kernels`, where built), which cut the batch's
  rows over the intra-op threads themselves: what textclf uses where they
  are built;
- ``bulk matmuls, groups N``: no LSTM, only the six matrix products of its
  training step (the input projection, ``h @ U``, ``dz @ U^T``, ``dX``, ``dW``
  and ``dU``) per slice, each as one product over all steps (so 400 small
  per-step products become one bulk product with the same inner size and
  width). It is the ceiling a loop over these products could reach with this
  BLAS and no per-step cost at all; the float32 peak below is a 2048 x 2048
  product, which products with an inner size of 128 may not reach.

GFLOP/s count the matmul work only (training = 3 x forward, forward =
2 * 4U * (D + U) per step per row) against a float32 2048 x 2048 matmul
measured in the same process.

``--ops`` times the native ops alone instead (where built): the forward op
with and without its records for the backward op, and the backward op, on
random projections with every step real. Their GFLOP/s count only the
step's recurrent product, 2 * U * 4U per row: the rest of each op is
element-wise work and memory traffic, which is what these rows show. Two
more rows time the gradients that follow the backward op, ``dX = dZ W^T``,
``dW = X^T dZ`` and ``dU = H^T dZ``: the gradients op against the three
``tf.matmul`` products it replaces (GFLOP/s of
2 * 4U * (2D + U) per step and row).

    python scripts/bench_lstm.py [--batch 32,64 --steps 400 --units 128 --features 128]
    python scripts/bench_lstm.py --ops [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402


def matmul_peak(tf, repeats: int = 10) -> float:
    """float32 GFLOP/s of a 2048 x 2048 matmul in a tf.function (best of ``repeats``)."""
    a = tf.random.normal((2048, 2048))
    product = tf.function(lambda a: tf.reduce_sum(tf.linalg.matmul(a, a)))
    product(a).numpy()
    best = min(_timed(lambda: product(a).numpy()) for _ in range(repeats))
    return 2 * 2048**3 / best / 1e9


def bulk_products(tf, batch: int, steps: int, features: int, units: int, groups: int):
    """A function running the matrix products of one LSTM training step as
    bulk products: per slice of ``batch // groups`` rows, (M, K) x (K, N) for
    the input projection (T*B', D) x (D, 4U), the recurrent products
    (T*B', U) x (U, 4U) and (T*B', 4U) x (4U, U), the input gradient
    (T*B', 4U) x (4U, D) and the weight gradients (D, T*B') x (T*B', 4U) and
    (U, T*B') x (T*B', 4U): 3 x 2 x 4U (D + U) FLOPs per step and row, what
    the rows above count. The slices' products are independent, so the
    executor may run them on different cores, as it runs the layer's slices."""
    rows = batch // groups * steps
    gates = 4 * units
    shapes = [(rows, features, gates), (rows, units, gates), (rows, gates, units),
              (rows, gates, features), (features, rows, gates), (units, rows, gates)]
    operands = [(tf.random.normal((m, k)), tf.random.normal((k, n)))
                for _ in range(groups) for m, k, n in shapes]

    @tf.function
    def run():
        # One element of each product: enough to keep every product in the
        # graph without timing a reduction over its output.
        return tf.stack([tf.matmul(a, b)[0, 0] for a, b in operands])

    return run


def time_native_ops(tf, args, peak: float) -> int:
    """Prints per-step times of the native ops alone (``--ops``); 1 where they are not built."""
    from textclf.kernels import native_ops, unusable_because
    from textclf.models.fused_lstm import h_before_each_step

    ops = native_ops()
    if ops is None:
        print(f"native ops unusable: {unusable_because(tf.__version__)}")
        return 1
    steps, units = args.steps, args.units
    print(f"native LSTM ops alone, {steps} steps, {units} units, float32, median of "
          f"{args.repeats}; {len(os.sched_getaffinity(0))} CPUs; matmul peak {peak:.1f} GFLOP/s")
    for batch in (int(b) for b in args.batch.split(",")):
        rng = np.random.default_rng(0)
        projected = tf.constant(rng.normal(0, 0.3, size=(batch, steps, 4 * units)), tf.float32)
        bias = tf.zeros(4 * units)
        kernel = tf.constant(rng.normal(0, 0.05, size=(units, 4 * units)), tf.float32)
        state = tf.zeros((batch, units))
        mask = tf.ones((batch, steps))
        d_outputs = tf.constant(rng.normal(size=(batch, steps, units)), tf.float32)
        outputs, _, _, gates, cells = ops.textclf_lstm_forward(projected, bias, kernel, state,
                                                               state, mask)
        h_prev = h_before_each_step(outputs, state, mask)  # for the matmuls' dU
        inputs = tf.constant(rng.normal(size=(batch, steps, args.features)), tf.float32)
        d_projected = tf.constant(rng.normal(size=(batch, steps, 4 * units)), tf.float32)
        w = tf.constant(rng.normal(0, 0.05, size=(args.features, 4 * units)), tf.float32)

        # Each returns one element of a result, so the timing is the op's, not a copy's.
        def forward(record):
            outputs = ops.textclf_lstm_forward(projected, bias, kernel, state, state, mask,
                                               record=record)
            return outputs[3][0, 0, 0] if record else outputs[0][0, 0, 0]

        runs = {
            "forward, with records": tf.function(lambda: forward(True)),
            "forward, lean": tf.function(lambda: forward(False)),
            "backward": tf.function(lambda: ops.textclf_lstm_backward(
                d_outputs, state, state, kernel, state, mask, gates, cells)[0][0, 0, 0]),
            "dX, dW, dU: op": tf.function(lambda: ops.textclf_lstm_gradients(
                inputs, outputs, state, mask, d_projected, w)[2][0, 0]),
            "dX, dW, dU: matmuls": tf.function(lambda: tf.stack([
                tf.matmul(tf.reshape(d_projected, [-1, 4 * units]), w, transpose_b=True)[0, 0],
                *(tf.matmul(tf.reshape(a, [-1, a.shape[-1]]),
                            tf.reshape(d_projected, [-1, 4 * units]), transpose_a=True)[0, 0]
                  for a in (inputs, h_prev))])),
        }
        times = {name: [] for name in runs}
        for fn in runs.values():
            fn().numpy()
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(_timed(lambda fn=fn: fn().numpy()))
        recurrent_flops = 2 * units * 4 * units * steps * batch
        gradient_flops = 2 * 4 * units * (2 * args.features + units) * steps * batch
        for name in runs:
            seconds = statistics.median(times[name])
            flops, of = ((gradient_flops, "the three products") if name.startswith("dX")
                         else (recurrent_flops, "the recurrent product"))
            print(f"  batch {batch:3d}  {name:22s} {seconds / steps * 1e6:6.1f} us/step  "
                  f"{flops / seconds / 1e9:6.1f} GFLOP/s of {of}")
    return 0


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="32,64", help="comma list of batch sizes")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--groups", default="",
                        help="comma list of FusedLSTM batch_groups to time (default: 1 and "
                             "textclf's choice)")
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="TensorFlow's threads per op (0: its default, all cores)")
    parser.add_argument("--ops", action="store_true",
                        help="time the native ops alone (forward with and without records, "
                             "backward) instead of the layers")
    args = parser.parse_args(argv)

    from textclf.runtime import import_tensorflow

    tf = import_tensorflow()
    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    import keras

    from textclf.kernels import native_lstm_available
    from textclf.models.fused_lstm import FusedLSTM

    groups = FusedLSTM.batch_groups
    peak = matmul_peak(tf)
    if args.ops:
        return time_native_ops(tf, args, peak)
    steps, units, features = args.steps, args.units, args.features
    threads = args.intra_op_threads or "all cores"
    print(f"LSTM layer forward + backward, {steps} steps, {features} features, {units} units, "
          f"float32, median of {args.repeats}; {len(os.sched_getaffinity(0))} CPUs, threads per "
          f"op: {threads}; matmul peak with these threads {peak:.1f} GFLOP/s"
          + (" (one op on one core; loops run side by side use more than one, so their "
             "share can pass 100%)" if args.intra_op_threads == 1 else ""))
    for batch in (int(b) for b in args.batch.split(",")):
        rng = np.random.default_rng(0)
        x = tf.constant(rng.normal(size=(batch, steps, features)).astype("float32"))
        lengths = rng.integers(steps // 2, steps + 1, size=batch)
        lengths[0] = steps
        mask = tf.constant(np.arange(steps)[None] < lengths[:, None])
        group_counts = ([int(g) for g in args.groups.split(",")] if args.groups
                        else sorted({1, groups}))
        variants = [("keras.layers.LSTM", keras.layers.LSTM, 1)] + [
            (f"FusedLSTM, groups {n}", FusedLSTM, n) for n in group_counts]
        # The native ops spread their rows over the intra-op threads: with one
        # thread per op they would run on one core, which textclf never does.
        if native_lstm_available("float32") and args.intra_op_threads != 1:
            variants.append(("FusedLSTM, native ops", FusedLSTM, None))
        flops = 3 * 2 * 4 * units * (features + units) * steps * batch
        steps_fns = []
        for name, cls, n_groups in variants:
            keras.utils.set_random_seed(1)
            layer = cls(units, return_sequences=True)
            if cls is FusedLSTM:  # groups None: the native ops, which need no slices
                layer.native_loop = n_groups is None
                layer.batch_groups = n_groups or 1

            @tf.function
            def train_step(x, mask, layer=layer):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(layer(x, mask=mask, training=True) ** 2)
                return tape.gradient(loss, [x, *layer.trainable_weights])

            steps_fns.append((name, lambda step=train_step: [g.numpy() for g in step(x, mask)]))
        products = bulk_products(tf, batch, steps, features, units, groups)
        steps_fns.append((f"bulk matmuls, groups {groups}", lambda run=products: run().numpy()))
        # Interleaved (A B C A B C ...): drifts in the machine's speed hit every
        # variant alike instead of whichever ran during them.
        times = {name: [] for name, _ in steps_fns}
        for _, fn in steps_fns:
            fn()  # trace and warm up
        for _ in range(args.repeats):
            for name, fn in steps_fns:
                times[name].append(_timed(fn))
        baseline = statistics.median(times[steps_fns[0][0]])
        for name, _ in steps_fns:
            seconds = statistics.median(times[name])
            gflops = flops / seconds / 1e9
            print(f"  batch {batch:3d}  {name:23s} {seconds * 1e3:7.1f} ms  "
                  f"{seconds / steps * 1e6:6.0f} us/step  {gflops:6.1f} GFLOP/s "
                  f"({gflops / peak:4.0%} of peak)  speed-up {baseline / seconds:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
