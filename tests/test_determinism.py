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


def test_deterministic_training_repeats_exactly(tmp_path, tiny_config, docs):
    runs = []
    for name in ("first", "second"):
        invoke("train", "-c", tiny_config, "-o", tmp_path / name,
               "--set", "train.deterministic=true", "--set", "train.seed=7")
        runs.append(tmp_path / name)
    first, second = (weights(run) for run in runs)
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert metrics[0] == metrics[1]
    history = [(run / "history.csv").read_text() for run in runs]
    assert history[0] == history[1]
    predictions = [invoke("predict", run, docs).output for run in runs]
    assert predictions[0] == predictions[1]
    assert len(predictions[0].splitlines()) == len(DOCS) * 50


def test_another_seed_gives_another_run(tmp_path, tiny_config):
    """The equality above is not vacuous: the seed does reach the weights."""
    for seed in (7, 8):
        invoke("train", "-c", tiny_config, "-o", tmp_path / str(seed),
               "--set", "train.deterministic=true", "--set", f"train.seed={seed}",
               "--set", "train.epochs=1")
    a, b = weights(tmp_path / "7"), weights(tmp_path / "8")
    assert any(not np.array_equal(a[name], b[name]) for name in a)


@pytest.mark.slow
def test_two_predict_processes_at_once_answer_as_one(tmp_path, tiny_config, docs):
    """Two ``textclf predict`` processes on one run directory, started together,
    write what a single in-process prediction writes, byte for byte."""
    run = tmp_path / "run"
    invoke("train", "-c", tiny_config, "-o", run, "--set", "train.epochs=2")
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
