"""``textclf export`` (SavedModel for TF Serving) and everyday manners of the CLI:
``--version``, shell completion, several ``predict`` inputs, JSON output for jq."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textclf import __version__
from textclf.cli import cli

TEXTS = ["goal match team win", "", "stock market profit bank", "computer chip software",
         "ünïcödé ☃ robot data", "the of and"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN run, and what ``train --json`` printed for it."""
    from conftest import train_tiny_run

    run, result = train_tiny_run(tmp_path_factory.mktemp("export"), epochs=3, args=["--json"])
    return run, result.stdout


def predictions(runner, run: Path, path: Path) -> list[dict]:
    result = runner.invoke(cli, ["predict", str(run), str(path), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


SERVE = r"""
import json, sys
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = served(text=tf.constant(json.loads(sys.argv[2])))
assert not any(m.startswith("textclf") for m in sys.modules), "textclf was imported"
print(json.dumps({"label": [x.decode() for x in out["label"].numpy()],
                  "label_id": out["label_id"].numpy().tolist(),
                  "probabilities": out["probabilities"].numpy().tolist()}))
"""


def test_saved_model_signature_answers_like_predict(runner, trained, tmp_path):
    run, _ = trained
    out = tmp_path / "served" / "1"
    result = runner.invoke(cli, ["export", str(run), str(out), "--format", "saved_model",
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert summary["signature"] == "serving_default" and summary["labels"] == labels
    assert (out / "saved_model.pb").exists() and not list(out.parent.glob(".*export*"))

    # A server has the SavedModel and TensorFlow, not textclf: load it in a process
    # that never imports textclf.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    served = subprocess.run([sys.executable, "-c", SERVE, str(out), json.dumps(TEXTS)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert served.returncode == 0, served.stderr[-2000:]
    answers = json.loads(served.stdout)

    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    expected = predictions(runner, run, docs)
    assert answers["label"] == [r["label"] for r in expected]
    assert answers["label_id"] == [labels.index(r["label"]) for r in expected]
    for row, record in zip(answers["probabilities"], expected, strict=True):
        by_label = dict(record["top_k"])  # top-k 3 = every label
        np.testing.assert_allclose(row, [by_label[label] for label in labels], atol=2e-6)


def test_an_exported_lstm_runs_without_textclfs_native_ops(runner, tmp_path):
    """A FusedLSTM run trains on textclf's native ops where they are built;
    its SavedModel holds only TensorFlow's own ops (the graph loop), and a
    process without textclf serves it with the run's own answers."""
    from conftest import train_tiny_lstm_run

    run = train_tiny_lstm_run(tmp_path)
    out = tmp_path / "served"
    result = runner.invoke(cli, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    assert b"TextclfLstm" not in (out / "saved_model.pb").read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    served = subprocess.run([sys.executable, "-c", SERVE, str(out), json.dumps(TEXTS)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert served.returncode == 0, served.stderr[-2000:]
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    expected = predictions(runner, run, docs)
    assert json.loads(served.stdout)["label"] == [r["label"] for r in expected]


def test_export_refuses_an_existing_folder_unless_forced(runner, trained, tmp_path):
    run, _ = trained
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    refused = runner.invoke(cli, ["export", str(run), str(out)])
    assert refused.exit_code == 2 and f"{out} exists; pass --force" in refused.output
    assert (out / "keep.txt").exists()
    forced = runner.invoke(cli, ["export", str(run), str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.strip() == str(out)
    assert (out / "saved_model.pb").exists() and not (out / "keep.txt").exists()


# --------------------------------------------------------------------------
# Everyday manners.
# --------------------------------------------------------------------------


def test_version(runner):
    result = runner.invoke(cli, ["--version"], prog_name="textclf")
    assert result.exit_code == 0
    assert result.output == f"textclf, version {__version__}\n"


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F"),
                                           ("zsh", "#compdef textclf"),
                                           ("fish", "complete --no-files --command textclf")])
def test_shell_completion_scripts(runner, shell, marker):
    """click's mechanism: eval "$(_TEXTCLF_COMPLETE=bash_source textclf)"."""
    result = runner.invoke(cli, [], prog_name="textclf",
                           env={"_TEXTCLF_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0 and marker in result.output


@pytest.mark.parametrize("words, expected", [
    ("textclf ex", {"export"}),
    ("textclf t", {"train", "tune"}),
    ("textclf predict --form", {"--format"}),
])
def test_shell_completion_candidates(runner, words, expected):
    result = runner.invoke(cli, [], prog_name="textclf", env={
        "_TEXTCLF_COMPLETE": "bash_complete", "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1)})
    assert result.exit_code == 0
    assert {line.split(",", 1)[1] for line in result.output.splitlines()} == expected


def test_predict_reads_several_inputs_and_names_each(runner, trained, tmp_path):
    run, _ = trained
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("goal match\nbank profit tax\n", encoding="utf-8")
    second.write_text("robot app data\n", encoding="utf-8")
    records = [json.loads(line) for line in runner.invoke(
        cli, ["predict", str(run), str(first), str(second)]).stdout.splitlines()]
    assert [(r["input"], r["line"]) for r in records] == [
        (str(first), 1), (str(first), 2), (str(second), 1)]
    assert [r["label"] for r in records] == ["sport", "business", "tech"]
    tsv = runner.invoke(cli, ["predict", str(run), str(first), str(second), "--format", "tsv"])
    rows = [line.split("\t") for line in tsv.stdout.splitlines()]
    assert rows[0] == ["input", "line", "label", "probability", "top_k"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        (str(first), "1", "sport"), (str(first), "2", "business"), (str(second), "1", "tech")]


def jq(text: str, *args: str) -> str:
    """``jq -e ARGS`` on ``text``; without jq on the machine, check it is JSON (lines)."""
    if shutil.which("jq") is None:
        try:
            json.loads(text)
        except ValueError:
            for line in text.splitlines():
                json.loads(line)
        return ""
    done = subprocess.run(["jq", "-e", *args], input=text, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, (args, done.stderr, text[:500])
    return done.stdout.strip()


def test_every_command_prints_json_for_jq(runner, trained, tmp_path):
    """train --json, evaluate --format json, predict (JSON lines), export --json,
    report --json, config show --format json, config validate --json."""
    run, train_stdout = trained
    config = run / "config.yaml"
    docs = tmp_path / "docs.txt"
    docs.write_text("goal match\nbank tax\n", encoding="utf-8")
    outputs = {
        "train": train_stdout,
        "evaluate": runner.invoke(cli, ["evaluate", str(run), "--format", "json"]).stdout,
        "predict": runner.invoke(cli, ["predict", str(run), str(docs)]).stdout,
        "export": runner.invoke(cli, ["export", str(run), str(tmp_path / "m"), "--json"]).stdout,
        "report": runner.invoke(cli, ["report", str(run), "-o", str(tmp_path / "r"),
                                      "--json"]).stdout,
        "config show": runner.invoke(cli, ["config", "show", str(config), "--format",
                                           "json"]).stdout,
        "config validate": runner.invoke(cli, ["config", "validate", str(config),
                                               "--json"]).stdout,
    }
    programs = {"train": ".metrics.test.accuracy", "evaluate": ".accuracy",
                "predict": ".label", "export": ".signature", "report": ".figures.learning_curves",
                "config show": ".train.epochs", "config validate": ".ok"}
    for command, text in outputs.items():
        assert text.strip(), f"{command} printed nothing"
        jq(text, programs[command])
    summary = json.loads(train_stdout)
    assert summary["run_dir"] == str(run) and summary["examples"]["train"] == 192
    assert summary["metrics"]["test"]["accuracy"] == json.loads(
        (run / "metrics.json").read_text())["test"]["accuracy"]
    if shutil.which("jq"):
        assert jq(outputs["predict"], "-c", ".label") == '"sport"\n"business"'
