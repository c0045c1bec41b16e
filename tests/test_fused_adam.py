"""FusedAdam: Keras' Adam computed by TensorFlow's fused kernel."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tf():
    from textclf.runtime import import_tensorflow

    return import_tensorflow()


ROWS, WIDTH = 12, 4


def train(optimizer, gradients, start):
    """Apply each (embedding, dense) gradient pair in turn inside a tf.function,
    as Keras' fit does. An embedding gradient is a dense (ROWS, WIDTH) array or
    the (values, indices) of its rows, passed as tf.IndexedSlices. Returns the
    final (ROWS, WIDTH) and (WIDTH, 3) weights."""
    import keras
    import tensorflow as tf

    variables = [keras.Variable(value) for value in start]

    @tf.function
    def step(embedding, dense):
        if isinstance(embedding, tuple):
            embedding = tf.IndexedSlices(*embedding, tf.constant([ROWS, WIDTH]))
        optimizer.apply([embedding, dense], variables)

    for embedding, dense in gradients:
        step(embedding, dense)
    return [v.numpy() for v in variables]


def densified(gradients):
    """The same gradients with each sparse one summed into a dense (ROWS, WIDTH) array."""
    out = []
    for (values, indices), dense in gradients:
        full = np.zeros((ROWS, WIDTH), np.float32)
        np.add.at(full, indices, values)
        out.append((full, dense))
    return out


@pytest.fixture
def problem():
    """Start weights and 8 steps of gradients whose sparse part repeats rows."""
    rng = np.random.default_rng(3)
    start = [rng.normal(size=(ROWS, WIDTH)).astype(np.float32),
             rng.normal(size=(WIDTH, 3)).astype(np.float32)]
    gradients = []
    for _ in range(8):
        indices = rng.integers(0, ROWS, 10).astype(np.int32)  # 10 draws of 12 rows: repeats
        gradients.append(((rng.normal(size=(10, WIDTH)).astype(np.float32), indices),
                          rng.normal(size=(WIDTH, 3)).astype(np.float32)))
    return start, gradients


def options(**extra):
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(0.0, 10, warmup_steps=3,
                                                      warmup_target=0.05)
    return dict(learning_rate=schedule, beta_1=0.8, beta_2=0.95, **extra)


def test_dense_gradients_give_keras_adams_weights(tf, problem):
    import keras

    from textclf.fused_adam import FusedAdam

    start, gradients = problem
    dense = densified(gradients)
    ours = train(FusedAdam(**options(clipnorm=2.0)), dense, start)
    theirs = train(keras.optimizers.Adam(**options(clipnorm=2.0)), dense, start)
    moved = max(np.abs(t - s).max() for t, s in zip(theirs, start))
    assert moved > 0.05  # the check below compares real updates
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_repeated_sparse_rows_are_summed_before_squaring(tf, problem):
    """A sparse gradient updates as its dense sum would (Adam as published);
    Keras 3's class squares each repeated row on its own, so it differs.
    (Without clipping: Keras clips a sparse gradient by the norm of its
    unsummed rows, for either class, so clipped, the two would differ there.)"""
    import keras

    from textclf.fused_adam import FusedAdam

    start, gradients = problem
    ours = train(FusedAdam(**options()), gradients, start)
    textbook = train(keras.optimizers.Adam(**options()), densified(gradients), start)
    keras_sparse = train(keras.optimizers.Adam(**options()), gradients, start)
    np.testing.assert_allclose(ours[0], textbook[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[1], textbook[1], rtol=0, atol=1e-6)
    assert np.abs(keras_sparse[0] - textbook[0]).max() > 1e-3


def test_amsgrad_defers_to_keras(tf, problem):
    import keras

    from textclf.fused_adam import FusedAdam

    start, gradients = problem
    dense = densified(gradients)
    ours = train(FusedAdam(amsgrad=True, **options()), dense, start)
    theirs = train(keras.optimizers.Adam(amsgrad=True, **options()), dense, start)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_a_saved_model_reloads_with_its_adam_state(tf, tmp_path):
    import keras

    from textclf.fused_adam import FusedAdam

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None,), dtype="int32"),
                              keras.layers.Embedding(20, 4),
                              keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(FusedAdam(0.01), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 20, (16, 5))
    y = np.arange(16) % 2
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert type(loaded.optimizer) is FusedAdam
    assert int(loaded.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Training goes on from the same state in both.
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, fused", [("adam", True), ("keras_adam", False)])
def test_train_optimizer_names_the_class(tf, name, fused):
    import keras

    from textclf.config import TrainConfig
    from textclf.fused_adam import FusedAdam
    from textclf.optimizers import make_optimizer

    optimizer = make_optimizer(TrainConfig(optimizer=name), n_train=64)
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert isinstance(optimizer, FusedAdam) is fused


def test_the_update_benchmark_times_both_classes(tf, capsys):
    import re
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import bench_adam

    assert bench_adam.main(["--vocabulary", "50", "--dim", "4", "--tokens", "30",
                            "--repeats", "1"]) == 0
    timings = re.findall(r"^  (keras\.optimizers\.Adam|textclf FusedAdam) +(\d+\.\d\d)$",
                         capsys.readouterr().out, re.M)
    assert [name for name, _ in timings] == ["keras.optimizers.Adam", "textclf FusedAdam"]
