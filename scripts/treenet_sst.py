"""Train a tree net recipe on the Stanford Sentiment Treebank and print what it measures.

    python scripts/treenet_sst.py configs/sst2_treenet.yaml [--set train.epochs=3] [--json out.json]

Reads the recipe's train/valid/test trees, builds the vocabulary from the
training leaves, trains with early stopping on ``train.monitor`` (best weights
restored), then reports:

- seconds per training epoch (this machine, ``nice`` as started);
- test root accuracy (``accuracy``) and all-node accuracy;
- raw-sentence accuracy: the test sentences re-tokenised from plain text
  (:func:`textclf.trees.tokenize_sentence`) and given balanced, right- and
  left-branching trees instead of their gold parses;
- TensorFlow vs NumPy reference: max differences of node vectors,
  probabilities and gradients on 64 test trees (float32 model, float64 twin).

Needs ../shared/data (the recipes' data paths). Runs for minutes: not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a treenet recipe, e.g. configs/sst2_treenet.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value (repeatable)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from textclf.config import load_config
    from textclf.models.treenet import (
        build_treenet,
        compare_with_reference,
        evaluate_trees,
        fit_treenet,
    )
    from textclf.trees import TreeVocab, class_names, read_trees

    config = load_config(args.config, args.overrides)
    data, text, train = config.data, config.text, config.train
    keras.utils.set_random_seed(train.seed)

    def load(paths):
        return read_trees(paths, data.encoding, data.tree_labels, data.on_bad_line)

    train_trees, valid_trees, test_trees = load(data.train), load(data.valid), load(data.test)
    vocab = TreeVocab.build(train_trees, lowercase=text.lowercase, min_count=text.min_count,
                            max_tokens=text.max_tokens)
    n_classes = len(class_names(data.tree_labels))
    print(f"trees: train {len(train_trees)}, valid {len(valid_trees)}, test {len(test_trees)}; "
          f"vocabulary {len(vocab)}; {n_classes} classes", flush=True)

    model = build_treenet(config.model, len(vocab), n_classes)
    epoch_seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)
            shown = " ".join(f"{k} {v:.4f}" for k, v in sorted(logs.items()))
            print(f"epoch {epoch + 1}: {epoch_seconds[-1]:.1f}s {shown}", flush=True)

    mode = "min" if train.monitor == "val_loss" else "max"
    callbacks = [EpochTimer()]
    if train.patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=train.monitor, mode=mode, patience=train.patience,
            restore_best_weights=True))
    start = time.perf_counter()
    history = fit_treenet(config, model, train_trees, valid_trees, vocab, callbacks=callbacks,
                          verbose=0)
    train_seconds = time.perf_counter() - start
    monitored = history.history[train.monitor]
    best_epoch = int(np.argmin(monitored) if mode == "min" else np.argmax(monitored)) + 1

    test = evaluate_trees(model, test_trees, vocab)
    valid = evaluate_trees(model, valid_trees, vocab)
    raw = {}
    for shape in ("balanced", "right", "left"):
        raw[shape] = {name: evaluate_trees(model, [_raw_tree(t, shape) for t in trees],
                                           vocab)["accuracy"]
                      for name, trees in (("test", test_trees), ("valid", valid_trees))}
    check = compare_with_reference(model, test_trees[:64], vocab, gradients=True,
                                   root_only=config.model.tree_loss == "root")

    result = {
        "config": str(args.config), "overrides": args.overrides,
        "epochs_run": len(epoch_seconds), "best_epoch": best_epoch,
        "seconds_per_epoch": float(np.mean(epoch_seconds)),
        "seconds_per_epoch_each": [round(s, 1) for s in epoch_seconds],
        "train_seconds": train_seconds,
        "test_root_accuracy": test["accuracy"], "test_all_nodes_accuracy":
            test["all_nodes_accuracy"],
        "valid_root_accuracy": valid["accuracy"],
        "valid_all_nodes_accuracy": valid["all_nodes_accuracy"],
        "raw_sentence_root_accuracy": raw,
        "tf_vs_numpy": {k: {"max_abs": v["max_abs"], "ok": v["ok"]} for k, v in check.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _raw_tree(tree, shape: str):
    """The gold tree's sentence as plain text, re-tokenised and given a ``shape``
    tree; only the root keeps its gold label."""
    import numpy as np

    from textclf.trees import sentence_to_tree

    raw = sentence_to_tree(tree.text, shape)
    labels = np.full(raw.n_nodes, -1, dtype=np.int32)
    labels[-1] = tree.root_label
    return raw.with_labels(labels)


if __name__ == "__main__":
    sys.exit(main())
