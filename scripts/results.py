"""Train the shipped recipes and write the README's results table.

    python scripts/results.py [RECIPE ...] [--runs runs/results] [--out RESULTS.md] [--table-only]

Each recipe is trained with ``textclf train -c configs/RECIPE.yaml`` into
``RUNS/RECIPE``; its test accuracy and macro-F1 come from the run's
``metrics.json``. For recipes whose valid/test were carved from the training
source, a TF-IDF + LinearSVC baseline (scikit-learn) is trained on exactly the
same split (word 1-2 grams, or character 1-3 grams for character-level
recipes) so the comparison is like for like. Recipes whose data is missing are
reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_RECIPES = ["bbc_cnn", "bbc_rnn", "mr_cnn", "sst2_cnn", "sst2_rnn", "zh_shopping_cnn",
                   "sst2_treenet", "sst5_treenet"]


def train(recipe: str, runs: Path) -> Path | None:
    target = runs / recipe
    command = [sys.executable, "-m", "textclf.cli", "train", "-c",
               str(ROOT / "configs" / f"{recipe}.yaml"), "--output", str(target), "--force",
               "--set", "train.verbose=epoch"]
    print("$", " ".join(command[1:]), flush=True)
    done = subprocess.run(command, cwd=ROOT, env={**_env(), "PYTHONPATH": str(ROOT)})
    return target if done.returncode == 0 else None


def _env():
    import os

    return dict(os.environ)


def svm_baseline(run_dir: Path) -> dict | None:
    """TF-IDF + LinearSVC on the run's own train/test rows (carved splits only)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    from textclf.artifact import open_run
    from textclf.data import load_data

    run = open_run(run_dir)
    record = run.split()
    if record is None:
        return None
    source = load_data(run.config.data, "train")
    train_rows, test_rows = record["train"], record["test"]
    character = run.config.text.split == "character"
    vectorizer = TfidfVectorizer(analyzer="char" if character else "word",
                                 ngram_range=(1, 3) if character else (1, 2),
                                 sublinear_tf=True, min_df=1)
    started = time.perf_counter()
    x_train = vectorizer.fit_transform([source.texts[i] for i in train_rows])
    y_train = [source.labels[i] for i in train_rows]
    model = LinearSVC(C=1.0).fit(x_train, y_train)
    predicted = model.predict(vectorizer.transform([source.texts[i] for i in test_rows]))
    truth = [source.labels[i] for i in test_rows]
    return {"accuracy": accuracy_score(truth, predicted),
            "macro_f1": f1_score(truth, predicted, average="macro"),
            "seconds": time.perf_counter() - started,
            "features": "char 1-3" if character else "word 1-2"}


def engines_agree(run_dir: Path) -> str:
    """Keras vs NumPy engine on the run's whole test split: identical labels, max |dp|."""
    import numpy as np

    from textclf.artifact import open_run
    from textclf.inference import evaluation_data, keras_predictor, numpy_predictor
    from textclf.runtime import import_tensorflow

    import_tensorflow()
    run = open_run(run_dir)
    texts = evaluation_data(run, [], "test").texts
    keras_p, numpy_p = keras_predictor(run), numpy_predictor(run)
    same, worst = 0, 0.0
    for start in range(0, len(texts), 256):
        batch = texts[start:start + 256]
        a, b = keras_p(batch), numpy_p(batch)
        same += int((a.argmax(1) == b.argmax(1)).sum())
        worst = max(worst, float(np.abs(a - b).max()))
    return f"{same}/{len(texts)} labels, max diff {worst:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", default=DEFAULT_RECIPES)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "RESULTS.md")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing; rebuild the table from the runs present")
    args = parser.parse_args()
    for recipe in [] if args.table_only else args.recipes:
        if train(recipe, args.runs) is None:
            print(f"{recipe}: training failed or its data is missing", flush=True)
    # The table covers every recipe with a finished run under --runs, so one
    # recipe can be re-run without retraining the others.
    rows = []
    for recipe in DEFAULT_RECIPES + sorted(set(args.recipes) - set(DEFAULT_RECIPES)):
        run_dir = args.runs / recipe
        if not (run_dir / "metrics.json").exists():
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        info = json.loads((run_dir / "run.json").read_text())
        test = metrics["test"]
        if info["model_type"] == "treenet":
            epochs = info.get("epoch_seconds") or [0]
            rows.append(f"| `{recipe}` | {info['examples']['train']}/{info['examples']['valid']}/"
                        f"{info['examples']['test']} | **{test['accuracy']:.2%}** (root) | "
                        f"{test['macro']['f1']:.4f} | {info['train_seconds']:.0f} s "
                        f"({sum(epochs) / len(epochs):.0f} s/epoch) | | all nodes "
                        f"{test['all_nodes_accuracy']:.2%} |")
            continue
        baseline = svm_baseline(run_dir)
        svm = (f"{baseline['accuracy']:.2%} (TF-IDF {baseline['features']} + LinearSVC)"
               if baseline else "")
        rows.append(f"| `{recipe}` | {info['examples']['train']}/{info['examples']['valid']}/"
                    f"{info['examples'].get('test', 0)} | **{test['accuracy']:.2%}** | "
                    f"{test['macro']['f1']:.4f} | {info['train_seconds']:.0f} s | {svm} | "
                    f"{engines_agree(run_dir)} |")
    table = ["| recipe | train/valid/test | test accuracy | test macro-F1 | training time | "
             "same split, TF-IDF + linear SVM | NumPy engine vs Keras (test split) |",
             "|---|---|---|---|---|---|---|", *rows]
    stamp = time.strftime("%Y-%m-%d")
    args.out.write_text(f"Last updated {stamp} by `python scripts/results.py`; each row is "
                        f"`textclf train -c configs/RECIPE.yaml` on this machine\n\n"
                        + "\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
