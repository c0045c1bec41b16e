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


@pytest.fixture(params=["rows op", "tensorflow"])
def sparse_path(request, monkeypatch):
    """FusedAdam's two paths for a sparse gradient: textclf's rows op (where
    the native kernels are built) and TensorFlow's ops (densify, then
    ResourceApplyAdam)."""
    from textclf import fused_adam

    if request.param == "rows op" and not fused_adam.native_adam_available():
        pytest.skip("native kernels unusable here")
    if request.param == "tensorflow":
        monkeypatch.setattr(fused_adam, "native_adam_available", lambda: False)
    return request.param


def test_repeated_sparse_rows_are_summed_before_squaring(tf, problem, sparse_path):
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


def sparse_problem(rows, width, tokens, steps, seed, index_dtype=np.int32):
    """Start weights and ``steps`` gradients of a (rows, width) embedding, each
    the (values, indices) of ``tokens`` looked-up rows (Zipf-like, so that
    rows repeat and some are never looked up), with a (width, 3) dense one."""
    rng = np.random.default_rng(seed)
    start = [rng.normal(size=(rows, width)).astype(np.float32),
             rng.normal(size=(width, 3)).astype(np.float32)]
    zipf = 1 / np.arange(1, rows + 1)
    gradients = [((rng.normal(size=(tokens, width)).astype(np.float32),
                   rng.choice(rows, tokens, p=zipf / zipf.sum()).astype(index_dtype)),
                  rng.normal(size=(width, 3)).astype(np.float32)) for _ in range(steps)]
    return start, gradients


def train_sparse(optimizer, gradients, start):
    """:func:`train` for a (rows, width) embedding of any size."""
    import keras
    import tensorflow as tf

    variables = [keras.Variable(value) for value in start]

    @tf.function
    def step(values, indices, dense):
        rows = tf.IndexedSlices(values, indices, tf.constant(start[0].shape, indices.dtype))
        optimizer.apply([rows, dense], variables)

    for (values, indices), dense in gradients:
        step(values, indices, dense)
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("clipnorm", [None, 1e3, 2.0], ids=["no clip", "clip above", "clipped"])
@pytest.mark.parametrize("rows, width, tokens, index_dtype", [
    (12, 4, 10, np.int32), (1000, 37, 700, np.int64), (3000, 128, 2000, np.int32)])
def test_the_rows_op_updates_as_tensorflows_ops_do(tf, monkeypatch, clipnorm, rows, width,
                                                    tokens, index_dtype):
    """textclf_apply_adam_to_rows (clipping, summing and the whole update in
    one op) against FusedAdam's TensorFlow path (Keras' clipping of the rows,
    UnsortedSegmentSum, ResourceApplyAdam), on tiny and embedding-sized
    variables (many chunks of 32 rows, shared among the intra-op threads; a
    width that is not a multiple of a vector), with rows that repeat, rows
    that a step does not look up after earlier ones did (their moments decay
    and they still move), and a clip norm that binds ("clipped": the rows'
    norm is several times it)."""
    from textclf import fused_adam

    if not fused_adam.native_adam_available():
        pytest.skip("native kernels unusable here")
    start, gradients = sparse_problem(rows, width, tokens, steps=6, seed=rows,
                                      index_dtype=index_dtype)
    ours = train_sparse(fused_adam.FusedAdam(**options(clipnorm=clipnorm)), gradients, start)
    monkeypatch.setattr(fused_adam, "native_adam_available", lambda: False)
    theirs = train_sparse(fused_adam.FusedAdam(**options(clipnorm=clipnorm)), gradients, start)
    earlier = np.concatenate([indices for (_, indices), _ in gradients[:-1]])
    assert len(np.setdiff1d(earlier, gradients[-1][0][1])) > 0  # decayed, not looked up
    assert np.abs(theirs[0] - start[0]).max() > 0.05  # real updates are compared
    # Where the clip binds, the op's norm differs from Keras' in its last bit
    # (the squares are summed in another order), so every clipped value may
    # differ by an ulp; Adam divides by sqrt(v), and for a row whose repeated
    # rows nearly cancel, that ulp is a large part of its gradient, so six
    # steps at rates up to 0.05 move such a weight by up to about 1e-5. The
    # clipped gradient itself is checked to 1e-6 below.
    tolerance = 5e-5 if clipnorm == 2.0 else 2e-6
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


def test_the_rows_op_clips_as_keras_clips_rows(tf):
    """With beta_1 = 0 and a zero rate, the op leaves m = the gradient it
    used: the rows clipped as Keras' clipnorm clips them (tf.clip_by_norm on
    tf.IndexedSlices: the norm of all rows as given) and summed per id."""
    from textclf.kernels import native_adam_available, native_ops

    if not native_adam_available():
        pytest.skip("native kernels unusable here")
    (start, _), gradients = sparse_problem(3000, 128, 2000, steps=1, seed=1)
    (values, indices), _ = gradients[0]
    for clip_norm in (2.0, 1e3, 0.0):
        var, m, v = (tf.Variable(tf.zeros(start.shape)) for _ in range(3))
        native_ops().textclf_apply_adam_to_rows(
            var.handle, m.handle, v.handle, beta1_power=0.5, beta2_power=0.5, lr=0.0,
            beta1=0.0, beta2=0.0, epsilon=1e-7, clip_norm=clip_norm, values=values,
            indices=indices)
        rows = tf.IndexedSlices(tf.constant(values), tf.constant(indices), start.shape)
        if clip_norm:
            rows = tf.clip_by_norm(rows, clip_norm)
        expected = tf.math.unsorted_segment_sum(rows.values, rows.indices, len(start)).numpy()
        assert np.abs(expected).max() > 0.05
        np.testing.assert_allclose(m.numpy(), expected, rtol=0,
                                   atol=1e-6 * np.abs(expected).max())
        np.testing.assert_array_equal(var.numpy(), 0)  # a zero rate moves nothing


def test_the_rows_op_is_the_path_taken(tf):
    """Where the kernels are built, a float32 sparse gradient is updated by
    the rows op alone: no UnsortedSegmentSum, no ResourceApplyAdam and no
    clipping ops in the traced step; a dense gradient still goes to
    ResourceApplyAdam."""
    import keras

    from textclf import fused_adam

    if not fused_adam.native_adam_available():
        pytest.skip("native kernels unusable here")
    variables = [keras.Variable(np.ones((12, 4), np.float32)),
                 keras.Variable(np.ones((4, 3), np.float32))]
    optimizer = fused_adam.FusedAdam(0.01, clipnorm=1.0)

    @tf.function
    def step(values, indices, dense):
        optimizer.apply([tf.IndexedSlices(values, indices, tf.constant([12, 4])), dense],
                        variables)

    graph = step.get_concrete_function(tf.TensorSpec((None, 4)), tf.TensorSpec((None,), tf.int32),
                                       tf.TensorSpec((4, 3))).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("TextclfApplyAdamToRows") == 1
    assert types.count("ResourceApplyAdam") == 1  # the dense gradient's
    assert "UnsortedSegmentSum" not in types
    assert types.count("Sqrt") == 1  # the dense gradient's clip norm


def test_the_adam_switch_turns_the_rows_op_off_alone(tf, monkeypatch):
    from textclf import kernels

    if kernels.native_ops() is None:
        pytest.skip("native kernels unusable here")
    assert kernels.native_adam_available()
    monkeypatch.setenv(kernels.ADAM_SWITCH, "0")
    assert not kernels.native_adam_available()
    assert kernels.native_lstm_available("float32")


def test_the_rows_op_refuses_bad_indices_and_shapes(tf):
    from textclf.kernels import native_adam_available, native_ops

    if not native_adam_available():
        pytest.skip("native kernels unusable here")
    var, m, v = (tf.Variable(tf.zeros((5, 3))) for _ in range(3))
    scalars = dict(beta1_power=0.9, beta2_power=0.999, lr=0.1, beta1=0.9, beta2=0.999,
                   epsilon=1e-7, clip_norm=0.0)

    def apply(values, indices, variables=(var, m, v)):
        native_ops().textclf_apply_adam_to_rows(*(x.handle for x in variables), **scalars,
                                                values=values, indices=indices)

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[1\] = 5 is not in"):
        apply(tf.ones((2, 3)), tf.constant([0, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"values must be \[2,3\]"):
        apply(tf.ones((2, 4)), tf.constant([0, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="three different variables"):
        apply(tf.ones((2, 3)), tf.constant([0, 1]), (var, var, v))
    with pytest.raises(tf.errors.InvalidArgumentError, match="float32 of one shape"):
        apply(tf.ones((2, 3)), tf.constant([0, 1]), (var, tf.Variable(tf.zeros((5, 2))), v))
    np.testing.assert_array_equal(var.numpy(), 0)  # nothing was applied


def test_the_rows_op_without_rows_decays_the_moments(tf):
    """No looked-up rows (N = 0) is a zero gradient: dense Adam still decays
    m and v and moves the variable, as ResourceApplyAdam does."""
    from textclf.kernels import native_adam_available, native_ops

    if not native_adam_available():
        pytest.skip("native kernels unusable here")
    rng = np.random.default_rng(5)
    start = [rng.normal(size=(40, 6)).astype(np.float32),
             rng.normal(size=(40, 6)).astype(np.float32),
             rng.random(size=(40, 6)).astype(np.float32)]
    ours, theirs = ([tf.Variable(x) for x in start] for _ in range(2))
    scalars = dict(beta1_power=0.9 ** 3, beta2_power=0.999 ** 3, lr=0.1, beta1=0.9,
                   beta2=0.999, epsilon=1e-7)
    native_ops().textclf_apply_adam_to_rows(*(x.handle for x in ours), **scalars,
                                            clip_norm=1.0, values=tf.zeros((0, 6)),
                                            indices=tf.zeros((0,), tf.int32))
    tf.raw_ops.ResourceApplyAdam(var=theirs[0].handle, m=theirs[1].handle,
                                 v=theirs[2].handle, grad=tf.zeros((40, 6)), **scalars)
    assert np.abs(ours[0].numpy() - start[0]).max() > 1e-3
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)


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


def test_the_update_benchmark_times_both_classes_and_both_paths(tf, capsys):
    import re
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import bench_adam

    assert bench_adam.main(["--vocabulary", "50", "--dim", "4", "--tokens", "30",
                            "--repeats", "1"]) == 0
    from textclf.fused_adam import native_adam_available

    rows = [line.rsplit(None, 1) for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ")]
    rows_op = "native rows op" if native_adam_available() else "not usable here"
    assert [name.strip() for name, _ in rows] == [
        "keras.optimizers.Adam", "textclf FusedAdam, TensorFlow ops",
        f"textclf FusedAdam ({rows_op})"]
    assert all(re.fullmatch(r"\d+\.\d\d", ms) for _, ms in rows), rows
