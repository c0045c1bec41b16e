"""textclf's native CPU kernels: the LSTM recurrence and its gradients; Adam on rows.

The fused graph loop of :mod:`textclf.models.fused_lstm` runs one small matmul
per step each way, but around it about 30 small ops per step and batch slice,
each dispatched by TensorFlow's executor, and on a CPU the dispatch costs more
than the arithmetic (``scripts/bench_lstm.py``: the loop's products timed in
bulk, without a loop, run 2.7x faster). ``lstm_kernels.cc`` runs the same
recurrence (forward, and backprop through time) inside one op each: the rows
of a batch are cut into one block per intra-op thread, and each block runs all
its steps with one single-threaded product (on the recurrent kernel packed
once per call, in register tiles of the widest vectors the CPU has) and the
fused element-wise cell update per step. A third op takes the backward op's
output and computes the gradients of the layer's inputs and of both weights
in one pass over it, in register tiles of its own (in training, where the
layer's inputs are float32); the input projection and everything else stay
large TensorFlow matmuls.

The same library holds one op for the optimizer (``adam_kernels.cc``):
:class:`textclf.fused_adam.FusedAdam`'s update of a variable whose gradient
arrives as rows (an embedding's), with Keras' clipping of the rows and their
summing per variable row done inside the dense Adam step, on all intra-op
threads, instead of in TensorFlow's clipping ops, one single-threaded
``UnsortedSegmentSum`` and ``ResourceApplyAdam``.

The library is compiled on the machine that uses it (``make kernels``, run by
``make install``, or ``python -m textclf.kernels.build``), against the
installed TensorFlow's headers and for this CPU's instruction set. When it is
missing, was built for another TensorFlow or a CPU with instructions this one
lacks, fails to load, or ``TEXTCLF_NATIVE_KERNELS=0`` is set, :func:`native_ops`
returns None, the layers run the graph loop and FusedAdam TensorFlow's ops,
which compute the same numbers (``tests/test_native_lstm.py`` checks the LSTM
ops against the graph loop, Keras' LSTM and the NumPy reference;
``tests/test_fused_adam.py`` the Adam op against TensorFlow's path).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path

from ..precision import cpu_flags

HERE = Path(__file__).resolve().parent
#: The library's sources: the LSTM recurrence and its gradients, and Adam on rows.
SOURCES = (HERE / "lstm_kernels.cc", HERE / "adam_kernels.cc")
LIBRARY = HERE / "_textclf_kernels.so"
#: What the library was built for: {"tensorflow": version, "cpu_flags": [...]}.
BUILD_INFO = HERE / "_textclf_kernels.json"
#: Set to 0 to run the graph loops (and TensorFlow's Adam ops) even where the library is built.
SWITCH = "TEXTCLF_NATIVE_KERNELS"
#: Set to 0 to turn off the Adam op alone (the benchmark's ablation row for it).
ADAM_SWITCH = "TEXTCLF_NATIVE_ADAM"


def unusable_because(tf_version: str) -> str | None:
    """Why the native ops cannot be used here, or None if they can."""
    if os.environ.get(SWITCH, "1") == "0":
        return f"{SWITCH}=0"
    return build_problem(tf_version)


def build_problem(tf_version: str) -> str | None:
    """What is wrong with the built library for this TensorFlow and CPU, or None."""
    if not LIBRARY.exists():
        return f"not built (make kernels, or python -m textclf.kernels.build)"
    try:
        info = json.loads(BUILD_INFO.read_text())
    except (OSError, ValueError):
        return f"{BUILD_INFO.name} is missing or unreadable: rebuild (make kernels)"
    if info.get("tensorflow") != tf_version:
        return (f"built for TensorFlow {info.get('tensorflow')}, running {tf_version}: "
                "rebuild (make kernels)")
    missing = set(info.get("cpu_flags", [])) - cpu_flags()
    if missing:
        return (f"built on a CPU with {', '.join(sorted(missing)[:4])}, which this one lacks: "
                "rebuild (make kernels)")
    return None


@functools.cache
def native_ops():
    """The loaded op module (``textclf_lstm_forward``, ``textclf_lstm_backward``,
    ``textclf_lstm_gradients``, ``textclf_apply_adam_to_rows``), or None when
    the library cannot be used here (see :func:`unusable_because`); the reason
    goes to stderr once, unless the library was simply never built."""
    import tensorflow as tf

    reason = unusable_because(tf.__version__)
    if reason is None:
        try:
            return tf.load_op_library(str(LIBRARY))
        except (tf.errors.NotFoundError, OSError) as error:
            reason = f"failed to load: {str(error).splitlines()[0]}"
    if LIBRARY.exists() and not reason.startswith(SWITCH):
        print(f"textclf: native LSTM kernels not used, {reason}; running the graph loop "
              "(and TensorFlow's Adam for embeddings)", file=sys.stderr)
    return None


_stock_ops_only = 0  # > 0 inside stock_ops_only()


@contextlib.contextmanager
def stock_ops_only():
    """Within it, layers trace their graph loops, not the native ops: for a
    graph that must run where textclf is not installed (``textclf export``:
    TensorFlow Serving has only TensorFlow's own ops)."""
    global _stock_ops_only
    _stock_ops_only += 1
    try:
        yield
    finally:
        _stock_ops_only -= 1


def native_lstm_available(dtype) -> bool:
    """True when the native ops can run a recurrence in ``dtype`` (float32
    only), outside :func:`stock_ops_only`."""
    import tensorflow as tf

    return (not _stock_ops_only and tf.as_dtype(dtype) == tf.float32
            and native_ops() is not None)


def native_adam_available() -> bool:
    """True when :class:`textclf.fused_adam.FusedAdam` can update a float32
    variable from its gradient's rows with ``textclf_apply_adam_to_rows``
    (``adam_kernels.cc``): the library is usable, ``TEXTCLF_NATIVE_ADAM=0``
    is not set, and no GPU is visible (the op has a CPU kernel only, and on a
    GPU the variables live there)."""
    import tensorflow as tf

    return (not _stock_ops_only and os.environ.get(ADAM_SWITCH, "1") != "0"
            and native_ops() is not None and not tf.config.list_logical_devices("GPU"))
