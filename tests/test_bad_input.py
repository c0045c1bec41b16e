"""Bad input, one row per kind: refused with exit code 2, one line naming the file
and line (or the config key), no traceback, and nothing written anywhere.

Each case builds its inputs in an empty folder and returns the command line; the
test snapshots the folder (and the shared run directory) before and after, so
"no output written" covers the requested output path, partial and temporary
files alike. CRLF line endings and a byte-order mark are not bad input: the
tests at the end check they work exactly like plain files.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import write_topic_tsv
from textclf.cli import cli

RECIPE = ("data:\n  train: {train}\n  format: {fmt}\n"
          "text:\n  max_tokens: 100\n  max_length: 30\n"
          "model:\n  type: cnn\n  embedding_dim: 8\n  filters: 4\n  kernel_sizes: [2]\n"
          "train:\n  epochs: 1\n  batch_size: 16\n  verbose: quiet\n")
TEN_MB = 10 * 1024 * 1024


def invoke(*args, input=None):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input-run")
    write_topic_tsv(folder / "train.tsv", 120)
    (folder / "c.yaml").write_text(RECIPE.format(train="train.tsv", fmt="tsv"))
    result = invoke("train", "-c", folder / "c.yaml", "-o", folder / "run")
    assert result.exit_code == 0, result.output
    return folder / "run"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


# --------------------------------------------------------------------------
# Case builders: (work folder, a private copy of a finished run) -> argv.
# --------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    build: Callable[[Path, Path], list]
    expect: tuple[str, ...]  # fragments of the message; "{w}" is the work folder


def train_with(yaml_text: str | None = None, files: dict | None = None,
               extra: tuple = (), **recipe) -> Callable[[Path, Path], list]:
    """``train -c c.yaml -o out``, with ``files`` written first (str or bytes) and
    the recipe either given whole or filled from RECIPE (train=, fmt=)."""
    def build(w: Path, run: Path) -> list:
        for name, content in (files or {}).items():
            path = w / name
            if content is None:
                write_topic_tsv(path, 60)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        text = yaml_text if yaml_text is not None else RECIPE.format(
            train=recipe.get("train", "train.tsv"), fmt=recipe.get("fmt", "tsv"))
        if text is not False:
            (w / "c.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["train", "-c", w / "c.yaml", "-o", w / "out", *extra]
    return build


def recipe_plus(section_yaml: str, **kwargs) -> Callable[[Path, Path], list]:
    """The good recipe with a new top-level section appended (a repeated one
    would be a duplicate-key error of its own)."""
    return train_with(RECIPE.format(train="train.tsv", fmt="tsv") + section_yaml,
                      files={"train.tsv": None}, **kwargs)


def recipe_set(*overrides: str) -> Callable[[Path, Path], list]:
    extra = tuple(x for o in overrides for x in ("--set", o))
    return train_with(files={"train.tsv": None}, extra=extra)


def data_file(name: str, content, fmt: str = "tsv", yaml_extra: str = "") -> Callable:
    text = RECIPE.format(train=name, fmt=fmt).replace("  format:", yaml_extra + "  format:")
    return train_with(text, files={name: content})


def good_lines(n: int = 12) -> str:
    labels = ["sport", "tech", "business"]
    return "".join(f"{labels[i % 3]}\tgoal chip bank {i}\n" for i in range(n))


def trees(line2: str) -> Callable:
    text = ("data:\n  train: trees.txt\n  format: ptb_trees\nmodel:\n  type: treenet\n"
            "train:\n  epochs: 1\n  verbose: quiet\n")
    return train_with(text, files={"trees.txt": f"(3 (2 good) (3 film))\n{line2}\n"})


def predict_on(name: str, content, *extra) -> Callable:
    def build(w: Path, run: Path) -> list:
        path = w / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["predict", run, path, "-o", w / "out.jsonl", *extra]
    return build


def evaluate_on(name: str, content) -> Callable:
    def build(w: Path, run: Path) -> list:
        if content is not None:
            (w / name).write_text(content, encoding="utf-8")
        return ["evaluate", run, w / name, "-o", w / "report.txt"]
    return build


def broken_run(damage: Callable[[Path], None], command: str = "predict") -> Callable:
    def build(w: Path, run: Path) -> list:
        damage(run)
        (w / "docs.txt").write_text("goal match\n")
        if command == "predict":
            return ["predict", run, w / "docs.txt", "-o", w / "out.jsonl"]
        return ["evaluate", run, "-o", w / "report.txt"]
    return build


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return damage


def _truncate(run: Path) -> None:
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])


def _scramble(run: Path) -> None:
    """Zeros over the middle of the archive: its directory intact, its contents not."""
    data = bytearray((run / "model.keras").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 512] = bytes(512)
    (run / "model.keras").write_bytes(bytes(data))


def _future(run: Path) -> None:
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "format_version": 99,
                                              "textclf_version": "9.0.0"}))


def _touch(path: Path) -> list:
    """Create ``path`` (and its folder) with some content; [] so a lambda can add argv."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("keep\n")
    return []


def _gzip_garbage() -> bytes:
    good = gzip.compress(good_lines(30).encode())
    return good[:40] + b"\x00garbage" * 4


F = "{w}/"  # the work folder, in expected messages

CASES = [
    # ---- the config file itself
    Case("yaml-malformed", train_with("data:\n  train: [train.tsv\n"),
         ("config must be valid YAML", "line 3", F + "c.yaml")),
    Case("yaml-tab-indent", train_with("data:\n\ttrain: train.tsv\n"),
         ("YAML forbids tabs", "line 2", F + "c.yaml")),
    Case("yaml-not-a-mapping", train_with("- data\n- train\n"),
         ("config must be a mapping", F + "c.yaml")),
    Case("yaml-duplicate-section", train_with("data:\n  train: a\ndata:\n  train: b\n"),
         ("duplicate key 'data'", "line 3", F + "c.yaml")),
    Case("yaml-unhashable-key", train_with("? [a, b]\n: 1\n"),
         ("unhashable key", "line 1", F + "c.yaml")),
    Case("yaml-nested-too-deep", train_with("data: " + "[" * 3000 + "]" * 3000 + "\n"),
         ("nested too deeply", F + "c.yaml")),
    Case("yaml-python-tag", train_with("data: !!python/object/apply:os.system ['touch pwned']\n"),
         ("could not determine a constructor", "line 1", F + "c.yaml")),
    Case("config-missing", train_with(False), ("config must be an existing YAML file",
                                                F + "c.yaml")),
    Case("config-not-utf8", train_with(b"data:\n  train: caf\xe9.tsv\n"),
         ("config must be a readable UTF-8 YAML file", F + "c.yaml")),
    Case("config-empty", train_with(""), ("data.train must be a path", F + "c.yaml")),
    # ---- wrong types
    Case("type-string-for-int", recipe_set("train.epochs=ten"),
         ("train.epochs must be a positive integer; got 'ten'",)),
    Case("type-float-for-int", recipe_set("train.batch_size=1.5"),
         ("train.batch_size must be a positive integer; got 1.5",)),
    Case("type-string-for-bool", recipe_set("train.deterministic=maybe"),
         ("train.deterministic must be true or false; got 'maybe'",)),
    Case("type-scalar-for-section", recipe_set("data.split=5"),
         ("data.split must be a mapping of keys to values; got 5",)),
    Case("type-scalar-for-list", recipe_set("model.kernel_sizes=3"),
         ("model.kernel_sizes must be a non-empty list of positive integers; got 3",)),
    Case("type-section-not-mapping", train_with("data: train.tsv\n"),
         ("data must be a mapping of keys to values", F + "c.yaml")),
    Case("bad-choice", recipe_set("model.type=transformer"),
         ("model.type must be one of cnn, rnn, treenet; got 'transformer'",)),
    # ---- unknown and misspelt keys
    Case("unknown-key", recipe_set("model.colour=red"),
         ("unknown key model.colour in section model",)),
    Case("misspelt-key", recipe_set("model.filtrs=8"),
         ("unknown key model.filtrs", "did you mean model.filters?")),
    Case("misspelt-section", recipe_plus("trian:\n  epochs: 2\n"),
         ("unknown key trian in section config; did you mean train?", F + "c.yaml")),
    Case("override-without-value", recipe_set("train.epochs"),
         ("--set must be key.path=value; got 'train.epochs'",)),
    # ---- out-of-range numbers
    Case("range-dropout", recipe_set("model.dropout=1.5"),
         ("model.dropout must be a number in [0, 1); got 1.5",)),
    Case("range-epochs-zero", recipe_set("train.epochs=0"),
         ("train.epochs must be a positive integer; got 0",)),
    Case("range-negative-rate", recipe_set("train.learning_rate=-0.01"),
         ("train.learning_rate must be a number in (0, inf]",)),
    Case("range-nan-rate", recipe_set("train.learning_rate=.nan"),
         ("train.learning_rate must be a number in (0, inf]; got nan",)),
    Case("range-huge-integer", recipe_set("train.learning_rate=1" + "0" * 400),
         ("train.learning_rate must be a number in (0, inf]",)),
    Case("range-seed-over-32-bits", recipe_set("train.seed=4294967296"),
         ("train.seed must be an integer in [0, 4294967295]; got 4294967296",)),
    Case("range-rnn-layers", recipe_set("model.type=rnn", "model.kernel_sizes=[3, 4, 5]",
                                        "model.filters=100", "model.layers=9"),
         ("model.layers must be an integer in [1, 8]; got 9",)),
    Case("range-split-sum", recipe_set("data.split.valid=0.6", "data.split.test=0.5"),
         ("data.split must be fractions valid + test below 1",)),
    Case("cross-field-options", recipe_set("model.type=rnn"),
         ("model.kernel_sizes must be left out for model.type rnn",)),
    # ---- the config points at missing or unusable files
    Case("data-file-missing", train_with(RECIPE.format(train="absent.tsv", fmt="tsv")),
         (F + "absent.tsv: no such file",)),
    Case("data-is-a-directory", train_with(RECIPE.format(train=".", fmt="tsv")),
         ("{w}: expected a file, found a directory",)),
    Case("data-unknown-extension", data_file("train.dat", good_lines(), fmt="auto"),
         (F + "train.dat: cannot tell the format",)),
    Case("encoding-unknown", data_file("train.tsv", good_lines(),
                                       yaml_extra="  encoding: klingon\n"),
         ("data.encoding must be a text encoding Python knows",)),
    Case("encoding-utf16", data_file("train.tsv", good_lines(),
                                     yaml_extra="  encoding: utf-16\n"),
         ("data.encoding must be an ASCII-compatible encoding",)),
    Case("embeddings-missing", recipe_set("text.embeddings=vectors.txt"),
         ("vectors.txt",)),
    # ---- data files
    Case("data-empty", data_file("train.tsv", ""),
         (F + "train.tsv: no examples: the file is empty or has only a header row",)),
    Case("data-header-only", data_file("train.tsv", "label\ttext\n",
                                       yaml_extra="  label_column: label\n  text_column: text\n"),
         (F + "train.tsv: no examples",)),
    Case("data-blank-lines-only", data_file("train.tsv", "\n  \n\t\n"),
         (F + "train.tsv: no examples",)),
    Case("data-missing-column", data_file("train.tsv", good_lines(2) + "sport\n" + good_lines()),
         (F + "train.tsv:3: has 1 column, expected at least 2 (label<TAB>text)",)),
    Case("data-missing-named-column",
         data_file("train.tsv", "label\ttext\n" + good_lines(),
                   yaml_extra="  label_column: label\n  text_column: body\n"),
         (F + "train.tsv:1: expected a header with a column named 'body'",)),
    Case("data-invalid-utf8", data_file("train.tsv", good_lines(3).encode() +
                                        b"tech\tcaf\xff\n" + good_lines().encode()),
         (F + "train.tsv:4: expected utf-8 text, found byte 0xff",)),
    Case("data-nul-byte", data_file("train.tsv", b"sport\tgoal\nte\x00ch\tchip\n"),
         (F + "train.tsv:2: expected text, found a NUL byte",)),
    Case("data-utf16-file", data_file("train.tsv", good_lines().encode("utf-16")),
         (F + "train.tsv:1: expected text, found a NUL byte",)),
    Case("data-10mb-line", data_file("train.tsv", (good_lines(1) + "x" * TEN_MB + "\n"
                                                   + good_lines()).encode()),
         (F + "train.tsv:2: has 1 column",)),
    Case("data-empty-label",
         data_file("train.tsv", good_lines(2) + "  \tno label\n" + good_lines()),
         (F + "train.tsv:3: empty label",)),
    Case("data-single-class", data_file("train.tsv", "sport\tgoal match\n" * 30),
         ("data.train", "single class ('sport')")),
    Case("data-fewer-examples-than-classes", data_file("train.tsv", good_lines(3)),
         (F + "train.tsv", "data.split.valid = 0.1 of 3 examples leaves no valid examples")),
    Case("data-unseen-label-in-valid",
         train_with(RECIPE.format(train="train.tsv", fmt="tsv").replace(
             "  format:", "  valid: valid.tsv\n  format:"),
             files={"train.tsv": good_lines(30), "valid.tsv": "weather\train today\n"}),
         (F + "valid.tsv: validation data has label 'weather'",)),
    Case("jsonl-invalid-json", data_file("train.jsonl", '{"label": "a", "text": "x"}\n{"label": \n',
                                         fmt="jsonl"),
         (F + "train.jsonl:2: expected a JSON object, found invalid JSON",)),
    Case("jsonl-nested-too-deep", data_file("train.jsonl", "[" * 100_000 + "\n", fmt="jsonl"),
         (F + "train.jsonl:1: expected a JSON object", "nested too deeply")),
    Case("jsonl-huge-integer-label", data_file("train.jsonl", '{"label": ' + "9" * 5000
                                               + ', "text": "x"}\n', fmt="jsonl"),
         (F + "train.jsonl:1:", "an integer too long")),
    Case("jsonl-array-file", data_file("train.jsonl", '[{"label": "a", "text": "x"},\n 1]\n',
                                       fmt="jsonl"),
         (F + "train.jsonl:1: expected JSON Lines",)),
    Case("csv-unclosed-quote",
         data_file("train.csv", 'sport,goal\ntech,"chip\nbank,x\n', fmt="csv"),
         (F + "train.csv:2: unclosed quote",)),
    Case("gzip-corrupt", data_file("train.tsv.gz", _gzip_garbage()),
         (F + "train.tsv.gz", "corrupt or truncated gzip data")),
    # ---- malformed trees (the ptb_trees reader)
    Case("tree-unbalanced", trees("(3 (2 a) (2 b)"), (F + "trees.txt:2:15: unbalanced brackets",)),
    Case("tree-extra-close", trees("(3 (2 a) (2 b)))"), (F + "trees.txt:2:16: unbalanced",)),
    Case("tree-bad-label", trees("(7 (2 a) (2 b))"),
         (F + "trees.txt:2:2: expected an integer label 0-4, found '7'",)),
    Case("tree-missing-label", trees("((2 a) (2 b))"),
         (F + "trees.txt:2:2: expected an integer label 0-4 after '('",)),
    Case("tree-empty-leaf", trees("(3 (2 a) (2))"), (F + "trees.txt:2:", "empty leaf")),
    Case("tree-three-children", trees("(3 (2 a) (2 b) (2 c))"),
         (F + "trees.txt:2:1: expected a binary node with 2 children, found 3",)),
    Case("tree-text-after", trees("(3 (2 a) (2 b)) tail"),
         (F + "trees.txt:2:17: expected the end of the line after the tree",)),
    Case("tree-bare-word", trees("word"), (F + "trees.txt:2:1: expected '(' to open a tree",)),
    # ---- run directories
    Case("run-dir-missing", lambda w, run: ["predict", w / "nowhere", "-", "-o", w / "o.jsonl"],
         (F + "nowhere: no such run directory",)),
    Case("run-dir-not-a-run", lambda w, run: ["predict", w, "-", "-o", w / "o.jsonl"],
         ("{w}: not a run directory (no run.json)",)),
    Case("run-dir-is-a-file", lambda w, run: _touch(w / "f") + ["evaluate", w / "f"],
         (F + "f: not a directory",)),
    Case("run-json-corrupt", broken_run(_write("run.json", "{format_version: 1")),
         ("run.json: corrupt (expected JSON with format_version)",)),
    Case("run-future-version", broken_run(_future),
         ("made by textclf 9.0.0 (run format 99)", "upgrade textclf")),
    Case("run-labels-missing", broken_run(lambda run: (run / "labels.json").unlink()),
         ("incomplete run directory",)),
    Case("run-config-corrupt", broken_run(_write("config.yaml", "model: [\n")),
         ("config.yaml", "config must be valid YAML")),
    Case("model-missing", broken_run(lambda run: (run / "model.keras").unlink()),
         ("model.keras: missing",)),
    Case("model-truncated", broken_run(_truncate),
         ("model.keras: corrupt or truncated model file",)),
    Case("model-garbage", broken_run(_write("model.keras", bytes(range(256)) * 64)),
         ("model.keras: corrupt or truncated model file",)),
    Case("model-scrambled-inside", broken_run(_scramble),
         ("model.keras: corrupt or truncated model file",)),
    Case("model-empty", broken_run(_write("model.keras", b"")),
         ("model.keras: corrupt or truncated model file",)),
    Case("evaluate-corrupt-model", broken_run(_truncate, command="evaluate"),
         ("model.keras: corrupt or truncated model file",)),
    Case("resume-a-finished-run", lambda w, run: ["train", "--resume", run],
         ("is a finished run; nothing to resume",)),
    Case("resume-nothing", lambda w, run: ["train", "--resume", w / "never"],
         (F + "never: no interrupted run to resume",)),
    Case("resume-with-set", lambda w, run: ["train", "--resume", run, "--set", "a.b=1"],
         ("--set and --output do not apply",)),
    # ---- prediction and evaluation inputs and outputs
    Case("predict-input-missing", lambda w, run: ["predict", run, w / "nope.txt",
                                                  "-o", w / "out.jsonl"],
         (F + "nope.txt: no such file",)),
    Case("predict-input-invalid-utf8", predict_on("docs.txt", b"fine\nbad \xc3\x28 byte\n"),
         (F + "docs.txt:2: expected utf-8 text, found byte 0xc3",)),
    Case("predict-input-nul", predict_on("docs.txt", b"fine\nfine\n\x00\n"),
         (F + "docs.txt:3: expected text, found a NUL byte",)),
    Case("predict-jsonl-missing-key", predict_on("docs.jsonl", '{"body": "x"}\n'),
         (F + "docs.jsonl:1: expected key 'text' for the text",)),
    Case("predict-tsv-missing-column", predict_on("docs.tsv", "1\tok\nonly\n"),
         (F + "docs.tsv:2: has 1 column",)),
    Case("predict-bad-encoding-option", predict_on("docs.txt", "x\n", "--encoding", "utf-16"),
         ("data.encoding must be an ASCII-compatible encoding",)),
    Case("predict-output-exists",
         lambda w, run: _touch(w / "out.jsonl") + ["predict", run, "-", "-o", w / "out.jsonl"],
         (F + "out.jsonl exists; pass --force",)),
    Case("predict-output-dir-missing",
         lambda w, run: ["predict", run, "-", "-o", w / "no" / "out.jsonl"],
         ("directory " + F + "no does not exist",)),
    Case("predict-output-is-a-directory",
         lambda w, run: _touch(w / "d" / "x") + ["predict", run, "-", "-o", w / "d", "--force"],
         ("'--output'", F + "d' is a directory")),
    Case("evaluate-unseen-labels", evaluate_on("eval.tsv", "sport\tgoal\nweather\train\n"),
         (F + "eval.tsv: 1 label not seen in training (1 example): 'weather'",)),
    Case("evaluate-data-missing", evaluate_on("eval.tsv", None), (F + "eval.tsv: no such file",)),
    Case("evaluate-data-empty", evaluate_on("eval.tsv", ""), (F + "eval.tsv: no examples",)),
    Case("train-output-exists",
         lambda w, run: train_with(files={"train.tsv": None})(w, run)[:3] + ["-o", run.parent],
         ("exists; pass --force",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_clearly(case, tmp_path, run_dir):
    work = tmp_path / "w"
    work.mkdir()
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    argv = case.build(work, run)
    before = (snapshot(work), snapshot(run), snapshot(run_dir.parent))
    result = invoke(*argv, input="goal match\n")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output[-2000:]
    # One error line, the last; before it at most click's usage hint or progress lines.
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == [lines[-1]], result.output[-2000:]
    assert "Traceback" not in result.output
    assert len(errors[0]) < 600, "the message must not echo the bad input"
    for fragment in case.expect:
        assert fragment.replace("{w}", str(work)) in errors[0], errors[0]
    after = (snapshot(work), snapshot(run), snapshot(run_dir.parent))
    assert after == before, "nothing may be written, not even a partial or temporary file"


def test_at_least_thirty_kinds():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------
# Not bad input: CRLF, a byte-order mark, a 10 MB line.
# --------------------------------------------------------------------------

PLAIN = "sport\tgoal match team\ntech\tcomputer chip\nbusiness\tbank profit tax\nsport\tball\n"
VARIANTS = {"crlf": PLAIN.replace("\n", "\r\n").encode(),
            "bom": b"\xef\xbb\xbf" + PLAIN.encode(),
            "bom-crlf": b"\xef\xbb\xbf" + PLAIN.replace("\n", "\r\n").encode()}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_crlf_and_bom_evaluate_like_plain_files(run_dir, tmp_path, variant):
    (tmp_path / "plain.tsv").write_text(PLAIN, encoding="utf-8")
    (tmp_path / "odd.tsv").write_bytes(VARIANTS[variant])
    plain = invoke("evaluate", run_dir, tmp_path / "plain.tsv", "--format", "json")
    odd = invoke("evaluate", run_dir, tmp_path / "odd.tsv", "--format", "json")
    assert plain.exit_code == 0 and odd.exit_code == 0, odd.output
    assert json.loads(odd.output) == json.loads(plain.output)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_crlf_and_bom_predict_like_plain_files(run_dir, tmp_path, variant):
    texts = "".join(line.split("\t")[1] + "\n" for line in PLAIN.splitlines())
    raw = VARIANTS[variant].replace(PLAIN.replace("\n", "\r\n").encode(),
                                    texts.replace("\n", "\r\n").encode()).replace(
        PLAIN.encode(), texts.encode())
    (tmp_path / "plain.txt").write_text(texts, encoding="utf-8")
    (tmp_path / "odd.txt").write_bytes(raw)
    plain = invoke("predict", run_dir, tmp_path / "plain.txt")
    odd = invoke("predict", run_dir, tmp_path / "odd.txt")
    assert odd.exit_code == 0, odd.output
    assert odd.output == plain.output


def test_training_on_a_crlf_file_with_a_bom(tmp_path):
    write_topic_tsv(tmp_path / "plain.tsv", 90)
    text = (tmp_path / "plain.tsv").read_text(encoding="utf-8")
    (tmp_path / "train.tsv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    (tmp_path / "c.yaml").write_text(RECIPE.format(train="train.tsv", fmt="tsv"))
    result = invoke("train", "-c", tmp_path / "c.yaml", "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output
    labels = json.loads((tmp_path / "run" / "labels.json").read_text())["labels"]
    assert labels == ["business", "sport", "tech"]
    vocabulary = (tmp_path / "run" / "vocabulary.txt").read_text(encoding="utf-8")
    assert "\r" not in vocabulary and "\ufeff" not in vocabulary


def test_ten_megabyte_line_predicts(run_dir, tmp_path):
    """A 10 MB document is one document: predicted as its first max_length (30)
    tokens would be, not refused."""
    big = tmp_path / "big.txt"
    big.write_text("goal match " * (TEN_MB // 11) + "\nbank profit\n", encoding="utf-8")
    cut = tmp_path / "cut.txt"
    cut.write_text("goal match " * 15 + "\nbank profit\n", encoding="utf-8")
    result = invoke("predict", run_dir, big)
    assert result.exit_code == 0, result.output[-500:]
    assert result.output == invoke("predict", run_dir, cut).output
    assert [json.loads(line)["line"] for line in result.output.splitlines()] == [1, 2]


TREES = "(3 (2 a) (4 (2 good) (3 film)))\n(1 (2 a) (0 (1 bad) (2 film)))\n"


@pytest.mark.parametrize("variant", ["crlf", "bom"])
def test_tree_files_with_crlf_and_bom_read_like_plain_files(tmp_path, variant):
    from textclf.data import read_data

    raw = TREES.replace("\n", "\r\n").encode() if variant == "crlf" else \
        b"\xef\xbb\xbf" + TREES.encode()
    (tmp_path / "plain.txt").write_text(TREES, encoding="utf-8")
    (tmp_path / "odd.txt").write_bytes(raw)
    plain = read_data(tmp_path / "plain.txt", "ptb_trees")
    odd = read_data(tmp_path / "odd.txt", "ptb_trees")
    assert (odd.texts, odd.labels) == (plain.texts, plain.labels)
