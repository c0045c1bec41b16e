"""``textclf report``: figures and a Markdown summary of a finished run.

Writes into ``RUN_DIR/report`` (or ``--output``)::

    learning_curves.png   loss and the monitored metric per epoch, train vs validation
    confusion_matrix.png  counts on the chosen split, coloured by share of the true class
    report.md             config, data sizes, metrics, per-class scores, the two figures

Figures are drawn with Matplotlib's object API on an Agg canvas: no pyplot, no
display, no global state, so it runs on a headless server. TensorFlow is not
needed.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .artifact import Run, write_text
from .errors import RunDirError, UsageError

CURVES_FILE = "learning_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
MARKDOWN_FILE = "report.md"
DPI = 100


# --------------------------------------------------------------------------
# Reading the run.
# --------------------------------------------------------------------------


def read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` (Keras' CSVLogger) as column -> per-epoch values, epochs 1-based."""
    if not path.exists():
        raise RunDirError(f"{path}: missing (the run directory is incomplete)")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise RunDirError(f"{path}: no epochs recorded")
    columns: dict[str, list[float]] = {name: [] for name in rows[0]}
    for row in rows:
        for name, value in row.items():
            columns[name].append(_float(value))
    columns["epoch"] = [e + 1 for e in columns["epoch"]]
    return columns


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def monitored_metric(monitor: str, history: dict) -> str:
    """The metric of the second panel: the monitored one, or accuracy when loss is monitored."""
    name = monitor[len("val_"):] if monitor.startswith("val_") else monitor
    if name == "loss" or name not in history:
        return "accuracy"
    return name


def best_epoch(history: dict, monitor: str) -> int | None:
    """1-based epoch with the best value of ``monitor`` (min for losses, else max)."""
    values = np.asarray(history.get(monitor, []), dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return None
    index = np.nanargmin(values) if monitor.endswith("loss") else np.nanargmax(values)
    return int(history["epoch"][int(index)])


# --------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("textclf report needs matplotlib: pip install "
                         "'keras-textclf[plots]'") from None

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_learning_curves(history: dict, monitor: str, path: Path) -> None:
    """Two panels, loss and the monitored metric, train vs validation, per epoch."""
    figure = _figure(10, 4)
    epochs = history["epoch"]
    best = best_epoch(history, monitor)
    for axes, name in zip(figure.subplots(1, 2), ("loss", monitored_metric(monitor, history))):
        for key, label, style in ((name, "train", "o-"), (f"val_{name}", "validation", "s--")):
            if key in history:
                axes.plot(epochs, history[key], style, label=label, markersize=4)
        if best is not None:
            axes.axvline(best, color="grey", linestyle=":", label=f"best epoch ({monitor})")
        axes.set_xlabel("epoch")
        axes.set_ylabel(name.replace("_", " "))
        axes.set_title(name.replace("_", " "))
        axes.grid(alpha=0.3)
        axes.legend()
        axes.xaxis.get_major_locator().set_params(integer=True)
    _save(figure, path)


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], title: str,
                          path: Path) -> None:
    """Heatmap of counts (rows true, columns predicted), coloured by row share."""
    counts = np.asarray(matrix, dtype=np.int64)  # (C, C)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    side = min(max(4.0, 0.6 * n + 2.5), 30.0)
    figure = _figure(side + 1.0, side)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class")
    axes.set_xticks(range(n), labels=labels, rotation=45, ha="right")
    axes.set_yticks(range(n), labels=labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if n <= 30:  # beyond that the numbers are unreadable anyway
        for (row, col), count in np.ndenumerate(counts):
            axes.text(col, row, str(count), ha="center", va="center", fontsize=9,
                      color="white" if shares[row, col] > 0.5 else "black")
    _save(figure, path)


def _save(figure, path: Path) -> None:
    """PNG written beside ``path`` and renamed onto it: never half an image."""
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Markdown.
# --------------------------------------------------------------------------


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(run: Run, history: dict, metrics: dict, split: str, monitor: str) -> str:
    from .config import dump_config

    info = run.info
    best = best_epoch(history, monitor)
    parts = [f"# Run report: {run.path.name}\n",
             f"Model `{info.get('model_type', '?')}`, {len(run.labels)} classes, vocabulary "
             f"of {info.get('vocabulary_size', '?')} tokens; trained {info.get('created', '?')} "
             f"in {info.get('train_seconds', '?')} s (textclf {info.get('textclf_version', '?')},"
             f" Keras {info.get('keras_version', '?')}).\n",
             "## Data\n",
             _table(["split", "examples"], [[k, v] for k, v in info.get("examples", {}).items()]),
             "## Metrics\n",
             _table(["split", "accuracy", "macro precision", "macro recall", "macro F1",
                     "weighted F1", "examples"],
                    [[name, r["accuracy"], r["macro"]["precision"], r["macro"]["recall"],
                      r["macro"]["f1"], r["weighted"]["f1"], r["n_examples"]]
                     for name, r in metrics.items()]),
             f"### Per class ({split})\n",
             _table(["label", "precision", "recall", "F1", "support"],
                    [[label, s["precision"], s["recall"], s["f1"], s["support"]]
                     for label, s in metrics[split]["per_class"].items()]),
             "## Learning curves\n",
             f"{len(history['epoch'])} epochs; best by `{monitor}`: epoch {best}.\n",
             f"![learning curves]({CURVES_FILE})\n",
             f"## Confusion matrix ({split})\n",
             "Rows are true labels, columns predictions; colour is the share of the row.\n",
             f"![confusion matrix]({CONFUSION_FILE})\n",
             "## Config\n",
             "```yaml\n" + dump_config(run.config) + "```\n"]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------


def write_report(run: Run, output: str | None = None, split: str = "test") -> dict:
    """Write the figures and report.md; return paths and headline numbers."""
    out = Path(output) if output else run.path / "report"
    metrics_path = run.path / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{metrics_path}: unreadable ({exc})") from None
    if split not in metrics:
        raise UsageError(f"{run.path} has no {split} metrics; choose --split "
                         f"{' or '.join(sorted(metrics)) or '(none recorded)'}")
    history = read_history(run.path / "history.csv")
    monitor = run.config.train.monitor
    out.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(history, monitor, out / CURVES_FILE)
    plot_confusion_matrix(metrics[split]["confusion_matrix"], run.labels,
                          f"confusion matrix, {split} ({metrics[split]['n_examples']} examples)",
                          out / CONFUSION_FILE)
    write_text(out / MARKDOWN_FILE, render_markdown(run, history, metrics, split, monitor))
    return {"run_dir": str(run.path), "markdown": str(out / MARKDOWN_FILE),
            "figures": {"learning_curves": str(out / CURVES_FILE),
                        "confusion_matrix": str(out / CONFUSION_FILE)},
            "epochs": len(history["epoch"]), "monitor": monitor,
            "best_epoch": best_epoch(history, monitor),
            "metrics": {name: {"accuracy": r["accuracy"], "macro_f1": r["macro"]["f1"]}
                        for name, r in metrics.items()}}
