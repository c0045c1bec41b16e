"""textclf.evaluation against scikit-learn, which is the definition we promise to match."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from textclf.errors import DataError
from textclf.evaluation import (
    check_known_labels,
    classification_report,
    confusion_matrix,
    format_report_text,
    macro_f1,
)

sk_metrics = pytest.importorskip("sklearn.metrics")

TOL = 1e-12


def _random_case(seed: int, n_classes: int, n: int):
    """Random labels where class 0 is never predicted and the last class never occurs in y_true.

    Returns (y_true, y_pred, labels) with y_* of shape (n,).
    """
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes - 1, size=n)       # last class absent from y_true
    y_pred = rng.integers(1, n_classes, size=n)           # class 0 never predicted
    # Make some predictions right so the scores are not all near chance.
    right = rng.random(n) < 0.4
    y_pred = np.where(right & (y_true > 0), y_true, y_pred)
    labels = [f"class_{k}" for k in range(n_classes)]
    return y_true, y_pred, labels


def _sklearn(fn, *args, **kwargs):
    # zero_division="warn" is the default we promise to match; silence the warning it gives.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


CASES = [(seed, n_classes, n) for seed in (0, 1, 2) for n_classes, n in ((3, 7), (5, 200), (12, 1000))]


@pytest.mark.parametrize("seed,n_classes,n", CASES)
def test_matches_sklearn_classification_report(seed, n_classes, n):
    y_true, y_pred, labels = _random_case(seed, n_classes, n)
    ours = classification_report(y_true, y_pred, labels)
    ref = _sklearn(sk_metrics.classification_report, y_true, y_pred, labels=list(range(n_classes)),
                   target_names=labels, output_dict=True)
    for name in labels:
        for ours_key, ref_key in (("precision", "precision"), ("recall", "recall"),
                                  ("f1", "f1-score"), ("support", "support")):
            assert ours["per_class"][name][ours_key] == pytest.approx(ref[name][ref_key], abs=TOL), (name, ours_key)
    for avg in ("macro", "weighted"):
        for ours_key, ref_key in (("precision", "precision"), ("recall", "recall"),
                                  ("f1", "f1-score"), ("support", "support")):
            assert ours[avg][ours_key] == pytest.approx(ref[f"{avg} avg"][ref_key], abs=TOL), (avg, ours_key)
    # The case really exercises the zero-division paths.
    assert ours["per_class"][labels[0]]["precision"] == 0.0
    assert ours["per_class"][labels[-1]]["support"] == 0
    assert ours["per_class"][labels[-1]]["recall"] == 0.0


@pytest.mark.parametrize("seed,n_classes,n", CASES)
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_averages_match_precision_recall_fscore_support(seed, n_classes, n, average):
    y_true, y_pred, labels = _random_case(seed, n_classes, n)
    ours = classification_report(y_true, y_pred, labels)[average]
    p, r, f, _ = _sklearn(sk_metrics.precision_recall_fscore_support, y_true, y_pred,
                          labels=list(range(n_classes)), average=average)
    np.testing.assert_allclose([ours["precision"], ours["recall"], ours["f1"]], [p, r, f],
                               rtol=0, atol=TOL, err_msg=average)
    assert ours["support"] == n


@pytest.mark.parametrize("seed,n_classes,n", CASES)
def test_per_class_confusion_and_accuracy_match_sklearn(seed, n_classes, n):
    y_true, y_pred, labels = _random_case(seed, n_classes, n)
    ours = classification_report(y_true, y_pred, labels)
    p, r, f, s = _sklearn(sk_metrics.precision_recall_fscore_support, y_true, y_pred,
                          labels=list(range(n_classes)), average=None)
    per = [ours["per_class"][name] for name in labels]
    np.testing.assert_allclose([c["precision"] for c in per], p, rtol=0, atol=TOL)
    np.testing.assert_allclose([c["recall"] for c in per], r, rtol=0, atol=TOL)
    np.testing.assert_allclose([c["f1"] for c in per], f, rtol=0, atol=TOL)
    assert [c["support"] for c in per] == s.tolist()
    assert ours["confusion_matrix"] == sk_metrics.confusion_matrix(
        y_true, y_pred, labels=list(range(n_classes))).tolist()
    assert ours["accuracy"] == pytest.approx(sk_metrics.accuracy_score(y_true, y_pred), abs=TOL)
    assert ours["n_examples"] == n
    assert macro_f1(y_true, y_pred, n_classes) == pytest.approx(
        _sklearn(sk_metrics.f1_score, y_true, y_pred, labels=list(range(n_classes)), average="macro"),
        abs=TOL)


def test_layout_is_plain_json_with_exact_top_level_keys():
    report = classification_report([0, 1, 1], [0, 1, 0], ["neg", "pos"])
    assert set(report) == {"accuracy", "macro", "micro", "weighted", "per_class",
                           "confusion_matrix", "labels", "n_examples"}
    for avg in ("macro", "micro", "weighted"):
        assert set(report[avg]) == {"precision", "recall", "f1", "support"}
    assert report["labels"] == ["neg", "pos"]
    assert report["confusion_matrix"] == [[1, 0], [1, 1]]   # rows = true, columns = predicted
    assert json.loads(json.dumps(report)) == report          # only JSON types inside


def test_hand_computed_values():
    # true:  a a b b b c ; pred: a b b b a a
    report = classification_report([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 0], ["a", "b", "c"])
    assert report["per_class"]["a"] == {"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2}
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3, abs=TOL)
    assert report["per_class"]["b"]["recall"] == 2 / 3
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["accuracy"] == 0.5
    assert report["macro"]["f1"] == pytest.approx((0.4 + 2 / 3 + 0.0) / 3, abs=TOL)


def test_class_neither_present_nor_predicted_scores_zero_and_lowers_macro():
    with_extra = classification_report([0, 1], [0, 1], ["a", "b", "unused"])
    assert with_extra["per_class"]["unused"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert with_extra["macro"]["f1"] == pytest.approx(2 / 3, abs=TOL)
    assert with_extra["weighted"]["f1"] == 1.0
    assert with_extra["accuracy"] == 1.0


@pytest.mark.parametrize("y_true,y_pred,labels,match", [
    ([], [], ["a"], "at least one example"),
    ([0, 1], [0], ["a", "b"], "differ in length"),
    ([0, 2], [0, 1], ["a", "b"], "label index 2"),
    ([0, -1], [0, 1], ["a", "b"], "label index -1"),
    ([0.0, 1.0], [0, 1], ["a", "b"], "integer label indices"),
    ([0, 1], [0, 1], ["a", "a"], "unique"),
])
def test_bad_input_is_rejected(y_true, y_pred, labels, match):
    with pytest.raises(ValueError, match=match):
        classification_report(y_true, y_pred, labels)


def test_confusion_matrix_shape_and_dtype():
    cm = confusion_matrix(np.array([2, 2, 0]), np.array([2, 0, 0]), 4)
    assert cm.shape == (4, 4) and cm.dtype == np.int64
    assert cm[2, 2] == 1 and cm[2, 0] == 1 and cm[0, 0] == 1 and cm.sum() == 3


def test_macro_f1_accepts_probabilities():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    assert macro_f1([0, 1, 1], probs, 3) == macro_f1([0, 1, 1], [0, 1, 0], 3)
    assert macro_f1([0, 1, 1], [0, 1, 0], 3) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3, abs=TOL)
    with pytest.raises(ValueError, match="columns"):
        macro_f1([0, 1, 1], probs, 4)


def test_format_report_text_aligns_and_truncates():
    labels = ["sport", "体育新闻体育新闻体育新闻体育新闻", "x" * 40]
    report = classification_report([0, 1, 2, 2], [0, 1, 2, 0], labels)
    text = format_report_text(report, digits=2, max_label_width=20, max_column_width=8)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    # sklearn-like rows with 2 digits
    assert lines[2].split() == ["sport", "0.50", "1.00", "0.67", "1"]
    assert lines[4].split() == ["x" * 19 + "…", "1.00", "0.50", "0.67", "2"]
    assert any(line.split() == ["accuracy", "0.75", "4"] for line in lines)
    assert any(line.split()[:2] == ["macro", "avg"] for line in lines)
    assert "x" * 21 not in text
    assert "体育新闻体育新闻体…" in text   # 9 wide chars (18 columns) + '…' fit in 20
    # table rows line up: every score row ends in the same column
    table = [line for line in lines[2:5]]
    assert len({len(line) + sum(1 for ch in line if "\u4e00" <= ch <= "\u9fff") for line in table}) == 1
    # confusion matrix with truncated headers, rows = true
    cm_at = lines.index("confusion matrix (rows = true, columns = predicted)")
    header = lines[cm_at + 1]
    assert "sport" in header and "xxxxxxx…" in header and "体育新…" in header
    assert lines[cm_at + 2].split() == ["sport", "1", "0", "0"]
    assert lines[cm_at + 4].split()[-3:] == ["1", "0", "1"]


def test_format_report_text_from_json_roundtrip():
    report = classification_report([0, 1, 1], [0, 1, 0], ["neg", "pos"])
    assert format_report_text(json.loads(json.dumps(report))) == format_report_text(report)


def test_check_known_labels_passes_when_all_known():
    check_known_labels(["a", "b", "a"], ["a", "b", "c"], "eval.tsv")


def test_check_known_labels_names_unknown_labels_and_counts():
    with pytest.raises(DataError) as info:
        check_known_labels(["a", "zz", "b", "yy", "zz"], ["a", "b"], "eval.tsv")
    assert str(info.value) == ("eval.tsv: 2 labels not seen in training (3 examples): 'zz', 'yy'; "
                               "the model knows 2: 'a', 'b'")
    assert info.value.exit_code == 2


def test_check_known_labels_shows_first_ten_only():
    found = [f"new{k}" for k in range(25)]
    with pytest.raises(DataError) as info:
        check_known_labels(found, ["a"], "eval.jsonl")
    msg = str(info.value)
    assert msg.startswith("eval.jsonl: 25 labels not seen in training (25 examples): 'new0', ")
    assert "'new9', ... (15 more)" in msg
    assert "new10" not in msg
    assert "\n" not in msg
