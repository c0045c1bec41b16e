"""The command line end to end on a tiny dataset: train -> evaluate -> predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textclf.cli import cli


def invoke(runner, *args, input=None):
    return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny CNN run shared by the read-only tests of this module."""
    from conftest import train_tiny_run

    run, _ = train_tiny_run(tmp_path_factory.mktemp("run"), epochs=6)
    return run


def test_run_directory_is_complete(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"model.keras", "labels.json", "config.yaml", "metrics.json", "history.csv",
            "split.json", "run.json", "vocabulary.txt", "weights.npz"} <= names
    assert "checkpoint" not in names
    assert not list(trained_run.parent.glob(".*partial*")), "no partial directory left behind"
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8  # three separable topics
    history = (trained_run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch") and len(history) >= 2
    info = json.loads((trained_run / "run.json").read_text())
    # No GPU here: widths are not rounded, and bucketed batches keep XLA off.
    assert info["pad_to_multiple_of"] == 1 and info["jit_compile"] is False


def test_the_saved_model_holds_no_optimizer(trained_run):
    """model.keras is for prediction: weights without Adam's moments, which
    would triple its size, and no optimizer class to find when loading."""
    import zipfile

    import h5py

    with zipfile.ZipFile(trained_run / "model.keras") as archive:
        assert "optimizer" not in archive.read("config.json").decode()
        with archive.open("model.weights.h5") as raw, h5py.File(raw) as weights:
            stored = []
            weights.visit(stored.append)
    assert stored and not [name for name in stored if "optimizer" in name]


def test_evaluate_reuses_the_saved_split(runner, trained_run):
    result = invoke(runner, "evaluate", trained_run, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    saved = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert report == saved
    assert set(report) >= {"accuracy", "macro", "micro", "weighted", "per_class",
                           "confusion_matrix", "labels"}


def test_evaluate_text_output_to_file_is_atomic_and_not_overwritten(runner, trained_run,
                                                                    tmp_path):
    out = tmp_path / "report.txt"
    assert invoke(runner, "evaluate", trained_run, "-o", out).exit_code == 0
    assert "confusion matrix" in out.read_text()
    result = runner.invoke(cli, ["evaluate", str(trained_run), "-o", str(out)])
    assert result.exit_code == 2 and "--force" in result.output


def test_predict_answers_every_line_in_order(runner, trained_run, tmp_path):
    lines = ["goal match team win", "", "stock market profit bank", "computer chip software"]
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke(runner, "predict", trained_run, source, "--batch-size", 2, "--top-k", 2)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4]
    assert [records[i]["label"] for i in (0, 2, 3)] == ["sport", "business", "tech"]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0][0] == r["label"] for r in records)
    # stdin, TSV output, and batch size never change an answer.
    piped = invoke(runner, "predict", trained_run, "-", "--format", "tsv", "--batch-size", 3,
                   input="\n".join(lines) + "\n")
    rows = [row.split("\t") for row in piped.output.splitlines()[1:]]
    assert [row[1] for row in rows] == [r["label"] for r in records]
    np.testing.assert_allclose([float(row[2]) for row in rows],
                               [r["probability"] for r in records], atol=2e-6)


def test_predict_numpy_engine_matches_keras(runner, trained_run, tmp_path):
    source = tmp_path / "docs.txt"
    source.write_text("goal match\n\nbank profit tax\nrobot app data\n", encoding="utf-8")
    keras_out = invoke(runner, "predict", trained_run, source).output.splitlines()
    numpy_out = invoke(runner, "predict", trained_run, source, "--engine", "numpy")
    for a, b in zip(keras_out, numpy_out.output.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["label"] == b["label"]
        assert abs(a["probability"] - b["probability"]) < 1e-5


def test_train_refuses_to_overwrite_without_force(runner, trained_run, tiny_config):
    result = runner.invoke(cli, ["train", "-c", str(tiny_config), "-o", str(trained_run)])
    assert result.exit_code == 2
    assert f"{trained_run} exists; pass --force" in result.output


@pytest.mark.parametrize("args, code, message", [
    (["evaluate", "nowhere"], 2, "nowhere: no such run directory"),
    (["train"], 2, "give either -c CONFIG or --resume RUN_DIR"),
    (["train", "-c", "absent.yaml"], 2, "config must be an existing YAML file"),
    (["predict", ".", "docs.txt"], 2, "not a run directory"),
])
def test_errors_are_one_line_with_exit_codes(runner, args, code, message):
    result = runner.invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_config_show_prints_every_default(runner, tiny_config):
    result = invoke(runner, "config", "show", tiny_config, "--set", "train.epochs=2")
    assert result.exit_code == 0
    assert "epochs: 2" in result.output and "bucketing: true" in result.output
    assert invoke(runner, "config", "validate", tiny_config).exit_code == 0


def test_help_does_not_import_tensorflow():
    code = ("import sys; from textclf.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "for name in ('train', 'predict', 'evaluate'):\n"
            "    try:\n        cli([name, '--help'])\n    except SystemExit:\n        pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1])


def test_interrupted_training_resumes_to_the_same_result(runner, tmp_path, tiny_config,
                                                         monkeypatch):
    """Stop after epoch 2 (as Ctrl-C would), resume, and match an uninterrupted run."""
    from conftest import stop_after_epoch

    overrides = ["--set", "train.deterministic=true", "--set", "train.patience=null"]
    whole = invoke(runner, "train", "-c", tiny_config, "-o", tmp_path / "whole", *overrides)
    assert whole.exit_code == 0, whole.output

    undo = stop_after_epoch(monkeypatch, 1)
    target = tmp_path / "resumed"
    stopped = runner.invoke(cli, ["train", "-c", str(tiny_config), "-o", str(target), *overrides])
    assert stopped.exit_code == 1
    assert f"textclf train --resume {target}" in stopped.output
    assert not target.exists(), "an unfinished run must not look like a run"
    undo()

    resumed = invoke(runner, "train", "--resume", target)
    assert resumed.exit_code == 0, resumed.output
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((target / "metrics.json").read_text())
    assert a == b
    assert (target / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()


def test_check_agrees_and_catches_a_tampered_weight(runner, trained_run, tmp_path):
    import shutil

    result = invoke(runner, "check", trained_run, "--n", 16, "--gradients")
    assert result.exit_code == 0, result.output
    assert "identical predicted labels: 16/16" in result.output
    tampered = tmp_path / "tampered"
    shutil.copytree(trained_run, tampered)
    with np.load(tampered / "weights.npz", allow_pickle=False) as stored:
        arrays = dict(stored)
    key = next(k for k in arrays if k.endswith("output/kernel"))
    arrays[key][:, 0] += 0.05  # one class's column: a shift shared by all would cancel
    np.savez(tampered / "weights.npz", **arrays)
    result = runner.invoke(cli, ["check", str(tampered), "--n", "16"])
    assert result.exit_code == 1
    assert "disagree beyond tolerance" in result.output


def test_tokens_with_line_breaking_characters_do_not_break_the_saved_model(runner, tmp_path):
    """Keras reads a vocabulary back with splitlines(): U+0085, U+2028 must stay out."""
    lines = []
    for i in range(60):
        label = "a" if i % 2 else "b"
        word = "alpha" if label == "a" else "beta"
        lines.append(f"{label}\t{word} x\u0085y \u2028 z\x0cw {word}\n")
    (tmp_path / "train.tsv").write_text("".join(lines), encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  train: train.tsv\n  format: tsv\n"
                      "model:\n  type: cnn\n  embedding_dim: 4\n  filters: 2\n"
                      "train:\n  epochs: 1\n  verbose: quiet\n", encoding="utf-8")
    assert invoke(runner, "train", "-c", config, "-o", tmp_path / "run").exit_code == 0
    result = invoke(runner, "predict", tmp_path / "run", "-", input="alpha x\u0085y\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["label"] in ("a", "b")


def test_evaluate_refuses_to_rebuild_a_split_from_changed_data(runner, tmp_path):
    from conftest import train_tiny_run, write_topic_tsv

    run, _ = train_tiny_run(tmp_path, epochs=1)
    write_topic_tsv(tmp_path / "train.tsv", 240, seed=99)  # the source changes under the run
    result = runner.invoke(cli, ["evaluate", str(run)])
    assert result.exit_code == 2
    assert "train.tsv: expected the training data the run's test split was carved from" in \
        result.output
