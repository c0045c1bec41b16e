"""The peers of ``make bench``: TF-IDF + LinearSVC (scikit-learn) and fastText.

Both read the same split as every other contender (``textclf.data.load_splits``
with the recipe's data section) and train on the training split only (no use
of the validation split: neither does early stopping). Neither imports
TensorFlow, so their peak RSS is their own.

- TF-IDF on word 1-2 grams with sublinear tf (scikit-learn's default
  tokeniser, lower-cased), then ``LinearSVC()`` with its defaults.
- fastText (``fasttext-wheel``) ``train_supervised`` on ``__label__X text``
  lines, lower-cased with punctuation split off as fastText's own tutorial
  does; ``thread`` = the CPUs this process may use. Run twice: with its
  defaults (lr 0.1, 5 epochs, which do not converge on a small corpus such as
  BBC News), and with lr 1.0 and 25 epochs.

    python scripts/bench_peers.py svm --spec SPEC.json --out RESULT.json
    python scripts/bench_peers.py fasttext --spec SPEC.json --out RESULT.json
    python scripts/bench_peers.py fasttext-predict MODEL.bin INPUT.txt OUTPUT.txt
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from bench_common import cycled, load_recipe_splits, one_line, scores, worker_main  # noqa: E402

_PUNCTUATION = re.compile(r"([.!?,'/()\"])")


def _base(spec: dict, splits) -> dict:
    return {"contender": spec["contender"], "dataset": spec["dataset"],
            "family": spec["family"], "kind": "peer", "n_train": len(splits.train),
            "n_test": len(splits.test)}


def svm(spec: dict) -> dict:
    """TF-IDF (1-2 grams, sublinear tf) + LinearSVC: fit, score, bulk predict, size."""
    from sklearn import __version__ as sklearn_version
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    _, splits = load_recipe_splits(spec["recipe"], spec["overrides"])
    labels = list(splits.label_map.labels)
    y_train = splits.label_map.encode(splits.train.labels)
    y_test = splits.label_map.encode(splits.test.labels)

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    features = vectorizer.fit_transform(splits.train.texts)
    classifier = LinearSVC().fit(features, y_train)
    train_seconds = time.perf_counter() - started
    accuracy, macro_f1 = scores(y_test, classifier.predict(vectorizer.transform(splits.test.texts)),
                                labels)

    docs = cycled(splits.test.texts, spec["predict_docs"])
    started = time.perf_counter()
    classifier.predict(vectorizer.transform(docs))
    predict_seconds = time.perf_counter() - started

    # What one would keep to predict, without pickle: weights + idf, and the terms.
    folder = Path(spec["workdir"]) / spec["name"]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "model.npz", coef=classifier.coef_.astype(np.float32),
             intercept=classifier.intercept_, idf=vectorizer.idf_.astype(np.float32))
    terms = vectorizer.get_feature_names_out()
    (folder / "terms.txt").write_text("\n".join(terms) + "\n", encoding="utf-8")
    size = (folder / "model.npz").stat().st_size + (folder / "terms.txt").stat().st_size

    return {**_base(spec, splits), "test_accuracy": accuracy, "macro_f1": macro_f1,
            "train_seconds": train_seconds, "epochs": 1,
            "steady_ex_per_s": len(y_train) / train_seconds,
            "steady_note": "whole fit (TF-IDF + SVM), one pass",
            "predict_docs": len(docs), "predict_docs_per_s": len(docs) / predict_seconds,
            "model_bytes": size,
            "extra": {"features": len(terms), "scikit_learn": sklearn_version}}


def fasttext_text(text: str) -> str:
    """fastText's tutorial preprocessing: one line, punctuation split off, lower case."""
    return one_line(_PUNCTUATION.sub(r" \1 ", text)).lower()


def fasttext_run(spec: dict) -> dict:
    """fastText supervised with ``spec["params"]`` on top of its defaults."""
    _, splits = load_recipe_splits(spec["recipe"], spec["overrides"])
    try:
        import fasttext
    except ImportError as exc:
        return {**_base(spec, splits), "error": f"unavailable: cannot import fasttext ({exc}); "
                                                "pip install fasttext-wheel"}
    labels = list(splits.label_map.labels)
    tags = [f"__label__{i}" for i in range(len(labels))]  # label names may hold spaces
    y_train = splits.label_map.encode(splits.train.labels)
    y_test = splits.label_map.encode(splits.test.labels)
    folder = Path(spec["workdir"]) / spec["name"]
    folder.mkdir(parents=True, exist_ok=True)
    train_file = folder / "train.txt"
    with open(train_file, "w", encoding="utf-8") as out:
        for text, label in zip(splits.train.texts, y_train):
            out.write(f"{tags[label]} {fasttext_text(text)}\n")

    params = dict(spec["params"])
    threads = len(os.sched_getaffinity(0))
    started = time.perf_counter()
    model = fasttext.train_supervised(input=str(train_file), thread=threads, verbose=0, **params)
    train_seconds = time.perf_counter() - started
    epochs = int(params.get("epoch", model.epoch))

    def predict(texts: list[str]) -> np.ndarray:
        predicted, _ = model.predict([fasttext_text(t) for t in texts], k=1)
        return np.array([tags.index(p[0]) for p in predicted])

    accuracy, macro_f1 = scores(y_test, predict(splits.test.texts), labels)
    docs = cycled(splits.test.texts, spec["predict_docs"])
    started = time.perf_counter()
    predict(docs)
    predict_seconds = time.perf_counter() - started
    model_path = folder / "model.bin"
    model.save_model(str(model_path))

    return {**_base(spec, splits), "test_accuracy": accuracy, "macro_f1": macro_f1,
            "train_seconds": train_seconds, "epochs": epochs,
            "steady_ex_per_s": len(y_train) * epochs / train_seconds,
            "steady_note": f"whole fit, {epochs} epochs",
            "predict_docs": len(docs), "predict_docs_per_s": len(docs) / predict_seconds,
            "model_bytes": model_path.stat().st_size,
            "extra": {"model_path": str(model_path), "params": params, "threads": threads,
                      "lr": model.lr, "dim": model.dim, "word_ngrams": model.wordNgrams}}


def fasttext_predict_main(model_path: str, input_path: str, output_path: str) -> int:
    """Whole-process prediction: load a saved model, predict each line, write labels."""
    import fasttext

    model = fasttext.load_model(model_path)
    texts = Path(input_path).read_text(encoding="utf-8").splitlines()
    predicted, _ = model.predict([fasttext_text(t) for t in texts], k=1)
    Path(output_path).write_text("".join(p[0] + "\n" for p in predicted), encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "fasttext-predict":
        sys.exit(fasttext_predict_main(*sys.argv[2:5]))
    sys.exit(worker_main({"svm": svm, "fasttext": fasttext_run}))
