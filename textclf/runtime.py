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
