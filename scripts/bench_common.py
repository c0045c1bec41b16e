"""Pieces shared by the benchmark scripts (``scripts/bench*.py``): results, child
processes with their peak RSS, the epoch clock, FLOP counts and the matmul peak.

Nothing here imports TensorFlow or Keras at module level: the peer workers
(scikit-learn, fastText) import this module too, and their peak RSS must not
include TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
if str(ROOT) not in sys.path:  # textclf is imported from the working tree
    sys.path.insert(0, str(ROOT))

MB = 1024 * 1024


# --------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------


@dataclass
class Result:
    """One contender on one dataset. ``None`` means "not measured / not applicable".

    Times are seconds; ``curve`` holds ``[seconds of training so far, test
    accuracy]`` after each epoch (test evaluation time excluded from the clock).
    """

    contender: str  # e.g. "textclf cnn (bbc_cnn.yaml)"
    dataset: str  # "bbc" | "imdb"
    family: str  # "cnn" | "rnn" | "svm" | "fasttext": what a row is compared with
    kind: str  # "textclf" | "naive" | "peer"
    error: str | None = None  # why the row is missing (unavailable, failed, skipped)
    n_train: int | None = None
    n_test: int | None = None
    test_accuracy: float | None = None
    macro_f1: float | None = None
    train_seconds: float | None = None  # model.fit wall (per-epoch test evaluation excluded)
    epochs: int | None = None  # epochs actually run
    steady_ex_per_s: float | None = None  # training examples/s, steady state
    steady_note: str = ""  # how the steady state was taken
    curve: list = field(default_factory=list)
    predict_docs: int | None = None
    predict_docs_per_s: float | None = None  # bulk, in-process, raw strings -> labels
    predict_batch: int | None = None
    predict_extra: dict = field(default_factory=dict)  # other engines / batch sizes: docs/s
    peak_rss_bytes: int | None = None  # of the worker process (train + bulk predict)
    model_bytes: int | None = None  # what a user keeps on disk to predict
    flops: dict = field(default_factory=dict)  # see flop_summary()
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "Result":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def write_json(path: Path, value) -> None:
    """JSON written to a temporary file, then renamed (never half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dir_size(path: Path) -> int:
    """Bytes of all regular files under ``path`` (or of the file itself)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------
# Child processes: wall time and peak RSS.
# --------------------------------------------------------------------------


@dataclass
class ProcessRun:
    returncode: int
    seconds: float  # whole process, fork to exit
    peak_rss_bytes: int  # ru_maxrss of this one process
    log: Path | None

    def tail(self, lines: int = 15) -> str:
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


def child_env(gpu: bool = False, extra: dict | None = None) -> dict:
    """Environment of every child: quiet TensorFlow, the working tree importable,
    GPUs hidden unless ``gpu``."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra or {})
    return env


# A small Python process between the benchmark and each measured command. On
# Linux a child's ru_maxrss starts from the RSS of the process it was forked
# from (exec keeps the old image's high-water mark), so a command forked
# straight from this TensorFlow-laden process would report at least ~700 MB.
# Forked from this wrapper instead, it starts from the wrapper's ~10 MB, and
# the wrapper's RUSAGE_CHILDREN covers that one child only.
_WRAPPER = """\
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as out:
    out.write(f"{code} {seconds} {peak}")
"""


def run_process(command: Sequence[str], log: Path | None, env: dict,
                cwd: Path = ROOT) -> ProcessRun:
    """Run ``command`` to completion through the wrapper above; stdout+stderr go
    to ``log`` (or /dev/null). Returns its exit code, wall time (measured by the
    wrapper, fork to exit) and peak RSS (Linux reports ru_maxrss in kB)."""
    import tempfile

    handle, report = tempfile.mkstemp(prefix="bench-rusage-", suffix=".txt")
    os.close(handle)
    sink = open(log, "w", encoding="utf-8") if log else open(os.devnull, "w")
    try:
        with sink:
            wrapper = subprocess.Popen([sys.executable, "-S", "-c", _WRAPPER, report,
                                        *command], stdout=sink, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=cwd, env=env)
            try:
                wrapper.wait()
            except KeyboardInterrupt:
                wrapper.terminate()
                wrapper.wait()
                raise
        fields = Path(report).read_text().split()
        if len(fields) != 3:
            return ProcessRun(wrapper.returncode or 1, 0.0, 0, log)
        return ProcessRun(int(fields[0]), float(fields[1]), int(fields[2]) * 1024, log)
    finally:
        os.unlink(report)


# --------------------------------------------------------------------------
# Timing inside fit: the epoch clock.
# --------------------------------------------------------------------------


def make_epoch_clock(evaluate: Callable | None = None):
    """A Keras callback timing each epoch; ``evaluate(model) -> test accuracy``
    runs after every epoch with its time taken off the clock.

    After ``fit`` the callback holds:

    - ``epochs``: per epoch ``{"train": seconds from epoch start to the end of
      its last training batch, "total": seconds to the epoch's end (validation,
      checkpoints and other callbacks included), "batch_ends": seconds from the
      epoch start to each batch end}``;
    - ``curve``: ``[clock seconds, test accuracy]`` per epoch, where the clock
      runs from ``on_train_begin`` and stops while ``evaluate`` runs;
    - ``fit_seconds``: the clock at ``on_train_end``.

    It is appended last to the callback list, so its ``on_epoch_end`` sees the
    epoch after every other callback (checkpoint, early stopping) has run.
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[dict] = []
            self.curve: list[list[float]] = []
            self.fit_seconds: float | None = None
            self._excluded = 0.0

        def _clock(self) -> float:
            return time.perf_counter() - self._start - self._excluded

        def on_train_begin(self, logs=None):
            self._start = time.perf_counter()
            self._excluded = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = time.perf_counter()
            self._batch_ends = []
            self._first_batch_wait = None

        def on_train_batch_begin(self, batch, logs=None):
            if self._first_batch_wait is None:  # the data pipeline's turnover between epochs
                self._first_batch_wait = time.perf_counter() - self._epoch_start

        def on_train_batch_end(self, batch, logs=None):
            self._batch_ends.append(time.perf_counter() - self._epoch_start)

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            ends = self._batch_ends
            self.epochs.append({"train": ends[-1] if ends else now - self._epoch_start,
                                "total": now - self._epoch_start, "batch_ends": ends,
                                "first_batch_wait": self._first_batch_wait})
            if evaluate is not None:
                at = self._clock()
                began = time.perf_counter()
                accuracy = float(evaluate(self.model))
                self._excluded += time.perf_counter() - began
                self.curve.append([at, accuracy])

        def on_train_end(self, logs=None):
            self.fit_seconds = self._clock()

    return EpochClock()


@dataclass
class EpochWork:
    """What one training epoch computed, batch by batch (arrays of shape (n_batches,))."""

    examples: np.ndarray
    executed_flops: np.ndarray  # training FLOPs (training_flops) at the padded widths
    useful_flops: np.ndarray  # the same at the real token counts


def epoch_work(arch: "Architecture", batches: Sequence[np.ndarray], lengths: np.ndarray,
               widths: Sequence[int]) -> EpochWork:
    """Per-batch work of one epoch: ``batches`` are row-index arrays, ``lengths``
    (N,) real token counts, ``widths`` the padded width of each batch."""
    examples = np.array([len(rows) for rows in batches], dtype=np.float64)
    executed = np.array([training_flops(arch, np.full(len(rows), width), useful=False)
                         for rows, width in zip(batches, widths)])
    useful = np.array([training_flops(arch, lengths[rows], useful=True) for rows in batches])
    return EpochWork(examples, executed, useful)


def steady_state(epochs: list[dict], work: Sequence[EpochWork]) -> dict:
    """Training examples/s and GFLOP/s (executed, useful) in the steady state.

    With two or more epochs: the median over the epochs after the first (the
    first one traces the graph). With one epoch: the batches after the first
    5% (at least one). ``epochs`` comes from :func:`make_epoch_clock`,
    ``work[e]`` from :func:`epoch_work`.
    """
    empty = {"ex_per_s": None, "executed_gflop_per_s": None, "useful_gflop_per_s": None,
             "padded_share": None}
    if not epochs:
        return {**empty, "note": "no epoch finished"}
    if len(epochs) >= 2:
        later = range(1, len(epochs))

        def rate(values):
            return statistics.median(values(e) / epochs[e]["train"] for e in later)

        executed = sum(work[e].executed_flops.sum() for e in later)
        useful = sum(work[e].useful_flops.sum() for e in later)
        return {"ex_per_s": rate(lambda e: work[e].examples.sum()),
                "executed_gflop_per_s": rate(lambda e: work[e].executed_flops.sum()) / 1e9,
                "useful_gflop_per_s": rate(lambda e: work[e].useful_flops.sum()) / 1e9,
                "padded_share": 1.0 - useful / executed,
                "note": f"median of epochs 2-{len(epochs)}"}
    ends = epochs[0]["batch_ends"]
    w = work[0]
    n = len(ends)
    skip = max(1, n // 20)
    if n != len(w.examples) or n - skip < 2:  # too few batches to leave the first ones out
        seconds, rows, note = epochs[0]["train"], slice(None), "1 epoch, tracing included"
    else:
        seconds, rows = ends[-1] - ends[skip - 1], slice(skip, None)
        note = f"1 epoch: batches {skip + 1}-{n} of {n}"
    return {"ex_per_s": w.examples[rows].sum() / seconds,
            "executed_gflop_per_s": w.executed_flops[rows].sum() / seconds / 1e9,
            "useful_gflop_per_s": w.useful_flops[rows].sum() / seconds / 1e9,
            "padded_share": 1.0 - w.useful_flops[rows].sum() / w.executed_flops[rows].sum(),
            "note": note}


def find(results: list, dataset: str, kind: str, family: str):
    """The first error-free Result of ``dataset`` with that kind and family, or None."""
    return next((r for r in results if r.dataset == dataset and r.kind == kind
                 and r.family == family and not r.error), None)


def first_time_reaching(curve: list, target: float) -> float | None:
    """Clock seconds of the first ``[seconds, accuracy]`` point at or above ``target``."""
    for seconds, accuracy in curve:
        if accuracy >= target - 1e-9:
            return seconds
    return None


def waits_before_reaching(result: Result, target: float) -> float:
    """Seconds that ``result``'s epochs 2 onward waited for their first batch, up to
    and including the epoch whose end first reached ``target`` (all epochs if none
    did). ``curve`` and ``extra["epoch_times"]`` have one entry per epoch.

    Keras' own array pipeline (the naive models) sometimes starts an epoch seconds
    late (tf.data's autotune thread, see README: Performance); taking these waits
    off its time to an accuracy gives what an undisturbed run would have taken.
    """
    waits = [e.get("first_batch_wait") or 0.0 for e in result.extra.get("epoch_times") or []]
    waited = 0.0
    for epoch, (_, accuracy) in enumerate(result.curve):
        if 0 < epoch < len(waits):
            waited += waits[epoch]
        if accuracy >= target - 1e-9:
            break
    return waited


# --------------------------------------------------------------------------
# FLOP counts.
# --------------------------------------------------------------------------

GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


@dataclass(frozen=True)
class Architecture:
    """What the FLOP count needs to know of a model.

    cnn: ``kernel_sizes``, ``filters``, ``end_pad`` (textclf pads every row by
    the widest kernel; the naive model does not) and ``argmax_pool_gradient``
    (MaxPooledConv1D's backward reads only the winning windows); rnn: ``cell``,
    ``units``, ``layers``, ``bidirectional``.
    """

    type: str  # "cnn" | "rnn"
    embedding_dim: int
    n_classes: int
    kernel_sizes: tuple = ()
    filters: int = 0
    end_pad: int = 0
    cell: str = "lstm"
    units: int = 0
    layers: int = 1
    bidirectional: bool = False
    argmax_pool_gradient: bool = False

    @classmethod
    def from_model_config(cls, model, n_classes: int) -> "Architecture":
        """From a textclf ``ModelConfig`` (textclf's builders: cnn pads by max(K))."""
        if model.type == "cnn":
            from textclf.models.cnn import pools_in_conv

            return cls("cnn", model.embedding_dim, n_classes, tuple(model.kernel_sizes),
                       model.filters, max(model.kernel_sizes),
                       argmax_pool_gradient=pools_in_conv(model)
                       and model.pool_gradient == "argmax")
        return cls("rnn", model.embedding_dim, n_classes, cell=model.cell, units=model.units,
                   layers=model.layers, bidirectional=model.bidirectional)

    def describe(self) -> str:
        if self.type == "cnn":
            return (f"conv {'/'.join(map(str, self.kernel_sizes))} x {self.filters}, "
                    f"E={self.embedding_dim}")
        bi = "bi-" if self.bidirectional else ""
        return f"{bi}{self.cell} {self.units} x {self.layers}, E={self.embedding_dim}"


def forward_flops(arch: Architecture, steps: np.ndarray, useful: bool) -> float:
    """Multiply-add FLOPs (2 per MAC) of the forward pass over a set of examples.

    ``steps`` (N,) holds each example's time steps: the padded width of its
    batch for *executed* FLOPs, its real token count for *useful* FLOPs.
    Executed counts what the kernels run (a Conv1D over ``T + end_pad`` gives
    ``T + end_pad - K + 1`` windows); useful counts one window / one recurrent
    step per real token. Embedding lookups, activations, pooling and the loss
    are left out (gathers and element-wise work, small next to the matmuls).
    """
    steps = np.asarray(steps, dtype=np.float64)
    n = len(steps)
    if arch.type == "cnn":
        total = 0.0
        for k in arch.kernel_sizes:
            windows = steps if useful else np.maximum(steps + arch.end_pad - k + 1, 0)
            total += 2.0 * k * arch.embedding_dim * arch.filters * windows.sum()
        return total + n * 2.0 * len(arch.kernel_sizes) * arch.filters * arch.n_classes
    directions = 2 if arch.bidirectional else 1
    gates = GATES[arch.cell]
    per_step = 0.0
    width_in = arch.embedding_dim
    for _ in range(arch.layers):
        per_step += directions * 2.0 * gates * arch.units * (width_in + arch.units)
        width_in = arch.units * directions
    return per_step * steps.sum() + n * 2.0 * width_in * arch.n_classes


def training_flops(arch: Architecture, steps: np.ndarray, useful: bool) -> float:
    """FLOPs of a training step over a set of examples (``steps`` as in
    :func:`forward_flops`): the forward pass, and a backward pass of 2 matmuls
    per matmul, except where ``arch.argmax_pool_gradient``: there each
    branch's backward touches only the F winning windows of each example,
    2·K·E·F for the kernel's gradient and as much for the input's.
    """
    forward = forward_flops(arch, steps, useful)
    if not (arch.type == "cnn" and arch.argmax_pool_gradient):
        return 3.0 * forward
    n = len(steps)
    head = n * 2.0 * len(arch.kernel_sizes) * arch.filters * arch.n_classes
    windows_backward = n * sum(4.0 * k * arch.embedding_dim * arch.filters
                               for k in arch.kernel_sizes)
    return forward + 2.0 * head + windows_backward


def inference_flops(arch: Architecture, widths: np.ndarray, lengths: np.ndarray,
                    seconds: float) -> dict:
    """GFLOP/s of a forward pass over N examples: ``widths`` (N,) the padded width
    each example was run at, ``lengths`` (N,) its real token count."""
    executed = forward_flops(arch, widths, useful=False)
    useful = forward_flops(arch, lengths, useful=True)
    return {"executed_gflop_per_s": executed / seconds / 1e9,
            "useful_gflop_per_s": useful / seconds / 1e9,
            "padded_share": 1.0 - useful / executed if executed else None}


def recurrent_ops(model) -> list[str]:
    """The op types that run a model's recurrence in one training step, forward
    and backward: ``CudnnRNNV3`` and ``CudnnRNNBackpropV3`` where Keras chose
    cuDNN's fused kernel (a GPU), ``While`` for a loop over the time steps
    (Keras' generic loop and textclf's fused CPU loops). Empty for a model
    without a recurrence. Traced, not run: ``model``'s first input gives the
    signature (token ids)."""
    import tensorflow as tf

    signature = tf.TensorSpec(model.inputs[0].shape, model.inputs[0].dtype)

    @tf.function(input_signature=[signature])
    def training_step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(ids, training=True), tf.float32))
        return tape.gradient(loss, model.trainable_variables)

    graph = training_step.get_concrete_function().graph
    types = {op.type for op in graph.get_operations()}
    return sorted(t for t in types if "Cudnn" in t or t in ("While", "StatelessWhile"))


def ran_cudnn(ops: list[str]) -> bool:
    """Whether :func:`recurrent_ops` found cuDNN's kernel among the ops."""
    return any("Cudnn" in op for op in ops)


# --------------------------------------------------------------------------
# The matmul peak.
# --------------------------------------------------------------------------


def matmul_peak(size: int = 2048, repeats: int = 10, dtype: str = "float32",
                device: str | None = None) -> dict:
    """Best-of-``repeats`` GFLOP/s of one ``size`` x ``size`` matmul, TensorFlow and NumPy.

    TensorFlow runs ``tf.linalg.matmul`` inside a ``tf.function`` that sums the
    product, so the timing includes the work but not a 16 MB copy back to
    Python; ``.numpy()`` on the sum waits for the device. NumPy (float32 only)
    is given for reference. Each side gets one untimed warm-up.
    """
    import tensorflow as tf

    flops = 2.0 * size ** 3
    place = tf.device(device) if device else contextlib.nullcontext()
    with place:
        a = tf.random.uniform((size, size), dtype=tf.float32)
        b = tf.random.uniform((size, size), dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
        product = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.linalg.matmul(x, y),
                                                                 tf.float32)))
        product(a, b).numpy()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            product(a, b).numpy()
            times.append(time.perf_counter() - started)
    result = {"dtype": dtype, "size": size, "repeats": repeats,
              "tf_gflop_per_s": flops / min(times) / 1e9,
              "tf_median_gflop_per_s": flops / statistics.median(times) / 1e9}
    if dtype == "float32":
        x = np.random.default_rng(0).random((size, size), dtype=np.float32)
        y = np.random.default_rng(1).random((size, size), dtype=np.float32)
        x @ y
        np_times = []
        for _ in range(repeats):
            started = time.perf_counter()
            x @ y
            np_times.append(time.perf_counter() - started)
        result["numpy_gflop_per_s"] = flops / min(np_times) / 1e9
    return result


# --------------------------------------------------------------------------
# Data: the same split for every contender.
# --------------------------------------------------------------------------


def load_recipe_splits(recipe: str, overrides: Sequence[str]):
    """``(cfg, splits)`` of a recipe: textclf's own reader and stratified split.

    Every contender calls this with the same recipe data section and overrides,
    so all of them see the same train/valid/test texts.
    """
    from textclf.config import load_config
    from textclf.data import load_splits

    cfg = load_config(recipe, tuple(overrides))
    return cfg, load_splits(cfg.data)


def cycled(items: Sequence, n: int) -> list:
    """``items`` repeated in order until there are ``n`` of them."""
    if not items:
        return []
    reps = -(-n // len(items))
    return (list(items) * reps)[:n]


def one_line(text: str) -> str:
    """A document as one line (fastText and line-per-document files need it)."""
    return " ".join(text.split())


def worker_main(tasks: dict[str, Callable[[dict], dict]], argv=None) -> int:
    """``python scripts/bench_X.py TASK --spec SPEC.json --out RESULT.json``."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=sorted(tasks))
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    spec = read_json(Path(args.spec))
    result = tasks[args.task](spec)
    write_json(Path(args.out), result)
    return 0



def scores(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """(accuracy, macro-F1) by textclf's own metric code, for every contender."""
    from textclf.evaluation import classification_report

    report = classification_report(np.asarray(y_true), np.asarray(y_pred), list(labels))
    return float(report["accuracy"]), float(report["macro"]["f1"])
