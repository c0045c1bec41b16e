"""Time the NumPy LSTM forward + backward against tf.GradientTape on the CPU.

The same computation on both sides: a Keras ``LSTM(units, return_sequences=True)``
over x (batch, steps, features) with a right-padding mask and a non-zero initial
state, loss = sum(y * G), gradients w.r.t. the kernel, recurrent kernel, bias,
the inputs and the initial state. TensorFlow runs it eagerly and inside a
``tf.function`` (graph, traced once before timing); NumPy runs
``textclf.reference.recurrent.Recurrent``. Prints median wall times of
``--repeats`` runs after a warm-up, and the ratios NumPy / TensorFlow
(project target: <= 3).

``--blas-threads`` (default 1) caps NumPy's BLAS threads through threadpoolctl:
the per-step products are (batch, units) x (units, 4 units), far too small to
share between threads, and on a loaded machine a multi-threaded OpenBLAS spends
most of its time waiting for its threads (measured 10x slower). 0 leaves the
library default.

    python scripts/bench_reference.py [--batch 32 --steps 100 --units 128 --features 128]
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


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (tracing, allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="threads for NumPy's BLAS (0: the library default)")
    args = parser.parse_args(argv)
    if args.blas_threads > 0:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.blas_threads, user_api="blas")

    import keras
    import tensorflow as tf

    from textclf.reference.keras_weights import build_recurrent, recurrent_params, recurrent_spec

    rng = np.random.default_rng(0)
    b, t, u, d = args.batch, args.steps, args.units, args.features
    x = rng.normal(size=(b, t, d)).astype(args.dtype)
    lengths = rng.integers(t // 2, t + 1, size=b)
    mask = np.arange(t)[None, :] < lengths[:, None]
    h0, c0 = (rng.normal(scale=0.5, size=(b, u)).astype(args.dtype) for _ in range(2))
    g = rng.normal(size=(b, t, u)).astype(args.dtype)

    layer = keras.layers.LSTM(u, return_sequences=True, dtype=args.dtype)
    layer.build((b, t, d))
    reference = build_recurrent(recurrent_spec(layer))
    params = recurrent_params(layer)

    xt, mt, gt = tf.constant(x), tf.constant(mask), tf.constant(g)
    states = [tf.constant(h0), tf.constant(c0)]
    variables = [layer.cell.kernel.value, layer.cell.recurrent_kernel.value, layer.cell.bias.value]

    def tape_step():
        with tf.GradientTape() as tape:
            tape.watch(xt)
            tape.watch(states)
            y = layer(xt, mask=mt, initial_state=states)
            loss = tf.reduce_sum(y * gt)
        return tape.gradient(loss, [xt] + states + variables)

    graph_step = tf.function(tape_step)

    def numpy_step():
        y, _, cache = reference.forward(params, x, mask, (h0, c0))
        return reference.backward(params, g, cache)

    # Same numbers on both sides before timing anything.
    grads, dx, (dh0, dc0) = numpy_step()
    tf_grads = [np.asarray(v) for v in tape_step()]
    tol = 1e-4 if args.dtype == "float32" else 1e-10
    for name, ours, theirs in [("x", dx, tf_grads[0]), ("h0", dh0, tf_grads[1]),
                               ("c0", dc0, tf_grads[2]), ("kernel", grads["kernel"], tf_grads[3]),
                               ("recurrent_kernel", grads["recurrent_kernel"], tf_grads[4]),
                               ("bias", grads["bias"], tf_grads[5])]:
        scale = max(float(np.abs(theirs).max()), 1e-12)
        err = float(np.abs(ours - theirs).max()) / scale
        if err > tol:
            print(f"gradient of {name} differs: max relative {err:.2e}", file=sys.stderr)
            return 1

    t_numpy = median_time(numpy_step, args.repeats)
    t_eager = median_time(tape_step, args.repeats)
    t_graph = median_time(graph_step, args.repeats)
    print(f"LSTM forward + backward, batch {b}, {t} steps, {d} features, {u} units, "
          f"{args.dtype}, median of {args.repeats} (TensorFlow {tf.__version__}, "
          f"{os.cpu_count()} CPUs, NumPy BLAS threads: {args.blas_threads or 'default'})")
    print(f"  numpy reference          {t_numpy * 1e3:8.1f} ms")
    print(f"  tf.GradientTape, eager   {t_eager * 1e3:8.1f} ms   numpy/eager = {t_numpy / t_eager:.2f}")
    print(f"  tf.GradientTape, graph   {t_graph * 1e3:8.1f} ms   numpy/graph = {t_numpy / t_graph:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
