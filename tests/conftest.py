"""Fixtures shared by the test modules: a CLI runner, tiny datasets, real data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TOPIC_WORDS = {
    "sport": "ball goal match team win player score league coach cup".split(),
    "tech": "computer software chip phone internet data code app robot server".split(),
    "business": "market stock price bank profit shares economy trade tax growth".split(),
}
FILLER = "the a of and to in on".split()


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is missing")
    return SHARED_DATA


def write_topic_tsv(path: Path, n: int, seed: int = 0) -> Path:
    """``label<TAB>text`` lines of three easily separable topics."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label = rng.choice(sorted(TOPIC_WORDS))
        words = [rng.choice(TOPIC_WORDS[label] + FILLER) for _ in range(rng.randint(2, 25))]
        lines.append(f"{label}\t{' '.join(words)}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def tiny_tsv(tmp_path) -> Path:
    return write_topic_tsv(tmp_path / "train.tsv", 240)


TINY_RECIPE = (
    "data:\n  train: train.tsv\n  format: tsv\n"
    "text:\n  max_tokens: 100\n  max_length: 30\n"
    "model:\n  type: cnn\n  embedding_dim: 16\n  filters: 8\n  kernel_sizes: [2, 3]\n"
    "train:\n  epochs: {epochs}\n  batch_size: 16\n  learning_rate: 0.01\n  verbose: quiet\n")


def train_tiny_run(folder: Path, epochs: int = 4, extra_train: str = "", args=()):
    """Train the tiny CNN recipe on fresh topic data in ``folder``.

    ``extra_train`` is appended to the ``train`` section (indented YAML lines).
    Returns ``(run_dir, click result)``.
    """
    from click.testing import CliRunner

    from textclf.cli import cli

    write_topic_tsv(folder / "train.tsv", 240)
    config = folder / "tiny.yaml"
    config.write_text(TINY_RECIPE.format(epochs=epochs) + extra_train, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "-o", str(folder / "run"),
                                      *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "run", result


@pytest.fixture
def tiny_config(tmp_path, tiny_tsv) -> Path:
    """A fast CNN recipe over ``tiny_tsv`` (valid/test carved from it)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE.format(epochs=4), encoding="utf-8")
    return path


def stop_after_epoch(monkeypatch, epoch: int):
    """Make the next training raise KeyboardInterrupt (as Ctrl-C would) at the end of
    epoch ``epoch`` (0-based). Returns a function that undoes the patch."""
    from textclf import training

    original = training.make_callbacks

    def with_interrupt(cfg, work, progress):
        import keras

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, finished, logs=None):
                if finished == epoch:
                    raise KeyboardInterrupt

        callbacks, nan_stop = original(cfg, work, progress)
        return callbacks + [Interrupt()], nan_stop

    monkeypatch.setattr(training, "make_callbacks", with_interrupt)
    return lambda: monkeypatch.setattr(training, "make_callbacks", original)
