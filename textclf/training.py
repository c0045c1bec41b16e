"""``textclf train``: config -> data -> vectoriser -> model -> fit -> run directory.

Everything TensorFlow-specific about fitting lives here: seeds, the optimizer,
the callbacks (early stopping, per-epoch checkpoint for ``--resume``, NaN
stop, CSV history, TensorBoard) and the distribution strategy.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .artifact import (CHECKPOINT_DIR, FORMAT_VERSION, MODEL_FILE, finalize, partial_dir_for,
                       prepare_partial_dir, write_json, write_text)
from .config import Config, config_from_dict, dump_config, parse_yaml
from .errors import DataError, TextclfError, UsageError

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


def make_optimizer(cfg):
    """The configured optimizer with clipping (TrainConfig -> keras optimizer)."""
    import keras

    clip = {}
    if cfg.clipnorm is not None:
        clip["clipnorm"] = cfg.clipnorm
    if cfg.clipvalue is not None:
        clip["clipvalue"] = cfg.clipvalue
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.learning_rate, **clip)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum, **clip)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(cfg.learning_rate, momentum=cfg.momentum, **clip)
    return keras.optimizers.Adagrad(cfg.learning_rate, **clip)


def compile_classifier(model, cfg: Config) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(cfg.train),
        loss=keras.losses.CategoricalCrossentropy(),
        # F1Score(average="macro") accumulates the whole epoch's counts, so
        # val_macro_f1 is the real macro-F1, usable as an early-stopping monitor.
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 keras.metrics.F1Score(average="macro", name="macro_f1")],
    )


def distribution_strategy(cfg):
    """The tf.distribute strategy for ``train.distribute`` (default: none)."""
    import tensorflow as tf

    if cfg.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if cfg.distribute == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UsageError("train.distribute is multi_worker but TF_CONFIG is not set")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


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
                best_path = work / CHECKPOINT_DIR / BEST_FILE
                if best_path.exists():
                    with np.load(best_path, allow_pickle=False) as stored:
                        self.best_weights = [stored[f"w{i}"] for i in range(len(stored.files))]

    class EpochCheckpoint(keras.callbacks.Callback):
        """After each epoch: model + optimizer, progress and best weights, atomically."""

        def __init__(self, stopper):
            super().__init__()
            self.stopper = stopper

        def on_epoch_end(self, epoch, logs=None):
            ckpt = work / CHECKPOINT_DIR
            ckpt.mkdir(exist_ok=True)
            tmp = ckpt / f".{STATE_FILE}.tmp.keras"
            self.model.save(tmp)
            os.replace(tmp, ckpt / STATE_FILE)
            # load_model re-seeds Dropout's random-state variables, so they are kept
            # apart; restoring them makes a resumed run draw the same masks.
            tmp_rng = ckpt / f".{RNG_FILE}.tmp.npz"
            np.savez(tmp_rng, *[np.asarray(v) for v in self.model.non_trainable_variables])
            os.replace(tmp_rng, ckpt / RNG_FILE)
            if self.stopper.best_weights is not None and self.stopper.best_epoch == epoch:
                tmp_best = ckpt / f".{BEST_FILE}.tmp.npz"
                np.savez(tmp_best, **{f"w{i}": w for i, w in
                                      enumerate(self.stopper.best_weights)})
                os.replace(tmp_best, ckpt / BEST_FILE)
            best = self.stopper.best
            write_json(ckpt / PROGRESS_FILE, {
                "epoch": epoch, "wait": self.stopper.wait, "best_epoch": self.stopper.best_epoch,
                "best": None if best is None else float(best),
                "stopped": bool(self.model.stop_training)})

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
    callbacks = [nan_stop, stopper, EpochCheckpoint(stopper),
                 keras.callbacks.CSVLogger(str(work / "history.csv"),
                                           append=resume_progress is not None)]
    if cfg.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(work / "logs")))
    return callbacks, nan_stop


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


def prepare_data(cfg: Config, vocabulary: list[str] | None = None) -> Prepared:
    """Read the splits and tokenise them; adapt the vectoriser unless given a vocabulary."""
    from .data import load_splits
    from .text import build_vectorizer, vectorize

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
            sequences[name] = vectorize(vectorizer, part.texts, cfg.text.max_length)
            label_ids[name] = np.asarray(splits.label_map.encode(part.labels, f"{name} data"))
    return Prepared(labels=labels, sequences=sequences, label_ids=label_ids,
                    split_record=split_record(cfg, splits), vectorizer=vectorizer)


def split_record(cfg: Config, splits) -> dict | None:
    """What ``split.json`` holds: enough to rebuild carved splits, and to notice if
    the training source changed since (its fingerprint)."""
    if not splits.indices:
        return None
    return {"seed": cfg.data.split.seed, "fractions": {"valid": cfg.data.split.valid,
                                                      "test": cfg.data.split.test},
            "source": list(cfg.data.train), "fingerprint": splits.fingerprint,
            **{name: idx.tolist() for name, idx in splits.indices.items()}}


def end_to_end_model(vectorizer, classifier, max_length: int):
    """Raw strings (B,) -> probabilities (B, C): the model a run directory holds."""
    import keras

    from .models.layers import TruncateTokens

    text = keras.Input(shape=(), dtype="string", name="text")
    ids = vectorizer(text)
    ids = TruncateTokens(max_length, name="truncate")(ids)
    probabilities = classifier(ids)
    return keras.Model(text, probabilities, name="textclf")


def train(config_path: str | None, overrides: tuple, output: str | None, force: bool,
          resume: str | None) -> Path:
    """Run ``textclf train``; returns the finished run directory."""
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
    else:
        if config_path is None:
            raise UsageError("train needs -c CONFIG (or --resume RUN_DIR)")
        from .config import load_config

        cfg = load_config(config_path, overrides)
        target = Path(output) if output else Path("runs") / Path(config_path).stem
        work = prepare_partial_dir(target, force)
        progress = None
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
    finalize(work, target, force=True if resume else force)
    return target


def run_training(cfg: Config, target: Path, work: Path, progress: dict | None) -> None:
    import keras

    from .evaluation import classification_report
    from .models import build_model, layers  # noqa: F401  layers: registers custom layers
    from .reference.export import export_numpy_weights
    from .text import load_embeddings

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

    if cfg.train.mixed_precision != "none":
        keras.mixed_precision.set_dtype_policy(cfg.train.mixed_precision)
    strategy = distribution_strategy(cfg.train)
    with strategy.scope():
        if progress is not None:
            classifier = keras.models.load_model(work / CHECKPOINT_DIR / STATE_FILE,
                                                 safe_mode=True)
            with np.load(work / CHECKPOINT_DIR / RNG_FILE, allow_pickle=False) as stored:
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
            compile_classifier(classifier, cfg)

    from .batching import BatchSequence

    weights = class_weights(cfg.train, data.labels, data.label_ids["train"])
    sample_weights = None if weights is None else weights[data.label_ids["train"]]
    start_epoch = 0 if progress is None else progress["epoch"] + 1
    fixed = None if cfg.train.bucketing else cfg.text.max_length
    train_batches = BatchSequence(data.sequences["train"], data.label_ids["train"], n_classes,
                                  cfg.train.batch_size, seed=cfg.train.seed, shuffle=True,
                                  bucketing=cfg.train.bucketing, fixed_length=fixed,
                                  sample_weights=sample_weights, start_epoch=start_epoch)
    valid_batches = BatchSequence(data.sequences["valid"], data.label_ids["valid"], n_classes,
                                  cfg.train.batch_size, shuffle=False, fixed_length=fixed)
    callbacks, nan_stop = make_callbacks(cfg, work, progress)
    started = time.perf_counter()
    if progress is None or not progress.get("stopped"):
        classifier.fit(train_batches.as_dataset(), validation_data=valid_batches.as_dataset(), epochs=cfg.train.epochs,
                       initial_epoch=start_epoch, callbacks=callbacks, shuffle=False,
                       verbose=keras_verbosity(cfg.train.verbose))
    if nan_stop.nan_at is not None:
        raise TextclfError("training diverged: the loss became NaN or infinite; lower "
                           "train.learning_rate or set train.clipnorm")
    train_seconds = time.perf_counter() - started

    model = end_to_end_model(data.vectorizer, classifier, cfg.text.max_length)
    metrics = {}
    for split in [name for name in ("valid", "test") if name in data.sequences]:
        probabilities = predict_ids(classifier, data.sequences[split], cfg.train.batch_size)
        report = classification_report(data.label_ids[split], probabilities.argmax(axis=1),
                                       data.labels)
        metrics[split] = report
        log(f"{split}: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro']['f1']:.4f}"
            f" ({report['n_examples']} examples)")
    model.save(work / MODEL_FILE)
    export_numpy_weights(classifier, work / "weights.npz")
    write_json(work / "metrics.json", metrics)
    write_json(work / "run.json", {
        "format_version": FORMAT_VERSION, "textclf_version": __version__,
        "keras_version": keras.__version__, "model_type": cfg.model.type,
        "n_classes": n_classes, "vocabulary_size": len(vocabulary),
        "examples": {k: len(v) for k, v in data.sequences.items()},
        "train_seconds": round(train_seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def predict_ids(classifier, sequences: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Probabilities (N, C) for token-id sequences, in input order, length-bucketed."""
    from .batching import pad_batch

    order = np.argsort([len(s) for s in sequences], kind="stable")
    out = None
    for start in range(0, len(order), batch_size * 4):
        rows = order[start:start + batch_size * 4]
        probs = np.asarray(classifier.predict_on_batch(pad_batch([sequences[i] for i in rows])))
        if out is None:
            out = np.zeros((len(sequences), probs.shape[1]), dtype=np.float32)
        out[rows] = probs
    return out
