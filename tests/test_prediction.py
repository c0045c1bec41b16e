"""textclf.prediction: batching, order, top-k, writers, progress, memory flatness."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from textclf.errors import TextclfError
from textclf.prediction import (
    JsonlWriter,
    Progress,
    TsvWriter,
    make_writer,
    predict_stream,
    tsv_escape,
)

LABELS = ["sport", "business", "科技"]


def fake_proba(texts: list[str]) -> np.ndarray:
    """A deterministic 'model': softmax of features of each text, shape (len(texts), 3)."""
    feats = np.array([[len(t) % 4, sum(map(ord, t)) % 5, 1.5] for t in texts], dtype=np.float64)
    e = np.exp(feats - feats.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class CountingModel:
    """Wraps fake_proba and records the size of every call."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        return fake_proba(texts)


TEXTS = ["a match", "", "shares fell", "", "", "新的手机", "x" * 50, "goal!", ""]


def items(texts, ids=None):
    """(line, text, id) triples, lines numbered from 1 like a file."""
    return [(n, t, None if ids is None else ids[n - 1]) for n, t in enumerate(texts, start=1)]


def expected_label(text: str) -> str:
    return LABELS[int(np.argmax(fake_proba([text])[0]))]


def test_one_record_per_input_in_order_including_empty_texts():
    records = list(predict_stream(items(TEXTS), fake_proba, LABELS, batch_size=4, top_k=1))
    assert [r["line"] for r in records] == list(range(1, len(TEXTS) + 1))
    assert [r["label"] for r in records] == [expected_label(t) for t in TEXTS]
    for r, text in zip(records, TEXTS):
        assert r["probability"] == pytest.approx(float(fake_proba([text]).max()), abs=1e-7)
        assert set(r) == {"line", "label", "probability", "top_k"}


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_batch_size_changes_calls_not_records(batch_size):
    model = CountingModel()
    records = list(predict_stream(items(TEXTS), model, LABELS, batch_size=batch_size, top_k=3))
    reference = list(predict_stream(items(TEXTS), fake_proba, LABELS, batch_size=len(TEXTS), top_k=3))
    assert records == reference
    assert sum(model.calls) == len(TEXTS)
    assert all(c == batch_size for c in model.calls[:-1])
    assert 1 <= model.calls[-1] <= batch_size


def test_input_is_consumed_lazily_one_batch_at_a_time():
    pulled = []

    def source():
        for item in items(TEXTS):
            pulled.append(item[0])
            yield item

    stream = predict_stream(source(), fake_proba, LABELS, batch_size=3, top_k=1)
    first = next(stream)
    assert first["line"] == 1
    assert pulled == [1, 2, 3]


@pytest.mark.parametrize("top_k,expected_len", [(1, 1), (2, 2), (3, 3), (10, 3)])
def test_top_k_sorted_and_headed_by_label(top_k, expected_len):
    for r in predict_stream(items(TEXTS), fake_proba, LABELS, batch_size=4, top_k=top_k):
        probs = [p for _, p in r["top_k"]]
        assert len(r["top_k"]) == expected_len
        assert probs == sorted(probs, reverse=True)
        assert r["top_k"][0] == [r["label"], r["probability"]]
        assert len({name for name, _ in r["top_k"]}) == expected_len


def test_top_k_values_and_ties_keep_label_order():
    def model(texts):
        return np.array([[0.25, 0.5, 0.25], [0.1, 0.2, 0.7]][: len(texts)])

    records = list(predict_stream(items(["t", "u"]), model, LABELS, batch_size=2, top_k=3))
    assert records[0]["top_k"] == [["business", 0.5], ["sport", 0.25], ["科技", 0.25]]
    assert records[1]["label"] == "科技"
    assert records[1]["top_k"] == [["科技", 0.7], ["business", 0.2], ["sport", 0.1]]


def test_ids_pass_through_only_when_given():
    ids = [f"doc-{k}" if k % 2 else None for k in range(len(TEXTS))]
    records = list(predict_stream(items(TEXTS, ids), fake_proba, LABELS, batch_size=2, top_k=1))
    for r, ident in zip(records, ids):
        if ident is None:
            assert "id" not in r
        else:
            assert r["id"] == ident
            assert list(r)[:2] == ["line", "id"]


@pytest.mark.parametrize("bad,match", [
    (lambda t: np.ones((len(t), 2)) / 2, r"shape \(\d+, 2\).*expected \(\d+, 3\)"),
    (lambda t: np.ones((len(t) + 1, 3)) / 3, "shape"),
    (lambda t: np.where(np.arange(len(t))[:, None] == 1, np.nan, 1 / 3) * np.ones((len(t), 3)),
     "non-finite probability for input line 2"),
])
def test_bad_model_output_is_a_runtime_error(bad, match):
    with pytest.raises(TextclfError, match=match) as info:
        list(predict_stream(items(TEXTS), bad, LABELS, batch_size=4, top_k=1))
    assert info.value.exit_code == 1


@pytest.mark.parametrize("kwargs", [{"batch_size": 0, "top_k": 1}, {"batch_size": 2, "top_k": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        list(predict_stream(items(TEXTS), fake_proba, LABELS, **kwargs))


N_STREAM = 200_000
MEMORY_BOUND = 5 * 2**20


def _numbered_texts():
    for k in range(N_STREAM):
        yield k + 1, f"text number {k}" if k % 7 else "", None


def _peak_bytes(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streams_in_flat_memory():
    """200,000 texts through predict_stream with a peak well under 5 MB: nothing is materialised."""
    def model(batch):
        return np.tile(np.array([0.2, 0.5, 0.3]), (len(batch), 1))

    def run():
        count, last = 0, None
        for last in predict_stream(_numbered_texts(), model, LABELS, batch_size=256, top_k=2):
            count += 1
        return count, last

    (count, last), peak = _peak_bytes(run)
    assert count == N_STREAM and last["line"] == N_STREAM and last["label"] == "business"
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.2f} MiB"


def test_memory_bound_would_catch_materialising_the_input():
    """The bound above can fail: merely listing the same 200,000 inputs costs more than 5 MB."""
    held, peak = _peak_bytes(lambda: list(_numbered_texts()))
    assert len(held) == N_STREAM and peak > MEMORY_BOUND


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------

def _records(ids=None):
    return list(predict_stream(items(TEXTS, ids), fake_proba, LABELS, batch_size=4, top_k=2))


def test_jsonl_one_parsable_line_per_record_with_rounded_probabilities():
    out = io.StringIO()
    records = _records(ids=[None, "a\tb", "line\nbreak", None, "x", "引号\"", None, "z", "\u2028"])
    assert JsonlWriter(out).write_all(records) == len(records)
    text = out.getvalue()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(records)
    assert len(text.splitlines()) == len(records)   # U+2028 escaped: no extra line breaks
    for line, r in zip(lines, records):
        obj = json.loads(line)
        assert obj["line"] == r["line"] and obj["label"] == r["label"]
        assert obj.get("id") == r.get("id")
        assert obj["probability"] == round(r["probability"], 6)
        assert obj["top_k"] == [[name, round(p, 6)] for name, p in r["top_k"]]
    assert "科技" in text and "\\u79d1" not in text   # Chinese stays readable


def test_jsonl_is_strict_json_and_stringifies_odd_ids():
    out = io.StringIO()
    JsonlWriter(out).write({"line": 1, "id": Path("p"), "label": "a", "probability": 0.1234567,
                            "top_k": [["a", 0.1234567]]})
    assert json.loads(out.getvalue()) == {"line": 1, "id": "p", "label": "a", "probability": 0.123457,
                                          "top_k": [["a", 0.123457]]}


def _tsv_unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\":
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\", ",": ","}[field[i + 1]])
            i += 2
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def test_tsv_header_rows_and_escaping():
    ids = ["plain", "tab\there", "new\nline", "back\\slash", "cr\rx", None, "7", "8", "9"]
    out = io.StringIO()
    TsvWriter(out, include_id=True).write_all(_records(ids))
    lines = out.getvalue().split("\n")
    assert lines[0] == "line\tid\tlabel\tprobability\ttop_k"
    assert lines[-1] == "" and len(lines) == len(TEXTS) + 2
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(row) == 5 for row in rows)
    assert [_tsv_unescape(row[1]) for row in rows] == [i or "" for i in ids]
    assert rows[1][1] == "tab\\there" and rows[3][1] == "back\\\\slash"
    for row in rows:
        assert len(row[3].split(".")[1]) == 6
        first = row[4].split(",")[0]
        assert first.rsplit(":", 1) == [row[2], row[3]]


def test_tsv_without_ids_and_commas_in_labels():
    out = io.StringIO()
    writer = TsvWriter(out)
    writer.write({"line": 3, "label": "a,b", "probability": 0.5,
                  "top_k": [["a,b", 0.5], ["c:d", 0.25], ["e\tf", 0.25]]})
    header, row, end = out.getvalue().split("\n")
    assert header == "line\tlabel\tprobability\ttop_k" and end == ""
    assert row == "3\ta,b\t0.500000\ta\\,b:0.500000,c:d:0.250000,e\\tf:0.250000"
    with pytest.raises(ValueError, match="include_id"):
        writer.write({"line": 4, "id": "x", "label": "a", "probability": 1.0, "top_k": [["a", 1.0]]})


def test_tsv_header_written_for_empty_input():
    out = io.StringIO()
    assert TsvWriter(out).write_all([]) == 0
    assert out.getvalue() == "line\tlabel\tprobability\ttop_k\n"


def test_tsv_escape():
    assert tsv_escape("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"


def test_make_writer():
    assert isinstance(make_writer("jsonl", io.StringIO()), JsonlWriter)
    assert make_writer("tsv", io.StringIO(), include_id=True).include_id
    with pytest.raises(ValueError, match="jsonl, tsv"):
        make_writer("csv", io.StringIO())


# --------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------

class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_on_a_tty_and_ends_the_line(capsys):
    err = FakeTTY()
    progress = Progress(err, interval=0.0)
    list(predict_stream(items(TEXTS), fake_proba, LABELS, batch_size=4, top_k=1, progress=progress))
    assert err.getvalue() == "\r4 texts predicted\r8 texts predicted\r9 texts predicted\r9 texts predicted\n"
    assert capsys.readouterr().out == ""


def test_progress_is_rate_limited():
    err = FakeTTY()
    progress = Progress(err, interval=3600)
    list(predict_stream(items(TEXTS), fake_proba, LABELS, batch_size=1, top_k=1, progress=progress))
    # first update draws, the rest fall inside the interval, close draws the final count
    assert err.getvalue() == "\r1 texts predicted\r9 texts predicted\n"


def test_progress_silent_when_not_a_tty():
    err = io.StringIO()
    list(predict_stream(items(TEXTS), fake_proba, LABELS, batch_size=1, top_k=1,
                        progress=Progress(err, interval=0.0)))
    assert err.getvalue() == ""


def test_modules_do_not_import_tensorflow():
    code = ("import sys, textclf.prediction, textclf.evaluation, textclf.atomic; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": ""}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
