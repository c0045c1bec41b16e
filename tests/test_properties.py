"""Property-based tests (hypothesis) for every reader and the tree parser.

1. Any bytes, given to any reader, either parse or raise the tool's own error
   (``TextclfError``): never a bare ValueError, RecursionError, OverflowError...
   The bytes are drawn both at random and as mixtures of the fragments each
   format is made of (quotes, tabs, brackets, BOMs, gzip headers, huge numbers),
   which reach the deep error paths far more often than noise does.
2. Writing data in a format and reading it back gives the same examples.

Example counts are fixed by ``settings`` below (``EXAMPLES`` per fuzz test,
``ROUND_TRIPS`` per round-trip test) and reported in docs/GUARANTEES.md.
"""

from __future__ import annotations

import atexit
import csv
import gzip
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from textclf import data, readers, trees
from textclf.errors import TextclfError

EXAMPLES = 150
ROUND_TRIPS = 100
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ROUND = settings(max_examples=ROUND_TRIPS, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = [b"\t", b"\n", b"\r\n", b"\r", b" ", b",", b'"', b"'", b"\\", b"{", b"}", b"[",
             b"]", b":", b"(", b")", b"0", b"2", b"4", b"7", b"-1", b"label", b"text", b"pos",
             b'{"label": ', b'"text": "', b'"}', b"__label__", b"null", b"true", b"1e999",
             b"Infinity", b"NaN", b"9" * 4400, b"[" * 1500, b"\xef\xbb\xbf", b"\x1f\x8b",
             b"\x00", b"\xff", b"\xc3\xa9", b"\xe2\x80\xa8", b"-LRB-", b"\\/", b"word"]
GZIP_MAGIC = b"\x1f\x8b"

fragments = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)
any_bytes = st.one_of(
    st.binary(max_size=300),
    fragments,
    fragments.map(gzip.compress),
    fragments.map(lambda b: gzip.compress(b)[: max(2, len(gzip.compress(b)) // 2)]),
)

# One scratch folder, rewritten by every example (a function-scoped tmp_path would be
# shared by all of hypothesis' examples anyway, which it warns about).
_DIR = Path(tempfile.mkdtemp(prefix="textclf-properties-"))
atexit.register(shutil.rmtree, _DIR, True)


def _file(content: bytes, name: str = "input") -> Path:
    path = _DIR / name
    path.write_bytes(content)
    return path


def _parses_or_refuses(call) -> None:
    """The property itself: a result, or TextclfError; anything else is a bug."""
    try:
        result = call()
        if hasattr(result, "__next__"):
            list(result)
    except TextclfError:
        pass


# --------------------------------------------------------------------------
# 1. Any bytes: parse or refuse with the tool's own error.
# --------------------------------------------------------------------------

RECORD_READERS = [("lines", {}), ("fasttext", {"label": None, "text": None}),
                  ("tsv", {"label": None, "text": None}), ("csv", {"label": None, "text": None}),
                  ("tsv", {"label": "label", "text": "text"}),
                  ("csv", {"label": "label", "text": "text", "id": "id"}),
                  ("jsonl", {"label": None, "text": None}), ("jsonl", {"text": 0, "label": 1})]


@pytest.mark.parametrize("fmt, columns", RECORD_READERS,
                         ids=[f"{f}-{'-'.join(map(str, c.values())) or 'plain'}"
                              for f, c in RECORD_READERS])
@FUZZ
@given(content=any_bytes)
@example(content=b'{"label": ' + b"[" * 100_000 + b"\n")
@example(content=b'{"label": ' + b"9" * 5000 + b', "text": "x"}\n')
@example(content=GZIP_MAGIC + b"\x08\x00garbage")
def test_record_readers_parse_or_refuse(fmt, columns, content):
    _parses_or_refuses(lambda: readers.iter_records(_file(content), fmt, columns))


DATA_FORMATS = ["tsv", "csv", "jsonl", "fasttext", "lines", "ptb_trees"]


@pytest.mark.parametrize("fmt", DATA_FORMATS)
@pytest.mark.parametrize("on_bad_line", ["error", "skip"])
@FUZZ
@given(content=any_bytes)
def test_training_data_readers_parse_or_refuse(fmt, on_bad_line, content):
    _parses_or_refuses(lambda: data.read_data(_file(content), fmt, on_bad_line=on_bad_line))


@pytest.mark.parametrize("fmt", ["lines", "tsv", "csv", "jsonl"])
@FUZZ
@given(content=any_bytes)
def test_prediction_input_parses_or_refuses(fmt, content):
    _parses_or_refuses(lambda: data.iter_texts(_file(content), fmt))


@FUZZ
@given(content=any_bytes)
def test_folder_documents_parse_or_refuse(content):
    _parses_or_refuses(lambda: data.read_document(_file(content), "utf-8"))


@FUZZ
@given(line=st.one_of(st.text(max_size=200),
                      st.lists(st.sampled_from(["(", ")", " ", "0", "3", "4", "9", "-1", "a",
                                                "-LRB-", "\\/", "\t", "\u3000", "\x00", "((",
                                                "(2 a)", "(3 ", "))"]),
                               max_size=40).map("".join)))
@example(line="(" * 5000 + "2 a" + ")" * 5000)
def test_tree_parser_parses_or_refuses(line):
    _parses_or_refuses(lambda: trees.parse_tree(line, "t.txt", 1))


@FUZZ
@given(content=any_bytes)
def test_tree_file_reader_parses_or_refuses(content):
    _parses_or_refuses(lambda: trees.read_trees(_file(content)))


YAML_FRAGMENTS = [b"data:", b"train:", b"model:", b"text:", b"epochs:", b"filters:", b"split:",
                  b"\n", b"\n  ", b"\n    ", b"\t", b" ", b"- ", b"? ", b": ", b"[", b"]", b"{",
                  b"}", b",", b"&a ", b"*a", b"<<: *a", b"!!python/object:os.system ",
                  b"!!binary ", b"1e400", b"1" * 400, b".nan", b".inf", b"~", b"true",
                  b"2020-01-01", b"'", b'"', b"#", b"train.tsv", b"cnn", b"-1", b"0.5",
                  b"\xef\xbb\xbf", b"\xff", b"\x00", b"%YAML 1.1\n", b"---\n", b"...\n"]


@FUZZ
@given(content=st.one_of(st.binary(max_size=200),
                         st.lists(st.sampled_from(YAML_FRAGMENTS), max_size=40).map(b"".join)))
@example(content=b"data: &a [*a]\n")
@example(content=b"data:\n  train: x\ntrain:\n  learning_rate: " + b"1" * 400 + b"\n")
def test_config_reader_parses_or_refuses(content):
    from textclf.config import load_config

    _parses_or_refuses(lambda: load_config(_file(content, "c.yaml")))


@FUZZ
@given(content=st.one_of(st.binary(max_size=100),
                         st.lists(st.sampled_from([b'{"format_version": ', b"1", b"99",
                                                   b"Infinity", b"1e400", b"-1", b'"1"',
                                                   b"null", b"[", b"]", b"}", b", ", b"2.5"]),
                                  max_size=12).map(b"".join)))
@example(content=b'{"format_version": Infinity}')
@example(content=b'{"format_version": 1e400}')
def test_run_directory_reader_parses_or_refuses(content):
    from textclf.artifact import open_run

    run = _DIR / "run"
    run.mkdir(exist_ok=True)
    (run / "labels.json").write_text('{"labels": ["a", "b"]}')
    (run / "config.yaml").write_text("data:\n  train: t.tsv\n")
    (run / "run.json").write_bytes(content)
    _parses_or_refuses(lambda: open_run(run))


# --------------------------------------------------------------------------
# 2. Round trips: what is written in a format reads back the same.
# --------------------------------------------------------------------------

# Labels: no whitespace anywhere (fastText splits on it), no BOM (stripped as an
# export artefact), no NUL (a binary file), no surrogates (not encodable).
label_text = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
                                   blacklist_characters="\ufeff\x85"),
                     min_size=1, max_size=8)


def _text(exclude: str = "") -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_categories=("Cs",),
                                 blacklist_characters="\x00\n" + exclude), max_size=30)


def _examples(text_strategy) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(st.tuples(label_text, text_strategy), min_size=1, max_size=8)


def _no_bom_start(pairs):
    return all(not text.startswith("\ufeff") for _, text in pairs)


@ROUND
@given(pairs=_examples(_text()).filter(_no_bom_start))
def test_tsv_round_trip(pairs):
    # The text is the last column, so it keeps its tabs; a final \r would read as CRLF.
    pairs = [(label, text.rstrip("\r")) for label, text in pairs]
    content = "".join(f"{label}\t{text}\n" for label, text in pairs)
    loaded = data.read_data(_file(content.encode(), "rt.tsv"), "tsv")
    assert list(zip(loaded.labels, loaded.texts)) == pairs


@ROUND
@given(pairs=_examples(st.text(st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\x00"),
                               max_size=30)).filter(_no_bom_start))
def test_csv_round_trip(pairs):
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(pairs)
    loaded = data.read_data(_file(out.getvalue().encode(), "rt.csv"), "csv")
    assert list(zip(loaded.labels, loaded.texts)) == pairs


@ROUND
@given(pairs=_examples(st.text(max_size=30)).filter(_no_bom_start),
       ascii_only=st.booleans())
def test_jsonl_round_trip(pairs, ascii_only):
    if not ascii_only:  # raw UTF-8 cannot carry a lone surrogate; \\ud800 escapes can
        pairs = [(label, text.encode("utf-8", "replace").decode("utf-8")) for label, text in pairs]
    content = "".join(json.dumps({"label": label, "text": text}, ensure_ascii=ascii_only) + "\n"
                      for label, text in pairs)
    loaded = data.read_data(_file(content.encode("utf-8"), "rt.jsonl"), "jsonl")
    assert list(zip(loaded.labels, loaded.texts)) == pairs


fasttext_text = st.text(st.characters(blacklist_categories=("Cs",),
                                      blacklist_characters="\x00\n\r"),
                        max_size=30).map(lambda t: t.strip()).filter(
    lambda t: not t.startswith("__label__") and t == t.strip(" \t\r\f\v"))


@ROUND
@given(pairs=_examples(fasttext_text), prefix=st.booleans())
def test_fasttext_round_trip(pairs, prefix):
    tag = "__label__" if prefix else ""
    pairs = [(label, text) for label, text in pairs if not label.startswith("__label__")]
    content = "".join(f"{tag}{label} {text}\n" for label, text in pairs)
    if not pairs:
        return
    loaded = data.read_data(_file(content.encode(), "rt.txt"), "fasttext")
    assert list(zip(loaded.labels, loaded.texts)) == pairs


@ROUND
@given(docs=st.lists(_text("\r"), min_size=1, max_size=10).filter(
    lambda d: not d[0].startswith("\ufeff")))
def test_prediction_lines_round_trip(docs):
    content = "".join(f"{doc}\n" for doc in docs)
    items = list(data.iter_texts(_file(content.encode(), "rt.txt"), "lines"))
    assert [(line, text) for line, text, _ in items] == list(enumerate(docs, start=1))


# Trees: random binary trees with labelled nodes, written in PTB brackets.
tree_word = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                                  blacklist_characters="()\\\ufeff\x85"),
                    min_size=1, max_size=6).filter(lambda w: w not in trees._PTB_UNESCAPE
                                                   and w.split() == [w])
tree_shape = st.recursive(st.tuples(st.integers(0, 4), tree_word),
                          lambda kids: st.tuples(st.integers(0, 4), kids, kids), max_leaves=12)


def _bracketed(node) -> str:
    if isinstance(node[1], str):
        return f"({node[0]} {node[1]})"
    return f"({node[0]} {_bracketed(node[1])} {_bracketed(node[2])})"


def _post_order(node, out: dict) -> int:
    """Append ``node`` to the expected arrays in post-order; return its index."""
    if isinstance(node[1], str):
        out["tokens"].append(node[1])
        leaf, left, right = len(out["tokens"]) - 1, -1, -1
    else:
        left, right, leaf = _post_order(node[1], out), _post_order(node[2], out), -1
    for key, value in (("leaf", leaf), ("left", left), ("right", right), ("labels", node[0])):
        out[key].append(value)
    return len(out["labels"]) - 1


@ROUND
@given(shape=tree_shape, spacing=st.sampled_from([" ", "  ", "\t"]))
def test_tree_round_trip(shape, spacing):
    line = _bracketed(shape).replace(" ", spacing)
    tree = trees.parse_tree(line)
    expected = {"tokens": [], "leaf": [], "left": [], "right": [], "labels": []}
    _post_order(shape, expected)
    assert list(tree.tokens) == expected["tokens"]
    for key in ("leaf", "left", "right", "labels"):
        np.testing.assert_array_equal(getattr(tree, key), expected[key], err_msg=key)


@ROUND
@given(shapes=st.lists(tree_shape, min_size=1, max_size=5))
def test_tree_file_round_trip(shapes):
    content = "".join(_bracketed(shape) + "\n" for shape in shapes)
    parsed = trees.read_trees(_file(content.encode(), "rt-trees.txt"))
    assert [_bracketed_back(t) for t in parsed] == [_bracketed(s) for s in shapes]


def _bracketed_back(tree) -> str:
    """A parsed Tree written in brackets again (its root is the last node)."""
    def write(i: int) -> str:
        if tree.leaf[i] >= 0:
            return f"({tree.labels[i]} {tree.tokens[tree.leaf[i]]})"
        return f"({tree.labels[i]} {write(tree.left[i])} {write(tree.right[i])})"
    return write(tree.n_nodes - 1)


@ROUND
@given(records=st.lists(st.tuples(st.text(max_size=10), st.floats(0, 1)), min_size=1,
                        max_size=6))
def test_jsonl_prediction_output_round_trip(records):
    from textclf.prediction import JsonlWriter

    out = io.StringIO()
    writer = JsonlWriter(out)
    for i, (label, p) in enumerate(records, start=1):
        writer.write({"line": i, "label": label, "probability": p, "top_k": [[label, p]]})
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == len(records) + 1
    back = [json.loads(line) for line in lines[:-1]]
    assert [(r["line"], r["label"]) for r in back] == [(i, lb) for i, (lb, _) in
                                                       enumerate(records, start=1)]
    assert all(abs(r["probability"] - p) <= 5e-7 for r, (_, p) in zip(back, records))
