"""Classification metrics from one confusion matrix, in NumPy only.

Everything here derives from the confusion matrix ``C`` of shape
``(n_labels, n_labels)``: ``C[i, j]`` counts examples whose true class is ``i``
and predicted class is ``j`` (rows = true, columns = predicted, as in
scikit-learn). Per class ``k``::

    tp = C[k, k]        fp = C[:, k].sum() - tp        fn = C[k, :].sum() - tp
    precision = tp / (tp + fp)      recall = tp / (tp + fn)
    f1 = 2 tp / (2 tp + fp + fn)    support = C[k, :].sum()

Zero division follows scikit-learn's default (``zero_division="warn"``), minus
the warning: a ratio whose denominator is 0 is 0.0. So a class never predicted
has precision 0.0, a class absent from ``y_true`` has recall 0.0, and a class
neither present nor predicted has F1 0.0. Such classes still count in the
macro average (scikit-learn does the same when ``labels`` names them), which is
why ``per_class`` always lists every label the model knows.

Averages (``support`` of an average is the number of examples):

* ``macro``: unweighted mean of the per-class values.
* ``weighted``: per-class values weighted by support.
* ``micro``: ratios of the summed tp/fp/fn. Every example has exactly one true
  and one predicted label among ``labels``, so micro P = R = F1 = accuracy;
  it is kept in the report because people look for it.

Importing this module never imports TensorFlow.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from .errors import DataError

_AVERAGES = ("macro", "micro", "weighted")


def _as_label_indices(values: Sequence[int] | np.ndarray, n_labels: int, name: str) -> np.ndarray:
    """1-D int64 array of label indices in [0, n_labels); ValueError otherwise.

    These indices come from our own label map, so a bad one is a bug in the
    caller rather than a user's mistake: hence ValueError, not DataError.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label indices; got dtype {arr.dtype}")
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= n_labels:
        bad = low if low < 0 else high
        raise ValueError(f"{name} holds label index {bad}, outside [0, {n_labels}) for {n_labels} labels")
    return arr.astype(np.int64)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Args:
        y_true, y_pred: label indices, shape (n_examples,), values in [0, n_labels).
        n_labels: number of classes.

    Returns:
        int64 array of shape (n_labels, n_labels); rows = true, columns = predicted.
    """
    t = _as_label_indices(y_true, n_labels, "y_true")
    p = _as_label_indices(y_pred, n_labels, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    # One bincount over the flattened (true, pred) pair index beats n^2 masks.
    flat = np.bincount(t * n_labels + p, minlength=n_labels * n_labels)
    return flat.reshape(n_labels, n_labels)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (scikit-learn's zero_division default)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, f1, support), each shape (n_labels,), from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    fp = predicted - tp
    fn = support - tp
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    # 2tp / (2tp + fp + fn) equals the harmonic mean of P and R when both are
    # defined, and is what scikit-learn >= 1.3 computes; it avoids 0/0 when
    # P = R = 0 with tp = 0.
    f1 = _ratio(2.0 * tp, 2.0 * tp + fp + fn)
    return precision, recall, f1, support


def _scores_from_cm(cm: np.ndarray) -> dict:
    precision, recall, f1, support = _per_class(cm)
    n = int(support.sum())
    tp_all = float(np.trace(cm))
    weights = support.astype(np.float64)
    total = weights.sum()

    def weighted(v: np.ndarray) -> float:
        return float((v * weights).sum() / total) if total > 0 else 0.0

    micro = float(_ratio(tp_all, n))  # = accuracy: see module docstring
    return {
        "precision": precision, "recall": recall, "f1": f1, "support": support,
        "accuracy": micro,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                  "f1": float(f1.mean()), "support": n},
        "micro": {"precision": micro, "recall": micro, "f1": micro, "support": n},
        "weighted": {"precision": weighted(precision), "recall": weighted(recall),
                     "f1": weighted(f1), "support": n},
    }


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict:
    """Accuracy, averaged and per-class P/R/F1, and the confusion matrix, as plain JSON types.

    Args:
        y_true: true label indices, shape (n_examples,), values in [0, len(labels)).
        y_pred: predicted label indices, same shape and range.
        labels: label names; ``labels[k]`` names index ``k``. Classes that never
            occur in ``y_true`` or ``y_pred`` still get a row (see module docstring
            for the zero-division convention).

    Returns:
        ``{"accuracy": float, "macro"|"micro"|"weighted": {"precision", "recall",
        "f1", "support"}, "per_class": {label: {"precision", "recall", "f1",
        "support"}}, "confusion_matrix": [[int]] (rows = true, columns =
        predicted, in ``labels`` order), "labels": [str], "n_examples": int}``.
        All values are Python floats/ints, so ``json.dumps`` takes it as is.

    Raises:
        ValueError: empty input, length mismatch, duplicate label names, or an
            index outside the label range (these are caller bugs; user data goes
            through :func:`check_known_labels` first).
    """
    labels = list(labels)
    if len(set(labels)) != len(labels):
        dupes = sorted(name for name, c in Counter(labels).items() if c > 1)
        raise ValueError(f"label names must be unique; repeated: {dupes}")
    cm = confusion_matrix(y_true, y_pred, len(labels))
    n = int(cm.sum())
    if n == 0:
        raise ValueError("classification_report needs at least one example")
    s = _scores_from_cm(cm)
    per_class = {
        name: {"precision": float(s["precision"][k]), "recall": float(s["recall"][k]),
               "f1": float(s["f1"][k]), "support": int(s["support"][k])}
        for k, name in enumerate(labels)
    }
    return {
        "accuracy": s["accuracy"],
        "macro": s["macro"],
        "micro": s["micro"],
        "weighted": s["weighted"],
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "labels": labels,
        "n_examples": n,
    }


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
             n_classes: int) -> float:
    """Macro-averaged F1 over ``n_classes`` classes, without Keras or scikit-learn.

    Meant for validation callbacks and model selection. Classes absent from
    both arrays count with F1 = 0, as in :func:`classification_report`.

    Args:
        y_true: true label indices, shape (n,).
        y_pred: predicted indices, shape (n,), or scores/probabilities of shape
            (n, n_classes), reduced with argmax over the last axis.
        n_classes: number of classes the macro average runs over.

    Returns:
        The macro F1 as a Python float; 0.0 for empty input.
    """
    pred = np.asarray(y_pred)
    if pred.ndim == 2:
        if pred.shape[1] != n_classes:
            raise ValueError(f"y_pred scores have {pred.shape[1]} columns, expected n_classes={n_classes}")
        pred = pred.argmax(axis=-1)
    cm = confusion_matrix(y_true, pred, n_classes)
    return float(_per_class(cm)[2].mean())


def check_known_labels(found_labels: Iterable[str], known_labels: Sequence[str],
                       source: object) -> None:
    """Refuse evaluation data holding labels the model was never trained on.

    Args:
        found_labels: the label of each example (repeats allowed), or the set
            of labels found in the data.
        known_labels: the model's label names.
        source: the data file (named in the message).

    Raises:
        DataError: naming up to 10 unknown labels in order of first appearance,
            how many distinct unknown labels there are, and how many examples
            carry them. ``source: 2 labels not seen in training (5 examples):
            'sport', 'weather'; the model knows 3: 'a', 'b', 'c'``.
    """
    known = set(known_labels)
    unknown = Counter(label for label in found_labels if label not in known)
    if not unknown:
        return
    names = list(unknown)  # Counter keeps first-appearance order
    shown = ", ".join(repr(name) for name in names[:10])
    more = f", ... ({len(names) - 10} more)" if len(names) > 10 else ""
    n_examples = sum(unknown.values())
    known_list = list(known_labels)
    known_shown = ", ".join(repr(name) for name in known_list[:10])
    known_more = ", ..." if len(known_list) > 10 else ""
    plural = "label" if len(names) == 1 else "labels"
    ex = "example" if n_examples == 1 else "examples"
    raise DataError(
        f"{len(names)} {plural} not seen in training ({n_examples} {ex}): {shown}{more}; "
        f"the model knows {len(known_list)}: {known_shown}{known_more}",
        path=source,
    )


# --------------------------------------------------------------------------
# Text for people
# --------------------------------------------------------------------------

def _width(text: str) -> int:
    """Terminal columns taken by ``text``: East Asian wide/fullwidth characters take 2."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else
               0 if unicodedata.combining(ch) else 1 for ch in text)


def _truncate(text: str, max_width: int) -> str:
    """``text`` cut to at most ``max_width`` columns, ending in '…' when cut."""
    if _width(text) <= max_width:
        return text
    out, used = [], 0
    for ch in text:
        w = _width(ch)
        if used + w > max_width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - _width(text))
    return gap + text if right else text + gap


def format_report_text(report: dict, digits: int = 4, max_label_width: int = 24,
                       max_column_width: int = 10) -> str:
    """The report as an aligned table like scikit-learn's, then the confusion matrix.

    Args:
        report: a dict from :func:`classification_report` (or one read back from JSON).
        digits: decimals shown for precision, recall, F1 and accuracy.
        max_label_width: label names longer than this (in terminal columns) are
            cut and end in '…' in the row headers.
        max_column_width: the same for the confusion matrix's column headers,
            which must stay narrow so many classes still fit on a screen.

    Returns:
        Multi-line text ending in a newline. The micro average is left out of the
        table because it always equals accuracy here (as scikit-learn does).
    """
    labels = list(report["labels"])
    row_names = [_truncate(str(name), max_label_width) for name in labels]
    stat_names = ["accuracy", "macro avg", "weighted avg"]
    name_w = max([_width(n) for n in row_names] + [len(n) for n in stat_names])
    num_w = max(9, digits + 3)
    sup_w = max(9, len(str(report["n_examples"])) + 1)
    headers = ["precision", "recall", "f1-score"]

    def row(name: str, values: list[str], support: str) -> str:
        cells = "".join(_pad(v, num_w + 1, right=True) for v in values)
        return _pad(name, name_w, right=True) + cells + _pad(support, sup_w + 1, right=True)

    fmt = f"{{:.{digits}f}}".format
    lines = [row("", headers, "support"), ""]
    for name, label in zip(row_names, labels):
        c = report["per_class"][label]
        lines.append(row(name, [fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"])],
                         str(c["support"])))
    lines.append("")
    lines.append(row("accuracy", ["", "", fmt(report["accuracy"])], str(report["n_examples"])))
    for key, name in (("macro", "macro avg"), ("weighted", "weighted avg")):
        a = report[key]
        lines.append(row(name, [fmt(a["precision"]), fmt(a["recall"]), fmt(a["f1"])],
                         str(a["support"])))

    # Confusion matrix: rows = true, columns = predicted, headers cut short.
    cm = report["confusion_matrix"]
    col_names = [_truncate(str(name), max_column_width) for name in labels]
    count_w = max((len(str(v)) for r in cm for v in r), default=1)
    col_w = [max(_width(n), count_w) for n in col_names]
    cm_name_w = max([_width(n) for n in row_names] + [len("true \\ predicted")])
    lines.append("")
    lines.append("confusion matrix (rows = true, columns = predicted)")
    lines.append(_pad("true \\ predicted", cm_name_w, right=False) + "".join(
        "  " + _pad(n, w, right=True) for n, w in zip(col_names, col_w)))
    for name, counts in zip(row_names, cm):
        lines.append(_pad(name, cm_name_w, right=False) + "".join(
            "  " + _pad(str(v), w, right=True) for v, w in zip(counts, col_w)))
    return "\n".join(lines) + "\n"
