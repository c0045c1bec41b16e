"""Importing TensorFlow quietly, once, when a command needs it.

TensorFlow's C++ runtime prints start-up notices (oneDNN, absl) straight to
file descriptor 2 while it is imported, where Python's logging cannot reach
them. Unless ``--verbose`` is given they are sent to /dev/null for the length
of the import only; Python-level errors still surface as exceptions.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_fd_silenced():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. under a test runner)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(verbose: bool = False):
    """Import and return ``tensorflow``, hiding its start-up noise unless ``verbose``."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _stderr_fd_silenced():
            import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
    else:
        import tensorflow as tf
    return tf


def cpu_lstm_loop(model_cfg) -> str | None:
    """Which of textclf's CPU loops runs the model's LSTM: "native ops"
    (:mod:`textclf.kernels`) or "graph loop" (FusedLSTM's tf.while_loop);
    None when neither does (not an LSTM with ``model.cpu_loop: auto``, or a
    GPU is visible, where cuDNN's kernel runs it)."""
    if model_cfg.type != "rnn" or model_cfg.cell != "lstm" or model_cfg.cpu_loop != "auto":
        return None
    tf = import_tensorflow()
    if tf.config.list_physical_devices("GPU"):
        return None
    from .kernels import native_ops

    return "native ops" if native_ops() is not None else "graph loop"


def fused_loops_get_one_thread_per_op(model_cfg) -> bool:
    """Give each TensorFlow op one thread when the model runs FusedLSTM's graph
    loop on the CPU; True when that was done.

    FusedLSTM cuts a batch into one slice per core whose recurrences run side
    by side (inter-op parallelism). With the default thread pool every small
    op of one slice also splits itself over all cores and waits for the core
    busy with the other slice; one thread per op lets the slices proceed
    independently (scripts/bench_lstm.py --intra-op-threads 1, and the
    ablation in BENCHMARKS.md). Not with textclf's native LSTM ops: one op
    runs the whole recurrence there, its rows spread over the intra-op
    threads. It is a process-wide setting that TensorFlow accepts only
    before it runs its first op, so a process that already ran one keeps its
    threads (returns False).
    """
    # Not for FusedGRU: imdb_rnn's GRU (64 units) trained faster per step with
    # the default threads, timed both ways in separate processes.
    if len(os.sched_getaffinity(0)) < 2 or cpu_lstm_loop(model_cfg) != "graph loop":
        return False
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # "cannot be modified after initialization"
        return False
    return True
