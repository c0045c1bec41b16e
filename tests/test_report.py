"""``textclf report``: PNG learning curves and confusion matrix, a Markdown summary;
``train.tensorboard`` event logs."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from textclf.cli import cli

pytest.importorskip("matplotlib")
HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny CNN run, with TensorBoard logs when the package is installed."""
    from conftest import train_tiny_run

    run, _ = train_tiny_run(tmp_path_factory.mktemp("report"), epochs=3,
                            extra_train="  monitor: val_accuracy\n"
                                        f"  tensorboard: {str(HAVE_TENSORBOARD).lower()}\n")
    return run


def read_png(path: Path) -> np.ndarray:
    """(H, W, 3) floats in [0, 1]."""
    import matplotlib.image

    return matplotlib.image.imread(path)[..., :3]


def drawn_share(image: np.ndarray) -> float:
    """Share of pixels that are not the background (the corner pixel's colour)."""
    return float(np.mean(np.any(np.abs(image - image[0, 0]) > 0.02, axis=-1)))


def test_blank_images_are_detected(tmp_path):
    """The non-blank check below can fail: an empty figure is blank by it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3), dpi=100)
    FigureCanvasAgg(figure)
    figure.savefig(tmp_path / "blank.png")
    assert drawn_share(read_png(tmp_path / "blank.png")) == 0.0


def test_report_writes_figures_and_a_markdown_summary(runner, trained_run, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(cli, ["report", str(trained_run), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert summary["epochs"] == 3 and summary["monitor"] == "val_accuracy"
    assert summary["metrics"]["test"]["accuracy"] == metrics["test"]["accuracy"]

    curves = read_png(Path(summary["figures"]["learning_curves"]))
    assert curves.shape[:2] == (400, 1000)  # 10 x 4 inches at 100 dpi
    confusion = read_png(Path(summary["figures"]["confusion_matrix"]))
    assert confusion.shape[0] >= 400 and confusion.shape[1] >= 500
    for image in (curves, confusion):
        assert 0.02 < drawn_share(image) < 0.9, "a figure, not a blank or solid image"
    # The heatmap's diagonal cells (a near-perfect classifier) are dark blue.
    assert np.mean(np.all(confusion < [0.2, 0.3, 0.6], axis=-1)) > 0.05

    markdown = (out / "report.md").read_text(encoding="utf-8")
    for expected in ("# Run report: run", "## Data", "| train | 192 |", "## Metrics",
                     f"| test | {metrics['test']['accuracy']:.4f} |", "### Per class (test)",
                     "| sport |", "![learning curves](learning_curves.png)",
                     "![confusion matrix](confusion_matrix.png)", "best by `val_accuracy`"):
        assert expected in markdown, expected
    config_block = markdown.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(config_block)["train"]["epochs"] == 3


def test_report_defaults_to_run_dir_report_and_valid_split(runner, trained_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    result = runner.invoke(cli, ["report", str(run), "--split", "valid"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run / "report" / "report.md")
    assert "## Confusion matrix (valid)" in (run / "report" / "report.md").read_text()


def test_report_of_an_incomplete_run_is_a_one_line_error(runner, trained_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    (run / "history.csv").unlink()
    result = runner.invoke(cli, ["report", str(run)])
    assert result.exit_code == 2
    assert f"{run / 'history.csv'}: missing" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(not HAVE_TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_logs_hold_per_epoch_scalars(trained_run):
    import tensorflow as tf

    for folder in ("train", "validation"):
        events = sorted((trained_run / "logs" / folder).glob("events.out.tfevents.*"))
        assert events, folder
        tags = {value.tag for path in events
                for event in tf.compat.v1.train.summary_iterator(str(path))
                for value in event.summary.value}
        assert {"epoch_loss", "epoch_accuracy"} <= tags, (folder, tags)


def test_tensorboard_without_the_package_is_a_usage_error(runner, tiny_config, tmp_path,
                                                          monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = runner.invoke(cli, ["train", "-c", str(tiny_config), "-o", str(tmp_path / "run"),
                                 "--set", "train.tensorboard=true"])
    assert result.exit_code == 2
    assert "train.tensorboard needs the tensorboard package" in result.output
    assert not list(tmp_path.glob(".*partial")) and not (tmp_path / "run").exists()
