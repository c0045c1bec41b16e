"""Determinism: the same recipe and seed give the same run, and prediction does not
depend on how many processes share a run directory.

With ``train.deterministic: true`` two trainings of one config give weights equal
bit for bit, hence equal metrics and predictions. Without it nothing is promised:
see docs/GUARANTEES.md for what was seen to vary and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textclf.cli import cli

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
       "CUDA_VISIBLE_DEVICES": ""}
DOCS = ["goal match team win", "", "stock market profit bank", "computer chip software",
        "the a of", "ball phone bank tax", "robot data code " * 40]


def invoke(*args, **kwargs):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, [str(a) for a in args], **kwargs)
    assert result.exit_code == 0, result.output
    return result


def weights(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "weights.npz") as stored:
        return {name: stored[name] for name in stored.files}


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "docs.txt"
    path.write_text("\n".join(DOCS * 50) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory) -> list[Path]:
    """The same recipe trained twice with train.deterministic and one seed."""
    from conftest import write_topic_tsv

    folder = tmp_path_factory.mktemp("twins")
    write_topic_tsv(folder / "train.tsv", 240)
    (folder / "tiny.yaml").write_text(
        "data:\n  train: train.tsv\n  format: tsv\n"
        "text:\n  max_tokens: 100\n  max_length: 30\n"
        "model:\n  type: cnn\n  embedding_dim: 16\n  filters: 8\n  kernel_sizes: [2, 3]\n"
        "train:\n  epochs: 4\n  batch_size: 16\n  learning_rate: 0.01\n  seed: 7\n"
        "  deterministic: true\n  verbose: quiet\n", encoding="utf-8")
    for name in ("first", "second"):
        invoke("train", "-c", folder / "tiny.yaml", "-o", folder / name)
    return [folder / "first", folder / "second"]


def test_deterministic_training_repeats_exactly(twin_runs, docs):
    first, second = (weights(run) for run in twin_runs)
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in twin_runs]
    assert metrics[0] == metrics[1]
    history = [(run / "history.csv").read_text() for run in twin_runs]
    assert history[0] == history[1]
    predictions = [invoke("predict", run, docs).output for run in twin_runs]
    assert predictions[0] == predictions[1]
    assert len(predictions[0].splitlines()) == len(DOCS) * 50


def test_steps_per_execution_changes_dispatch_not_results(twin_runs, tmp_path):
    """Several steps per tf.function call run the same steps on the same
    batches in the same order: the weights equal the one-step-per-call run's
    bit for bit (its 12 steps per epoch are calls of 5, 5 and 2)."""
    folder = twin_runs[0].parent
    invoke("train", "-c", folder / "tiny.yaml", "-o", tmp_path / "run",
           "--set", "train.steps_per_execution=5")
    one, five = weights(twin_runs[0]), weights(tmp_path / "run")
    assert sorted(one) == sorted(five)
    for name in one:
        np.testing.assert_array_equal(one[name], five[name], err_msg=name)
    resolved = (tmp_path / "run" / "config.yaml").read_text()
    assert "steps_per_execution: 5" in resolved


@pytest.mark.slow
def test_two_predict_processes_at_once_answer_as_one(twin_runs, tmp_path, docs):
    """Two ``textclf predict`` processes on one run directory, started together,
    write what a single in-process prediction writes, byte for byte."""
    run = twin_runs[0]
    alone = invoke("predict", run, docs).output
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    children = [subprocess.Popen([sys.executable, "-m", "textclf.cli", "predict", str(run),
                                  str(docs), "-o", str(tmp_path / f"out{i}.jsonl")],
                                 env=ENV, cwd=REPO, stderr=subprocess.PIPE, text=True)
                for i in (1, 2)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    for i in (1, 2):
        assert (tmp_path / f"out{i}.jsonl").read_text(encoding="utf-8") == alone
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before, "prediction writes nothing"
