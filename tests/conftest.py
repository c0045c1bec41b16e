"""Fixtures shared by the test modules: a CLI runner, tiny datasets, real data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
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


TINY_LSTM_RECIPE = (
    "data: {train: train.tsv, format: tsv}\ntext: {max_tokens: 100, max_length: 20}\n"
    "model: {type: rnn, cell: lstm, units: 8, embedding_dim: 8}\n"
    "train: {epochs: 1, batch_size: 16, verbose: quiet}\n")


def train_tiny_lstm_run(folder: Path, cell: str = "lstm") -> Path:
    """Train a one-epoch LSTM (or another ``cell``) on fresh topic data in
    ``folder``; returns the run directory."""
    from click.testing import CliRunner

    from textclf.cli import cli

    write_topic_tsv(folder / "train.tsv", 120)
    recipe = TINY_LSTM_RECIPE.replace("cell: lstm", f"cell: {cell}")
    (folder / "lstm.yaml").write_text(recipe, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "-c", str(folder / "lstm.yaml"), "-o",
                                      str(folder / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "run"


# For the folded-prediction tests: a tiny vocabulary and texts of every length
# (empty, one token, longer than max_length, out-of-vocabulary words).
FOLD_TRAIN = ["the cat sat on the mat", "dogs bark at the mail man", "stocks fell sharply today",
              "the match ended in a draw", "rates rise as markets fall", "a cat and a dog"]
FOLD_TEXTS = ["", "cat", "the the the", "unknownword another", "the cat sat on the mat " * 12,
              "stocks fell as the cat sat", "markets"] * 3


def random_end_to_end(model_config, weight_scale: float, n_classes: int = 4,
                      max_length: int = 20):
    """vectorizer (over FOLD_TRAIN) -> truncate -> the classifier of ``model_config``,
    every weight drawn from N(0, weight_scale^2): a run directory's model, untrained."""
    import keras
    import numpy as np

    from textclf.config import TextConfig
    from textclf.models import build_model
    from textclf.text import build_vectorizer
    from textclf.training import end_to_end_model

    keras.utils.set_random_seed(4)
    vectorizer = build_vectorizer(TextConfig(max_tokens=40), FOLD_TRAIN)
    classifier = build_model(model_config, len(vectorizer.get_vocabulary()), n_classes)
    rng = np.random.default_rng(0)
    classifier.set_weights([rng.normal(0, weight_scale, size=w.shape)
                            for w in classifier.get_weights()])
    return end_to_end_model(vectorizer, classifier, max_length=max_length)


def assert_folded_matches(model, folded, atol: float = 1e-5) -> None:
    """``folded`` (strings -> probabilities) gives ``model``'s probabilities to ``atol``
    and its labels, on two batches of FOLD_TEXTS of different padded widths."""
    import numpy as np
    import tensorflow as tf

    for start in (0, 5):
        texts = tf.constant(FOLD_TEXTS[start:start + 9])
        expected = model(texts, training=False).numpy()
        actual = folded(texts).numpy()
        np.testing.assert_allclose(actual, expected, atol=atol)
        np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))


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


# For the fused-loop tests (test_fused_lstm.py, test_fused_gru.py): small
# float64 layers and (B, T) masks with right padding, holes, a row with no
# real step, and left padding.
RNN_B, RNN_T, RNN_D, RNN_U = 5, 7, 3, 4
RNN_MASKS = {
    "none": None,
    "right": np.arange(RNN_T)[None] < np.array([[7], [3], [1], [5], [2]]),
    "holes": np.array([[1, 0, 1, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1],
                       [0, 0, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 1]], dtype=bool),
}


def twin_recurrent_layers(stock_class, fused_class, groups: int = 2, **options):
    """A stock Keras layer and textclf's fused one, float64, the same weights
    (normal, scale 0.7), returning sequences and states."""
    stock = stock_class(RNN_U, return_sequences=True, return_state=True, dtype="float64",
                        **options)
    fused = fused_class(RNN_U, return_sequences=True, return_state=True, dtype="float64",
                        **options)
    fused.batch_groups = groups
    stock.build((None, None, RNN_D))
    fused.build((None, None, RNN_D))
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 0.7, size=w.shape) for w in stock.get_weights()]
    stock.set_weights(weights)
    fused.set_weights(weights)
    return stock, fused


def assert_relatively_close(actual, expected, what):
    """Max |actual - expected| / max(1, max |expected|) below 1e-9 (float64:
    only the order of additions differs)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(actual - expected))) / scale
    assert error < 1e-9, f"{what}: relative difference {error:.2e}"
