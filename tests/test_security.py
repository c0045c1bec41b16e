"""A run directory or config received from someone else runs no code of theirs.

* Models load with Keras ``safe_mode`` on: a ``.keras`` file holding a ``Lambda``
  layer (Python bytecode) is refused with a clear message, and its code never runs.
* No pickle anywhere: no pickle-family import in the package or scripts, every
  ``np.load`` passes ``allow_pickle=False``, and a pickled object planted in a
  run's ``weights.npz`` is never unpickled.
* YAML only through SafeLoader subclasses: a ``!!python/...`` tag is refused.
* Output paths come from the command line only, never from file contents.

Each "never runs" test plants code that would create a sentinel file, and first
shows that the code does run when loaded unsafely, so the test is not vacuous.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from textclf.cli import cli

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "textclf").rglob("*.py"), *(REPO / "scripts").rglob("*.py")])


def invoke(*args):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args])


def fake_run(folder: Path, labels=("neg", "pos"), data: str = "train.tsv") -> Path:
    """A run directory's metadata, valid in every respect; the caller adds the model."""
    from textclf import __version__
    from textclf.artifact import FORMAT_VERSION
    from textclf.config import config_from_dict, dump_config

    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"format_version": FORMAT_VERSION,
                                                 "textclf_version": __version__}))
    (folder / "labels.json").write_text(json.dumps({"labels": list(labels)}))
    config = config_from_dict({"data": {"train": data, "valid": data, "format": "tsv"}})
    (folder / "config.yaml").write_text(dump_config(config))
    return folder


def lambda_model(sentinel: Path):
    """Raw strings (B,) -> (B, 2), with a Lambda that creates ``sentinel`` when called."""
    import keras

    # A lambda (not a def) is saved as Python bytecode, the path a constant inside it
    # (Keras cannot reload lambda defaults). It stands for any code at all.
    plant = eval(f"lambda x: (open({str(sentinel)!r}, 'w').close(), x)[1]")

    text = keras.Input(shape=(), dtype="string")
    vectorizer = keras.layers.TextVectorization(max_tokens=10, output_sequence_length=4)
    vectorizer.adapt(["good film", "bad film"])
    x = keras.layers.Embedding(10, 2)(vectorizer(text))
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Lambda(plant)(x)
    return keras.Model(text, keras.layers.Dense(2, activation="softmax")(x))


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_lambda_layer_model_is_refused_and_never_runs(tmp_path, command):
    import keras

    sentinel = tmp_path / "code-ran"
    run = fake_run(tmp_path / "run")
    lambda_model(sentinel).save(run / "model.keras")
    sentinel.unlink()  # Keras ran the Lambda once to infer its output shape
    docs = tmp_path / "docs.tsv"
    docs.write_text("pos\tgood film\n", encoding="utf-8")
    args = ["predict", run, docs, "--input-format", "lines"] if command == "predict" \
        else ["evaluate", run, docs]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"Error: {run / 'model.keras'}: refused: the model contains code (a Lambda layer); "
        "textclf loads models with Keras safe_mode on")
    assert not sentinel.exists(), "the planted code ran"

    # Not vacuous: loaded unsafely, the same file does run the planted code.
    unsafe = keras.models.load_model(run / "model.keras", safe_mode=False)
    unsafe(np.array(["good film"]))
    assert sentinel.exists()


def test_lambda_layer_in_a_checkpoint_is_refused_on_resume(tmp_path):
    """``train --resume`` reads the checkpoint of a partial run: safe_mode there too."""
    sentinel = tmp_path / "code-ran"
    (tmp_path / "train.tsv").write_text("neg\tbad film\npos\tgood film\n" * 10)
    partial = fake_run(tmp_path / ".run.partial", data=str(tmp_path / "train.tsv"))
    (partial / "run.json").unlink()
    (partial / "vocabulary.txt").write_text("\n[UNK]\nfilm\ngood\nbad\n")
    (partial / "checkpoint").mkdir()
    lambda_model(sentinel).save(partial / "checkpoint" / "state.keras")
    sentinel.unlink()  # Keras ran the Lambda once to infer its output shape
    (partial / "checkpoint" / "progress.json").write_text(json.dumps(
        {"epoch": 0, "wait": 0, "best_epoch": 0, "best": 1.0, "stopped": False}))
    result = invoke("train", "--resume", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "safe_mode" in result.output and "Traceback" not in result.output, result.output
    assert not sentinel.exists(), "the planted code ran"


def test_safe_mode_alone_refuses_the_lambda(tmp_path, monkeypatch):
    """The clear message comes from a look at the archive's config; with that look
    switched off, Keras' safe_mode still refuses the file and the code never runs."""
    from textclf import artifact

    sentinel = tmp_path / "code-ran"
    run = fake_run(tmp_path / "run")
    lambda_model(sentinel).save(run / "model.keras")
    sentinel.unlink()
    monkeypatch.setattr(artifact, "refuse_code", lambda path: None)
    (tmp_path / "docs.txt").write_text("good film\n")
    result = invoke("predict", run, tmp_path / "docs.txt")
    assert result.exit_code == 2, result.output
    assert f"{run / 'model.keras'}:" in result.output and "Traceback" not in result.output
    assert not sentinel.exists(), "the planted code ran"


def test_every_keras_load_uses_safe_mode():
    calls = 0
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("load_model") \
                    and ast.unparse(node.func).startswith("keras."):
                calls += 1
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                # Keras 3's default is safe_mode=True; the package spells it out.
                required = "textclf" in path.parts
                assert flags.get("safe_mode", None if required else "True") == "True", \
                    f"{path.relative_to(REPO)}:{node.lineno}: load_model without safe_mode=True"
    assert calls >= 2  # the run's model, and the training checkpoint


class _Plant:
    """Unpickling this creates a file: what a malicious pickle would do, harmlessly."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_weights_are_never_unpickled(tmp_path):
    sentinel = tmp_path / "code-ran"
    run = fake_run(tmp_path / "run")
    planted = np.empty(1, dtype=object)
    planted[0] = _Plant(str(sentinel))
    np.savez(run / "weights.npz", w0=planted)
    (tmp_path / "docs.txt").write_text("good film\n")
    result = invoke("predict", run, tmp_path / "docs.txt", "--engine", "numpy")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert not sentinel.exists(), "the planted pickle was loaded"

    # Not vacuous: with pickle allowed, loading the array runs the planted code.
    with np.load(run / "weights.npz", allow_pickle=True) as data:
        data["w0"]
    assert sentinel.exists()


def test_no_pickle_in_the_code():
    banned = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|cloudpickle|joblib|"
                        r"shelve|marshal)\b", re.M)
    offenders = [str(p.relative_to(REPO)) for p in SOURCES if banned.search(p.read_text())]
    assert offenders == []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("allow_pickle") == "False", \
                    f"{path.relative_to(REPO)}:{node.lineno}: np.load without allow_pickle=False"
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert ast.unparse(node.value) == "False", f"{path}:{node.value.lineno}"


def test_yaml_only_through_safe_loaders():
    import yaml

    from textclf import config

    assert issubclass(config._StrictLoader, yaml.SafeLoader)
    unsafe = re.compile(r"yaml\.(unsafe_load|full_load|load_all)\b|"
                        r"Loader\s*=\s*yaml\.(Loader|FullLoader|UnsafeLoader)\b")
    for path in SOURCES:
        text = path.read_text()
        assert not unsafe.search(text), path
        for match in re.finditer(r"yaml\.load\((.*)", text):
            assert "Loader=_StrictLoader" in match.group(1) or "SafeLoader" in match.group(1), \
                f"{path.relative_to(REPO)}: {match.group(0)}"


def test_python_tag_in_a_received_run_config_is_refused(tmp_path):
    sentinel = tmp_path / "code-ran"
    run = fake_run(tmp_path / "run")
    (run / "config.yaml").write_text(
        f"data: !!python/object/apply:os.system ['touch {sentinel}']\n")
    result = invoke("evaluate", run)
    assert result.exit_code == 2
    assert "could not determine a constructor for the tag" in result.output
    assert not sentinel.exists()


def test_output_paths_never_come_from_file_contents(tmp_path):
    """Labels and texts shaped like paths are data: after train, evaluate and predict
    the only files are the data, the recipe, the run and the two named outputs."""
    inner = tmp_path / "inner"
    inner.mkdir()
    escape = tmp_path / "escaped"
    labels = ["../escaped", str(escape), "a/b/../../../escaped"]
    lines = [f"{labels[i % 3]}\t{['goal match', 'chip code', 'bank tax'][i % 3]} "
             f"../escaped {escape} {i}\n" for i in range(90)]
    (inner / "train.tsv").write_text("".join(lines), encoding="utf-8")
    (inner / "c.yaml").write_text(
        "data:\n  train: train.tsv\n  format: tsv\ntext:\n  max_tokens: 50\n  max_length: 10\n"
        "model:\n  embedding_dim: 4\n  filters: 2\n  kernel_sizes: [2]\n"
        "train:\n  epochs: 1\n  verbose: quiet\n", encoding="utf-8")
    assert invoke("train", "-c", inner / "c.yaml", "-o", inner / "run").exit_code == 0
    assert invoke("evaluate", inner / "run", "-o", inner / "report.txt").exit_code == 0
    (inner / "docs.txt").write_text(f"../escaped\n{escape}\n", encoding="utf-8")
    assert invoke("predict", inner / "run", inner / "docs.txt", "-o",
                  inner / "pred.jsonl").exit_code == 0

    assert json.loads((inner / "run" / "labels.json").read_text())["labels"] == sorted(labels)
    found = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    run_files = {"config.yaml", "history.csv", "labels.json", "metrics.json", "model.keras",
                 "run.json", "split.json", "vocabulary.txt", "weights.npz"}
    assert found == sorted({"inner", "inner/c.yaml", "inner/train.tsv", "inner/docs.txt",
                            "inner/report.txt", "inner/pred.jsonl", "inner/run"}
                           | {f"inner/run/{name}" for name in run_files})
    assert not escape.exists()
