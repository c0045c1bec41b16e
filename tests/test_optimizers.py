"""train.optimizer / lr_schedule -> Keras optimizer and learning-rate curve."""

from __future__ import annotations

import math

import pytest

from textclf.config import TrainConfig


@pytest.fixture(scope="module")
def keras():
    from textclf.runtime import import_tensorflow

    import_tensorflow()
    import keras

    return keras


def rate_at(cfg: TrainConfig, steps_per_epoch: int, step: int) -> float:
    from textclf.optimizers import learning_rate

    schedule = learning_rate(cfg, steps_per_epoch)
    return float(schedule(step)) if callable(schedule) else float(schedule)


def test_constant_rate_and_clipping(keras):
    from textclf.optimizers import make_optimizer

    cfg = TrainConfig(learning_rate=0.01, clipnorm=2.0)
    optimizer = make_optimizer(cfg, n_train=7 * cfg.batch_size)
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert optimizer.clipnorm == 2.0
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert rate_at(cfg, 7, 1000) == pytest.approx(0.01)


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_cosine_schedule_rises_then_decays_to_zero_at_the_last_epoch(keras, warmup_epochs):
    from textclf.optimizers import make_optimizer

    cfg = TrainConfig(learning_rate=0.004, epochs=5, lr_schedule="cosine",
                      warmup_epochs=warmup_epochs)
    steps = 10
    optimizer = make_optimizer(cfg, n_train=steps * cfg.batch_size - 5)  # 10 batches
    assert isinstance(optimizer.get_config()["learning_rate"], dict)  # a serialised schedule
    warmup = int(warmup_epochs * steps)
    if warmup:
        assert rate_at(cfg, steps, 0) == pytest.approx(0.0, abs=1e-9)
        assert rate_at(cfg, steps, warmup // 2) == pytest.approx(0.002)
    assert rate_at(cfg, steps, warmup) == pytest.approx(0.004)
    decay = 5 * steps - warmup
    middle = warmup + decay // 2
    assert rate_at(cfg, steps, middle) == pytest.approx(0.004 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert rate_at(cfg, steps, 5 * steps) == pytest.approx(0.0, abs=1e-9)
    assert rate_at(cfg, steps, 5 * steps + 20) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_spreads_the_target_over_the_classes(keras, smoothing):
    import numpy as np

    from textclf.config import Config, TrainConfig
    from textclf.training import compile_classifier

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    compile_classifier(model, Config(train=TrainConfig(label_smoothing=smoothing)), n_train=8)
    one_hot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    # The target each row is scored against: (1 - s) * one-hot + s / C.
    target = (1.0 - smoothing) * one_hot + smoothing / 3
    expected = np.mean(-np.sum(target * np.log(probabilities), axis=1))
    assert float(model.loss(one_hot, probabilities)) == pytest.approx(expected, rel=1e-6)


def test_compile_passes_steps_per_execution_to_keras(keras):
    """train.steps_per_execution reaches the compiled model, which then runs
    that many steps per call (tests/test_determinism.py: with the same result)."""
    from textclf.config import Config, TrainConfig
    from textclf.training import compile_classifier

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    compile_classifier(model, Config(train=TrainConfig(steps_per_execution=6)), n_train=8)
    assert model.steps_per_execution == 6
    compile_classifier(model, Config(train=TrainConfig()), n_train=8)
    assert model.steps_per_execution == 1  # Keras' own default
