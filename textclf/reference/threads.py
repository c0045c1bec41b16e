"""Cap the BLAS threads NumPy uses while the reference nets run.

A recurrent step multiplies a (batch, units) block by a (units, 4 units)
matrix: far too little work to share between threads. On a busy machine a
multi-threaded OpenBLAS spends most of such a product waiting for its threads
(measured here: the NumPy engine on SST-2's test split, bi-LSTM, 12.1 s with
2 threads against 2.2 s with one), so the reference runs single-threaded by
default. threadpoolctl comes with scikit-learn; without it nothing is capped.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def limited_blas(threads: int | None = 1):
    """Within the block, BLAS uses at most ``threads`` threads (None: no cap)."""
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        yield
        return
    with threadpool_limits(threads, user_api="blas"):
        yield
