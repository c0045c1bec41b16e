"""Tree nets (``model.type: treenet``) through the run machinery: train, evaluate,
predict, check.

The generic path (:mod:`textclf.training`) turns texts into token ids inside an
end-to-end Keras model. A tree net reads parse trees instead, and parsing and
tokenising are Python (:mod:`textclf.trees`), so its run directory differs in
three files::

    RUN_DIR/
      tree_vocab.json   TreeVocab.to_dict(): leaf words (id = index + 2) and lowercase
      model.keras       the TreeNet: batched tree arrays (B, N) -> node probabilities
                        (B, N, C); trees become arrays with textclf.trees.trees_to_batch
      tree_weights.npz  the weights under the NumPy reference's names (engine numpy)

and has no ``vocabulary.txt``/``weights.npz``. The rest is the generic layout:
``run.json`` (``model_type: treenet``), ``config.yaml``, ``labels.json``
(``0``-``4`` or ``0``/``1``, see :func:`textclf.trees.class_names`),
``split.json`` when valid/test were carved from ``data.train`` (stratified on
root labels), ``metrics.json``, ``history.csv``. The partial directory,
per-epoch checkpoints, early stopping, ``--resume`` and the CSV history are
:mod:`textclf.training`'s own (:func:`~textclf.training.make_callbacks`).

Metrics: the classification report of the ROOT predictions
(:func:`textclf.evaluation.classification_report` over root labels, so
``accuracy`` is root accuracy) plus ``all_nodes_accuracy`` over every labelled
node and ``n_nodes``, the number of labelled nodes.

Prediction inputs: a line that parses as a PTB tree keeps its structure;
anything else is raw text given a balanced binary tree
(:func:`textclf.trees.input_to_tree`, :data:`textclf.trees.RAW_TREE_SHAPE`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .artifact import FORMAT_VERSION, MODEL_FILE, Run, write_json, write_text
from .errors import DataError, RunDirError, TextclfError, UsageError
from .trees import Tree, TreeVocab, class_names, input_to_tree, read_trees

TREE_VOCAB_FILE = "tree_vocab.json"
TREE_WEIGHTS_FILE = "tree_weights.npz"
PREDICT_BATCH = 128  # trees per forward pass in evaluation and prediction


# --------------------------------------------------------------------------
# Data.
# --------------------------------------------------------------------------


def read_tree_data(data_cfg, paths: Sequence[str], what: str) -> list[Tree]:
    """Trees of ``paths`` read with the config's encoding, labels and bad-line policy."""
    paths = list(paths)
    trees = read_trees(paths, data_cfg.encoding, data_cfg.tree_labels, data_cfg.on_bad_line)
    if not trees:
        raise DataError(f"no trees left after reading {what}", ", ".join(paths))
    return trees


def tree_fingerprint(trees: Sequence[Tree]) -> str:
    """:func:`textclf.data.split_fingerprint` of the trees as sentences and root labels:
    the value the generic ``ptb_trees`` reader gives for the same files."""
    from .data import split_fingerprint

    return split_fingerprint([t.text for t in trees], [str(t.root_label) for t in trees])


def load_tree_splits(cfg) -> tuple[dict[str, list[Tree]], dict | None]:
    """``({"train", "valid"[, "test"]}: trees, split record or None)``.

    Missing valid/test are carved from ``data.train`` with
    :func:`textclf.data.stratified_split` on the root labels; the record
    (``split.json``) has the layout of :func:`textclf.training.split_record`.
    """
    from .data import stratified_split

    data = cfg.data
    source = read_tree_data(data, data.train, "data.train")
    valid_fraction = 0.0 if data.valid is not None else data.split.valid
    test_fraction = 0.0 if data.test is not None else data.split.test
    splits = {"train": source}
    record = None
    if valid_fraction or test_fraction:
        train_idx, valid_idx, test_idx = stratified_split(
            [str(t.root_label) for t in source], valid_fraction, test_fraction, data.split.seed)
        indices = {"train": train_idx, "valid": valid_idx, "test": test_idx}
        splits["train"] = [source[i] for i in train_idx]
        for name, fraction in (("valid", valid_fraction), ("test", test_fraction)):
            if fraction and len(indices[name]) == 0:
                raise DataError(f"data.split.{name} = {fraction:g} of {len(source)} trees "
                                f"leaves no {name} trees; give data.{name} or more data",
                                data.train[0])
            if fraction:
                splits[name] = [source[i] for i in indices[name]]
        record = {"seed": data.split.seed,
                  "fractions": {"valid": data.split.valid, "test": data.split.test},
                  "source": list(data.train), "fingerprint": tree_fingerprint(source),
                  **{name: idx.tolist() for name, idx in indices.items()}}
    for name in ("valid", "test"):
        paths = getattr(data, name)
        if paths is not None:
            splits[name] = read_tree_data(data, paths, f"data.{name}")
    return {name: splits[name] for name in ("train", "valid", "test") if name in splits}, record


def tree_evaluation_data(run: Run, data_paths: Sequence[str], split: str) -> list[Tree]:
    """Trees to evaluate on: DATA files read with the run's data options, or the run's
    own ``valid``/``test`` split (re-carved from ``data.train`` when it was carved,
    after checking that the source is unchanged)."""
    cfg = run.config.data
    if data_paths:
        return read_tree_data(cfg, data_paths, "DATA")
    paths = getattr(cfg, split)
    if paths is not None:
        return read_tree_data(cfg, paths, f"data.{split}")
    record = run.split()
    if record is None or not record.get(split):
        raise UsageError(f"{run.path} has no {split} split; pass DATA to evaluate on")
    source = read_tree_data(cfg, cfg.train, "data.train")
    if tree_fingerprint(source) != record["fingerprint"]:
        raise DataError("the training source changed since this run was trained, so its "
                        f"{split} split cannot be rebuilt; pass DATA explicitly",
                        ", ".join(record["source"]))
    return [source[i] for i in record[split]]


# --------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------


def _refuse_unsupported(cfg) -> None:
    """Options the tree net does not implement: say so before reading any data."""
    train = cfg.train
    for key, value, default in (("train.distribute", train.distribute, "none"),
                                ("train.mixed_precision", train.mixed_precision, "none"),
                                ("train.class_weight", train.class_weight, None)):
        if value != default:
            raise UsageError(f"{key} is not supported for model.type treenet; got {value!r}")


def run_tree_training(cfg, target: Path, work: Path, progress: dict | None) -> None:
    """:func:`textclf.training.run_training` for ``model.type: treenet``: fills ``work``
    (the partial run directory); ``progress`` is the checkpoint to resume from."""
    import keras

    from . import __version__, training
    from .artifact import CHECKPOINT_DIR, refuse_code
    from .config import dump_config
    from .models import treenet as tn
    from .models.common import uncompiled_copy

    _refuse_unsupported(cfg)
    training.seed_everything(cfg.train.seed, cfg.train.deterministic)
    splits, record = load_tree_splits(cfg)
    labels = list(class_names(cfg.data.tree_labels))
    if progress is None:
        vocab = TreeVocab.build(splits["train"], lowercase=cfg.text.lowercase,
                                min_count=cfg.text.min_count, max_tokens=cfg.text.max_tokens)
        write_text(work / "config.yaml", dump_config(cfg))
        write_json(work / "labels.json", {"labels": labels})
        write_json(work / TREE_VOCAB_FILE, vocab.to_dict())
        if record is not None:
            write_json(work / "split.json", record)
    else:
        vocab = _read_vocab(work)
        saved = _read_split(work)
        if saved is not None and record is not None and \
                saved["fingerprint"] != record["fingerprint"]:
            raise DataError("the training source changed since the run was interrupted; "
                            "start over without --resume", ", ".join(cfg.data.train))
    training.log(", ".join(f"{name} {len(trees)} trees" for name, trees in splits.items())
                 + f"; vocabulary of {len(vocab)} words; {len(labels)} classes")

    if progress is not None:
        files = training.checkpoint_files(progress)
        state = work / CHECKPOINT_DIR / files["state"]
        refuse_code(state)
        from . import fused_adam  # noqa: F401  registers the optimizer the checkpoint holds

        model = keras.models.load_model(state, safe_mode=True)  # compiled, optimizer state too
        with np.load(work / CHECKPOINT_DIR / files["non_trainable"],
                     allow_pickle=False) as stored:
            for i, variable in enumerate(model.non_trainable_variables):
                variable.assign(stored[f"arr_{i}"])  # Dropout's random state
    else:
        pretrained = None
        if cfg.text.embeddings:
            from .text import load_embeddings

            pretrained, found = load_embeddings(cfg.text.embeddings, vocab.words_,
                                                cfg.model.embedding_dim, cfg.train.seed)
            training.log(f"pretrained vectors for {found} of {len(vocab) - 2} vocabulary "
                         f"words ({found / max(len(vocab) - 2, 1):.1%})")
        model = tn.build_treenet(cfg.model, len(vocab), len(labels), pretrained,
                                 cfg.text.embeddings_trainable)
        tn.compile_treenet(model, cfg.train, n_train=len(splits["train"]))

    start_epoch = 0 if progress is None else progress["epoch"] + 1
    root_only = cfg.model.tree_loss == "root"
    # start_epoch: the resumed run's shuffles are those the uninterrupted run would draw.
    train_data = tn.tree_dataset(splits["train"], vocab, cfg.train.batch_size, shuffle=True,
                                 seed=cfg.train.seed, bucketing=cfg.train.bucketing,
                                 root_only=root_only, start_epoch=start_epoch)
    valid_data = tn.tree_dataset(splits["valid"], vocab, max(cfg.train.batch_size, 64),
                                 root_only=root_only)
    callbacks, nan_stop = training.make_callbacks(cfg, work, progress)
    timer = _EpochTimer()
    callbacks.insert(0, timer)
    # A run that stopped early before being finalised fits no more epochs; fit still
    # calls on_train_end, where early stopping restores the best weights.
    epochs = start_epoch if progress is not None and progress.get("stopped") else cfg.train.epochs
    started = time.perf_counter()
    model.fit(train_data, validation_data=valid_data, epochs=epochs, initial_epoch=start_epoch,
              callbacks=callbacks, shuffle=False,
              verbose=training.keras_verbosity(cfg.train.verbose))
    if nan_stop.nan_at is not None:
        raise TextclfError("training diverged: the loss became NaN or infinite; lower "
                           "train.learning_rate or set train.clipnorm")
    train_seconds = time.perf_counter() - started

    metrics = {}
    for split in [name for name in ("valid", "test") if name in splits]:
        report = tree_report(model, splits[split], vocab, labels)
        metrics[split] = report
        training.log(f"{split}: root accuracy {report['accuracy']:.4f}, macro-F1 "
                     f"{report['macro']['f1']:.4f}, all-nodes accuracy "
                     f"{report['all_nodes_accuracy']:.4f} ({report['n_examples']} trees)")
    uncompiled_copy(model).save(work / MODEL_FILE)  # no optimizer slots
    np.savez(work / TREE_WEIGHTS_FILE, **_reference_params(model))
    write_json(work / "metrics.json", metrics)
    write_json(work / "run.json", {
        "format_version": FORMAT_VERSION, "textclf_version": __version__,
        "keras_version": keras.__version__, "model_type": cfg.model.type,
        "tree_cell": cfg.model.tree_cell, "n_classes": len(labels),
        "vocabulary_size": len(vocab),
        "examples": {name: len(trees) for name, trees in splits.items()},
        "train_seconds": round(train_seconds, 2),
        # This process's epochs only: a resumed run lists the epochs after the resume.
        "epoch_seconds": [round(s, 2) for s in timer.seconds],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _EpochTimer():
    """A callback recording each epoch's wall-clock seconds (training + validation)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def _reference_params(model) -> dict[str, np.ndarray]:
    """The weights under :mod:`textclf.reference.treenet`'s names, float32."""
    from .models.treenet import numpy_treenet_from_keras

    return {name: value.astype(np.float32)
            for name, value in numpy_treenet_from_keras(model).params.items()}


def tree_report(model, trees: Sequence[Tree], vocab: TreeVocab, labels: list[str]) -> dict:
    """The classification report of the root predictions, plus ``all_nodes_accuracy``
    and ``n_nodes`` (labelled nodes counted)."""
    from .models.treenet import evaluate_trees

    result = evaluate_trees(model, trees, vocab, PREDICT_BATCH)
    return _report(result["root_probs"], result["root_labels"], result["all_nodes_accuracy"],
                   result["n_nodes"], labels)


def _report(root_probs: np.ndarray, root_labels: np.ndarray, all_nodes_accuracy: float,
            n_nodes: int, labels: list[str]) -> dict:
    from .evaluation import classification_report

    has_root = root_labels >= 0
    if not has_root.any():
        raise DataError("no labelled trees to evaluate on")
    report = classification_report(root_labels[has_root],
                                   root_probs[has_root].argmax(axis=1), labels)
    report["all_nodes_accuracy"] = all_nodes_accuracy
    report["n_nodes"] = n_nodes
    return report


# --------------------------------------------------------------------------
# Using a finished run.
# --------------------------------------------------------------------------


def _read_vocab(folder: Path) -> TreeVocab:
    path = folder / TREE_VOCAB_FILE
    try:
        return TreeVocab.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing (the run directory is incomplete)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path}: corrupt (expected TreeVocab JSON: {exc})") from None


def _read_split(folder: Path) -> dict | None:
    path = folder / "split.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def load_tree_model(run: Run):
    """``(TreeNet, TreeVocab)`` of a finished run; the model loads in safe_mode."""
    from .models import treenet  # noqa: F401  registers TreeNet before loading

    return run.model, _read_vocab(run.path)


class TreePredictor:
    """``predict_proba(lines) -> root probabilities (B, C)`` of a tree-net run, each line
    a PTB tree if it parses as one, else raw text (:func:`textclf.trees.input_to_tree`);
    :meth:`node_probs` gives every node's probabilities of parsed trees."""

    def __init__(self, run: Run, engine: str = "keras"):
        self.node_probs = _numpy_forward(run) if engine == "numpy" else _keras_forward(run)

    def __call__(self, lines: list[str]) -> np.ndarray:
        return np.stack([p[-1] for p in self.node_probs([input_to_tree(x) for x in lines])])


def _keras_forward(run: Run):
    from .models.treenet import predict_trees

    model, vocab = load_tree_model(run)
    return lambda trees: predict_trees(model, trees, vocab, PREDICT_BATCH)


def _numpy_forward(run: Run):
    """Node probabilities from ``tree_weights.npz`` and the NumPy reference: no TensorFlow."""
    from .reference.treenet import TreeNetReference
    from .trees import trees_to_batch

    path = run.path / TREE_WEIGHTS_FILE
    if not path.exists():
        raise RunDirError(f"{path}: missing (the run directory is incomplete)")
    with np.load(path, allow_pickle=False) as stored:
        params = {name: stored[name].astype(np.float64) for name in stored.files}
    reference = TreeNetReference(params, cell=run.config.model.tree_cell)
    vocab = _read_vocab(run.path)

    def forward(trees: list[Tree]) -> list[np.ndarray]:
        out = []
        for start in range(0, len(trees), PREDICT_BATCH):
            chunk = trees[start:start + PREDICT_BATCH]
            probs = reference.forward(trees_to_batch(chunk, vocab)).probs
            out += [probs[row, probs.shape[1] - t.n_nodes:] for row, t in enumerate(chunk)]
        return out

    return forward


def evaluate_tree_run(run: Run, trees: Sequence[Tree], predictor: TreePredictor) -> dict:
    """The report of ``run`` on ``trees`` (see :func:`tree_report`)."""
    if not trees:
        raise DataError("no examples to evaluate on")
    node_probs = predictor.node_probs(list(trees))
    root_probs = np.stack([p[-1] for p in node_probs])
    root_labels = np.array([t.root_label for t in trees], dtype=np.int64)
    labels = np.concatenate([t.labels for t in trees])
    predicted = np.concatenate([p.argmax(axis=1) for p in node_probs])
    labelled = labels >= 0
    all_nodes = float(np.mean(predicted[labelled] == labels[labelled])) if labelled.any() \
        else float("nan")
    return _report(root_probs, root_labels, all_nodes, int(labelled.sum()), list(run.labels))


def format_tree_report(report: dict) -> str:
    """:func:`textclf.evaluation.format_report_text` with an all-nodes accuracy line
    under the table (before the confusion matrix)."""
    from .evaluation import format_report_text

    text = format_report_text(report)
    line = (f"all-nodes accuracy {report['all_nodes_accuracy']:.4f} "
            f"({report['n_nodes']} labelled nodes)")
    head, sep, tail = text.partition("\n\nconfusion matrix")
    return f"{head}\n{line}{sep}{tail}" if sep else f"{text}{line}\n"


def check_tree_run(run: Run, data_paths: Sequence[str], split: str, count: int,
                   gradients: bool) -> tuple[str, bool]:
    """``textclf check`` for a tree net: the first ``count`` trees through the Keras model
    and its float64 NumPy twin (:func:`textclf.models.treenet.compare_with_reference`).
    Returns the table and whether every difference is within tolerance."""
    from .models.treenet import compare_with_reference

    trees = tree_evaluation_data(run, data_paths, split)[:count]
    model, vocab = load_tree_model(run)
    report = compare_with_reference(model, trees, vocab, gradients=gradients,
                                    root_only=run.config.model.tree_loss == "root")
    return format_tree_check(report, trees), all(d["ok"] for d in report.values())


def format_tree_check(report: dict, trees: Sequence[Tree]) -> str:
    """A plain-text table of :func:`compare_with_reference`'s report, ending with the verdict."""
    width = max([len(name) for name in report] + [13])
    lines = [(f"{len(trees)} trees ({sum(t.n_nodes for t in trees)} nodes), float32 Keras vs "
              "float64 NumPy reference; ok when |tf - ref| <= atol + rtol |ref|"),
             ("(node vectors, probabilities: atol = rtol = 1e-05; loss summed over labelled "
              "nodes and its gradients: atol 1e-05, rtol 1e-04)"),
             f"{'quantity':<{width}}  {'max abs diff':>12}  {'elementwise rel':>15}"]
    for name, d in report.items():
        lines.append(f"{name:<{width}}  {d['max_abs']:12.3e}  {d['max_rel']:15.2e}"
                     f"{'' if d['ok'] else '  EXCEEDS TOLERANCE'}")
    failed = [name for name, d in report.items() if not d["ok"]]
    lines.append("OK: Keras and NumPy agree" if not failed else
                 "FAILED: beyond tolerance: " + ", ".join(failed))
    return "\n".join(lines)
