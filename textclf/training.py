"""``textclf train``: config -> data -> vectoriser -> model -> fit -> run directory.

Everything TensorFlow-specific about fitting lives here: seeds, the optimizer,
the callbacks (early stopping, per-epoch checkpoint for ``--resume``, NaN
stop, CSV history, TensorBoard) and the distribution strategy.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .artifact import (CHECKPOINT_DIR, FORMAT_VERSION, MODEL_FILE, finalize, partial_dir_for,
                       prepare_partial_dir, write_json, write_text)
from .config import Config, config_from_dict, dump_config, parse_yaml
from .distribute import is_chief
from .errors import DataError, TextclfError, UsageError
from .optimizers import make_optimizer

# The checkpoint of the last finished epoch. Epoch e writes state-<e>.keras,
# non_trainable-<e>.npz (and best_weights-<e>.npz when best), then progress.json
# naming them ("files"); checkpoints without "files" used these fixed names.
STATE_FILE = "state.keras"  # model + optimizer at the end of the last finished epoch
PROGRESS_FILE = "progress.json"  # that epoch, and the early-stopping bookkeeping
BEST_FILE = "best_weights.npz"  # weights of the best epoch so far
RNG_FILE = "non_trainable.npz"  # non-trainable variables, Dropout's random state included


def log(message: str) -> None:
    """Progress for people: stderr, so stdout stays clean for data."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Set-up helpers.
# --------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool) -> None:
    """One seed for Python, NumPy and TensorFlow; op determinism on request."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def compile_classifier(model, cfg: Config, n_train: int, jit_compile="auto") -> None:
    """Optimizer, loss and metrics; ``n_train`` training examples size the
    learning-rate schedule; ``jit_compile`` as textclf.compilation resolved it."""
    import keras

    model.compile(
        jit_compile=jit_compile,
        optimizer=make_optimizer(cfg.train, n_train),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.train.label_smoothing),
        # F1Score(average="macro") accumulates the whole epoch's counts, so
        # val_macro_f1 is the real macro-F1, usable as an early-stopping monitor.
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 keras.metrics.F1Score(average="macro", name="macro_f1")],
        # Several steps per tf.function call: Keras' Python around each call
        # (callbacks, the call itself) took about 2.5 ms per step on the
        # development machine (README, Performance), 2-10% of a recipe's step.
        steps_per_execution=cfg.train.steps_per_execution,
    )


def distribution_strategy(cfg):
    """The tf.distribute strategy for ``train.distribute`` (see textclf.distribute)."""
    from .distribute import make_strategy

    return make_strategy(cfg)


def class_weights(cfg, labels: list[str], label_ids: np.ndarray) -> np.ndarray | None:
    """Weight per class (n_classes,) for ``train.class_weight``, or None."""
    if cfg.class_weight is None:
        return None
    counts = np.bincount(label_ids, minlength=len(labels)).astype(np.float64)
    if cfg.class_weight == "balanced":  # scikit-learn's definition: n / (k * n_c)
        return len(label_ids) / (len(labels) * np.maximum(counts, 1))
    unknown = sorted(set(cfg.class_weight) - set(labels))
    if unknown:
        raise UsageError(f"train.class_weight names labels not in the training data: "
                         f"{', '.join(unknown[:10])}")
    return np.array([cfg.class_weight.get(label, 1.0) for label in labels])


# --------------------------------------------------------------------------
# Callbacks.
# --------------------------------------------------------------------------


def make_callbacks(cfg: Config, work: Path, resume_progress: dict | None):
    import keras

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping whose bookkeeping survives ``--resume``."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if resume_progress:
                self.wait = resume_progress["wait"]
                self.best = resume_progress["best"]
                self.best_epoch = resume_progress["best_epoch"]
                best_name = checkpoint_files(resume_progress)["best"]
                best_path = work / CHECKPOINT_DIR / (best_name or BEST_FILE)
                if best_name and best_path.exists():
                    with np.load(best_path, allow_pickle=False) as stored:
                        self.best_weights = [stored[f"w{i}"] for i in range(len(stored.files))]

    class EpochCheckpoint(keras.callbacks.Callback):
        """After each epoch: model + optimizer, progress and best weights, atomically."""

        def __init__(self, stopper):
            super().__init__()
            self.stopper = stopper
            self.files = checkpoint_files(resume_progress) if resume_progress else {}

        def on_epoch_end(self, epoch, logs=None):
            ckpt = work / CHECKPOINT_DIR
            ckpt.mkdir(exist_ok=True)
            # Each epoch's files get names of their own and progress.json, replaced
            # last, names the set to resume from: a kill between any two writes
            # leaves the previous epoch's set whole and named (never a mix).
            files = {"state": f"state-{epoch}.keras", "non_trainable": f"non_trainable-{epoch}.npz",
                     "best": self.files.get("best")}
            tmp = ckpt / f".{files['state']}.tmp.keras"
            self.model.save(tmp)
            os.replace(tmp, ckpt / files["state"])
            # load_model re-seeds Dropout's random-state variables, so they are kept
            # apart; restoring them makes a resumed run draw the same masks.
            tmp_rng = ckpt / f".{files['non_trainable']}.tmp.npz"
            np.savez(tmp_rng, *[np.asarray(v) for v in self.model.non_trainable_variables])
            os.replace(tmp_rng, ckpt / files["non_trainable"])
            if self.stopper.best_weights is not None and self.stopper.best_epoch == epoch:
                files["best"] = f"best_weights-{epoch}.npz"
                tmp_best = ckpt / f".{files['best']}.tmp.npz"
                np.savez(tmp_best, **{f"w{i}": w for i, w in
                                      enumerate(self.stopper.best_weights)})
                os.replace(tmp_best, ckpt / files["best"])
            best = self.stopper.best
            write_json(ckpt / PROGRESS_FILE, {
                "epoch": epoch, "wait": self.stopper.wait, "best_epoch": self.stopper.best_epoch,
                "best": None if best is None else float(best),
                "stopped": bool(self.model.stop_training), "files": files})
            self.files = files
            for stale in ckpt.iterdir():  # the previous set, and temporaries of a killed run
                if stale.name != PROGRESS_FILE and stale.name not in files.values():
                    stale.unlink(missing_ok=True)

    class StopOnNaN(keras.callbacks.Callback):
        """Stop at the first NaN/inf loss and remember where, for a clear error."""

        nan_at: tuple | None = None

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.nan_at = (batch,)
                self.model.stop_training = True

    mode = "min" if cfg.train.monitor == "val_loss" else "max"
    stopper = ResumableEarlyStopping(
        monitor=cfg.train.monitor, mode=mode, restore_best_weights=True,
        patience=cfg.train.epochs if cfg.train.patience is None else cfg.train.patience)
    nan_stop = StopOnNaN()
    history = work / "history.csv"
    if resume_progress is not None and history.exists():
        _trim_history(history, resume_progress["epoch"])
    # The CSV row goes before the checkpoint, so no checkpointed epoch lacks its row;
    # a row written after the last checkpoint is dropped on resume (above).
    callbacks = [nan_stop, stopper,
                 keras.callbacks.CSVLogger(str(history), append=resume_progress is not None),
                 EpochCheckpoint(stopper)]
    if cfg.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(work / "logs")))
    return callbacks, nan_stop


def checkpoint_files(progress: dict | None) -> dict:
    """Names of the checkpoint files ``progress`` (progress.json) records."""
    return (progress or {}).get("files") or {"state": STATE_FILE, "non_trainable": RNG_FILE,
                                             "best": BEST_FILE}


def _trim_history(path: Path, last_epoch: int) -> None:
    """Keep the header and the complete rows of epochs up to ``last_epoch``: later
    rows belong to an epoch the resumed run trains again."""
    lines = path.read_text("utf-8").splitlines(keepends=True)
    keep = [line for i, line in enumerate(lines) if line.endswith("\n") and
            (i == 0 or int(line.split(",", 1)[0]) <= last_epoch)]
    write_text(path, "".join(keep))


def keras_verbosity(setting: str) -> int:
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return {"progress": 1, "epoch": 2, "quiet": 0}[setting]


# --------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------


@dataclass
class Prepared:
    """Data after reading, labelling and tokenising."""

    labels: list[str]
    sequences: dict  # split name -> list of int32 arrays
    label_ids: dict  # split name -> (N,) int64
    split_record: dict | None
    vectorizer: object
    n_stop_words: int = 0  # vocabulary ids 2 .. n + 1 (textclf.text.build_vectorizer)


def prepare_data(cfg: Config, vocabulary: list[str] | None = None) -> Prepared:
    """Read the splits and tokenise them; adapt the vectoriser unless given a vocabulary."""
    from .data import load_splits
    from .text import build_vectorizer, stop_words, vectorize

    splits = load_splits(cfg.data)
    for line in splits.summaries():
        log(line)
    labels = list(splits.label_map.labels)
    if len(labels) < 2:
        raise DataError(f"training data has a single class ({labels[0]!r}); a classifier "
                        f"needs at least 2", "data.train")
    if len(splits.train) < len(labels):
        raise DataError(f"{len(splits.train)} training examples for {len(labels)} classes; "
                        f"need at least one per class", "data.train")
    n_stop_words = len(stop_words(cfg.text))
    if vocabulary is None:
        vectorizer = build_vectorizer(cfg.text, splits.train.texts)
    else:
        import keras

        from .text import standardize_mode
        vectorizer = keras.layers.TextVectorization(
            standardize=standardize_mode(cfg.text), split=cfg.text.split, output_mode="int",
            name="vectorizer")
        vectorizer.set_vocabulary(vocabulary[2:])
    sequences, label_ids = {}, {}
    for name in ("train", "valid", "test"):
        part = getattr(splits, name)
        if part is not None:
            sequences[name] = vectorize(vectorizer, part.texts, cfg.text.max_length,
                                        n_stop_words)
            label_ids[name] = np.asarray(splits.label_map.encode(part.labels, f"{name} data"))
    lengths = [len(ids) for ids in sequences["train"]]
    dropped = f" without its {n_stop_words} stop words," if n_stop_words else ""
    log(f"training documents:{dropped} {np.mean(lengths):.1f} tokens on average after the "
        f"cut to {cfg.text.max_length}")
    return Prepared(labels=labels, sequences=sequences, label_ids=label_ids,
                    split_record=split_record(cfg, splits), vectorizer=vectorizer,
                    n_stop_words=n_stop_words)


def split_record(cfg: Config, splits) -> dict | None:
    """What ``split.json`` holds: enough to rebuild carved splits, and to notice if
    the training source changed since (its fingerprint)."""
    if not splits.indices:
        return None
    return {"seed": cfg.data.split.seed, "fractions": {"valid": cfg.data.split.valid,
                                                      "test": cfg.data.split.test},
            "source": list(cfg.data.train), "fingerprint": splits.fingerprint,
            **{name: idx.tolist() for name, idx in splits.indices.items()}}


def end_to_end_model(vectorizer, classifier, max_length: int, n_stop_words: int = 0):
    """Raw strings (B,) -> probabilities (B, C): the model a run directory holds
    (``n_stop_words``: ids 2 .. n + 1 are stop words, removed before the cut).

    It wraps an uncompiled copy of ``classifier``, so that model.keras holds
    no optimizer (:func:`textclf.models.common.uncompiled_copy`).
    """
    import keras

    from .models.common import uncompiled_copy
    from .models.layers import TruncateTokens

    text = keras.Input(shape=(), dtype="string", name="text")
    ids = vectorizer(text)
    ids = TruncateTokens(max_length, n_stop_words, name="truncate")(ids)
    probabilities = uncompiled_copy(classifier)(ids)
    return keras.Model(text, probabilities, name="textclf")


def train(config_path: str | None, overrides: tuple, output: str | None, force: bool,
          resume: str | None) -> Path | None:
    """Run ``textclf train``; returns the finished run directory (None on a non-chief
    worker of a multi-worker run, which writes none)."""
    if resume:
        target = Path(resume)
        work = partial_dir_for(target)
        if not (work / CHECKPOINT_DIR / PROGRESS_FILE).exists():
            if (target / "run.json").exists():
                raise UsageError(f"{target} is a finished run; nothing to resume")
            raise UsageError(f"{target}: no interrupted run to resume (looked for {work})")
        cfg = config_from_dict(parse_yaml((work / "config.yaml").read_text("utf-8"),
                                          str(work / "config.yaml")),
                               source=str(work / "config.yaml"))
        progress = json.loads((work / CHECKPOINT_DIR / PROGRESS_FILE).read_text("utf-8"))
        log(f"resuming {target} after epoch {progress['epoch'] + 1}")
        if not is_chief(cfg.train):  # reads the chief's checkpoint (shared file system)
            work = scratch_dir(work)
    else:
        if config_path is None:
            raise UsageError("train needs -c CONFIG (or --resume RUN_DIR)")
        from .config import load_config

        cfg = load_config(config_path, overrides)
        target = Path(output) if output else Path("runs") / Path(config_path).stem
        if cfg.train.tensorboard:
            _require_tensorboard()
        work = prepare_partial_dir(target, force) if is_chief(cfg.train) else scratch_dir(None)
        progress = None
    if not is_chief(cfg.train):
        return _train_as_worker(cfg, target, work, progress)
    try:
        run_training(cfg, target, work, progress)
    except KeyboardInterrupt:
        if (work / CHECKPOINT_DIR / PROGRESS_FILE).exists():
            raise TextclfError(f"interrupted; the last finished epoch is saved: resume with "
                               f"`textclf train --resume {target}`") from None
        import shutil
        shutil.rmtree(work, ignore_errors=True)
        raise TextclfError("interrupted before the first epoch finished; nothing saved") from None
    except UsageError:
        if progress is None:  # a data/config problem found before training: leave nothing
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        raise
    except (OSError, TextclfError) as exc:
        if not _no_space(exc):
            raise
        if (work / CHECKPOINT_DIR / PROGRESS_FILE).exists():
            raise TextclfError(f"no space left on device while writing {target}; the last "
                               f"finished epoch is saved: free some space, then resume with "
                               f"`textclf train --resume {target}`") from None
        import shutil
        shutil.rmtree(work, ignore_errors=True)
        raise TextclfError(f"no space left on device while writing {target}; "
                           "nothing saved") from None
    finalize(work, target, force=True if resume else force)
    return target


def _no_space(exc: BaseException) -> bool:
    """A full disk or quota, raised directly or wrapped by textclf.atomic."""
    import errno

    full = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    return any(isinstance(e, OSError) and e.errno in full for e in (exc, exc.__cause__))


def _require_tensorboard() -> None:
    """Keras' TensorBoard callback needs the tensorboard package for its summaries."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError("train.tensorboard needs the tensorboard package: "
                         "pip install 'keras-textclf[tensorboard]' (or pip install tensorboard)")


def scratch_dir(resume_from: Path | None) -> Path:
    """A private build folder for a non-chief worker (a copy of the run being resumed)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="textclf-worker-"))
    if resume_from is not None:
        shutil.copytree(resume_from, folder, dirs_exist_ok=True)
    return folder


def _train_as_worker(cfg: Config, target: Path, work: Path, progress: dict | None) -> None:
    """A non-chief worker trains in step with the chief, then drops its scratch copy."""
    import shutil

    try:
        run_training(cfg, target, work, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_training(cfg: Config, target: Path, work: Path, progress: dict | None) -> None:
    if cfg.model.type == "treenet":  # trees, not token ids: textclf.tree_runs
        from .tree_runs import run_tree_training

        return run_tree_training(cfg, target, work, progress)
    import keras

    # The dtype policy is process-wide: put it back, so that a later run in the
    # same process (tests, tune, the benchmark) starts from the same state.
    previous_policy = keras.mixed_precision.dtype_policy()
    try:
        return _run_classifier_training(cfg, target, work, progress)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _run_classifier_training(cfg: Config, target: Path, work: Path, progress: dict | None):
    import keras

    from .evaluation import classification_report
    from . import fused_adam  # noqa: F401  registers the optimizer a checkpoint resumes with
    from .models import build_model, layers  # noqa: F401  layers: registers custom layers
    from .artifact import refuse_code
    from .reference.export import export_numpy_weights
    from .text import load_embeddings

    # First: MultiWorkerMirroredStrategy, and the thread setting, must come
    # before TensorFlow runs any op.
    from .runtime import cpu_lstm_loop, fused_loops_get_one_thread_per_op

    if cfg.train.distribute == "none" and fused_loops_get_one_thread_per_op(cfg.model):
        log("one thread per TensorFlow op: the fused LSTM's batch slices run side by side")
    loop = cpu_lstm_loop(cfg.model)
    if loop:
        log(f"LSTM recurrence on a CPU: textclf's {loop}")
    strategy = distribution_strategy(cfg.train)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    vocabulary = None
    if progress is not None:
        vocabulary = (work / "vocabulary.txt").read_text("utf-8").split("\n")[:-1]
    data = prepare_data(cfg, vocabulary)
    vocabulary = data.vectorizer.get_vocabulary()
    n_classes = len(data.labels)
    if progress is None:
        write_text(work / "config.yaml", dump_config(cfg))
        write_json(work / "labels.json", {"labels": data.labels})
        write_text(work / "vocabulary.txt", "".join(f"{t}\n" for t in vocabulary))
        if data.split_record is not None:
            write_json(work / "split.json", data.split_record)
    log(f"{n_classes} classes, vocabulary of {len(vocabulary)} tokens")

    from .precision import resolve_mixed_precision

    precision, why = resolve_mixed_precision(cfg.train.mixed_precision)
    if cfg.train.mixed_precision == "auto":
        log(f"mixed precision auto: {precision} ({why})")
    if precision != "none":
        keras.mixed_precision.set_dtype_policy(precision)
    from .compilation import gpu_visible, resolve_jit_compile, resolve_pad_multiple

    # Logged where they differ from plain Keras on a CPU (run.json has them always).
    gpu = gpu_visible()
    pad_multiple, why = resolve_pad_multiple(cfg.train.pad_to_multiple_of, gpu)
    if cfg.train.bucketing and pad_multiple > 1:
        log(f"batch widths: rounded up to a multiple of {pad_multiple} ({why})")
    jit_compile, why = resolve_jit_compile(cfg.train.jit_compile, cfg.train.bucketing)
    if gpu or cfg.train.jit_compile != "auto":
        log(f"XLA: {_jit_words(jit_compile)} ({why})")
    from .distribute import describe

    log(describe(strategy, cfg.train.batch_size))
    with strategy.scope():
        if progress is not None:
            files = checkpoint_files(progress)
            refuse_code(work / CHECKPOINT_DIR / files["state"])  # clear message; safe_mode guards
            classifier = keras.models.load_model(work / CHECKPOINT_DIR / files["state"],
                                                 safe_mode=True)
            with np.load(work / CHECKPOINT_DIR / files["non_trainable"],
                         allow_pickle=False) as stored:
                for i, variable in enumerate(classifier.non_trainable_variables):
                    variable.assign(stored[f"arr_{i}"])
        else:
            pretrained = None
            if cfg.text.embeddings:
                pretrained, found = load_embeddings(cfg.text.embeddings, vocabulary,
                                                    cfg.model.embedding_dim, cfg.train.seed)
                log(f"pretrained vectors for {found} of {len(vocabulary) - 2} vocabulary "
                    f"words ({found / max(len(vocabulary) - 2, 1):.1%})")
            classifier = build_model(cfg.model, len(vocabulary), n_classes, pretrained,
                                     cfg.text.embeddings_trainable)
            compile_classifier(classifier, cfg, len(data.sequences["train"]), jit_compile)
    if progress is not None and jit_compile != "auto":
        classifier.jit_compile = jit_compile  # a reloaded checkpoint compiles with "auto"

    from .batching import BatchSequence

    weights = class_weights(cfg.train, data.labels, data.label_ids["train"])
    sample_weights = None if weights is None else weights[data.label_ids["train"]]
    start_epoch = 0 if progress is None else progress["epoch"] + 1
    fixed = None if cfg.train.bucketing else cfg.text.max_length
    train_batches = BatchSequence(data.sequences["train"], data.label_ids["train"], n_classes,
                                  cfg.train.batch_size, seed=cfg.train.seed, shuffle=True,
                                  bucketing=cfg.train.bucketing, fixed_length=fixed,
                                  sample_weights=sample_weights, start_epoch=start_epoch,
                                  pad_multiple=pad_multiple)
    valid_batches = BatchSequence(data.sequences["valid"], data.label_ids["valid"], n_classes,
                                  cfg.train.batch_size, shuffle=False, fixed_length=fixed,
                                  pad_multiple=pad_multiple)
    callbacks, nan_stop = make_callbacks(cfg, work, progress)
    callbacks.insert(0, rewind_batches_callback(train_batches, start_epoch))
    from .distribute import keras_multi_worker_fit
    started = time.perf_counter()
    # A run that stopped early before being finalised fits no more epochs, but fit
    # still calls on_train_end, where early stopping restores the best weights.
    epochs = start_epoch if progress is not None and progress.get("stopped") else cfg.train.epochs
    with keras_multi_worker_fit(classifier, strategy, train_batches.batch(np.arange(1))):
        classifier.fit(train_batches.as_dataset(), validation_data=valid_batches.as_dataset(),
                       epochs=epochs, initial_epoch=start_epoch, callbacks=callbacks,
                       shuffle=False, verbose=keras_verbosity(cfg.train.verbose))
    if nan_stop.nan_at is not None:
        raise TextclfError("training diverged: the loss became NaN or infinite; lower "
                           "train.learning_rate or set train.clipnorm")
    train_seconds = time.perf_counter() - started

    model = end_to_end_model(data.vectorizer, classifier, cfg.text.max_length,
                             data.n_stop_words)
    metrics = {}
    for split in [name for name in ("valid", "test") if name in data.sequences]:
        probabilities = predict_ids(classifier, data.sequences[split], cfg.train.batch_size,
                                    pad_multiple)
        report = classification_report(data.label_ids[split], probabilities.argmax(axis=1),
                                       data.labels)
        metrics[split] = report
        log(f"{split}: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro']['f1']:.4f}"
            f" ({report['n_examples']} examples)")
    model.save(work / MODEL_FILE)
    # From the end-to-end model, the .npz also carries the text rules and vocabulary:
    # the NumPy engine then needs nothing else from the run directory.
    export_numpy_weights(model, work / "weights.npz")
    write_json(work / "metrics.json", metrics)
    write_json(work / "run.json", {
        "format_version": FORMAT_VERSION, "textclf_version": __version__,
        "keras_version": keras.__version__, "model_type": cfg.model.type,
        "n_classes": n_classes, "vocabulary_size": len(vocabulary),
        "examples": {k: len(v) for k, v in data.sequences.items()},
        "mixed_precision": keras.mixed_precision.dtype_policy().name,
        "pad_to_multiple_of": pad_multiple, "jit_compile": classifier.jit_compile,
        "train_seconds": round(train_seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _jit_words(jit_compile) -> str:
    return {True: "on", False: "off"}.get(jit_compile, "Keras' auto")


def rewind_batches_callback(batches, start_epoch: int):
    """A callback putting ``batches`` back at ``start_epoch`` when training begins.

    Under a tf.distribute strategy ``fit`` draws one batch to build the model
    before training, which runs the batch generator once more and would shift
    every epoch's plan by one (breaking exact ``--resume``).
    """
    import keras

    class RewindBatches(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            batches.epoch = start_epoch

    return RewindBatches()


def predict_ids(classifier, sequences: list[np.ndarray], batch_size: int,
                pad_multiple: int = 1) -> np.ndarray:
    """Probabilities (N, C) for token-id sequences, in input order, length-bucketed
    (widths rounded up to ``pad_multiple``)."""
    import tensorflow as tf

    from .batching import pad_batch

    # Not predict_on_batch: under a tf.distribute strategy it runs the whole batch on
    # every replica and concatenates the copies. One trace serves every batch shape.
    forward = tf.function(lambda ids: classifier(ids, training=False),
                          input_signature=[tf.TensorSpec([None, None], tf.int32)])
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out = None
    for start in range(0, len(order), batch_size * 4):
        rows = order[start:start + batch_size * 4]
        probs = forward(pad_batch([sequences[i] for i in rows], multiple=pad_multiple)).numpy()
        if out is None:
            out = np.zeros((len(sequences), probs.shape[1]), dtype=np.float32)
        out[rows] = probs
    return out
