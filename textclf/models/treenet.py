"""Recursive tree nets on TensorFlow: all nodes of one height, across the batch, at once.

A batch is the (B, N) int32 arrays of :func:`textclf.trees.trees_to_batch`
(``word_ids``, ``left``, ``right``, ``height``; trees left-padded so each
root is in column N - 1). :class:`TreeEncoder` flattens the batch to M = B*N
nodes plus one zero row (index M, what an absent child, -1, reads) and runs a
``tf.while_loop`` over heights 0..max: each step gathers the children of every
node of that height, applies the cell to all of them in one matmul and writes
the results back with ``tensor_scatter_nd_update``. An SST batch of 25 trees
(~930 nodes) takes height + 1 steps, 10-30, instead of ~930 one-node steps; an
SST epoch takes 22-44 s on 2 shared CPU cores (Tree-LSTM, 150 units).

The cells and weight layouts are those of :mod:`textclf.reference.treenet`
(the NumPy reference this module is checked against): ``rnn`` is Socher's
``tanh([h_l, h_r] @ kernel + bias)``, ``tree_lstm`` the binary (N-ary, N=2)
Tree-LSTM of Tai et al. 2015. Layer names: ``embedding``,
``embedding_dropout``, ``tree_encoder``, ``dropout``, ``output``.
``model.dropout`` is applied to the word vectors and to the node states.

Entry points for the CLI:

- :func:`build_treenet` (config, vocab size, classes) -> compiled-ready model;
- :func:`compile_treenet`, :func:`tree_dataset`, :func:`fit_treenet`;
- :func:`predict_trees`, :func:`evaluate_trees` (root and all-node accuracy);
- :func:`numpy_treenet_from_keras`, :func:`compare_with_reference` (``textclf check``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from ..batching import with_epoch_options
from ..config import Config, ModelConfig, TrainConfig
from ..errors import ConfigError
from ..optimizers import make_optimizer
from ..trees import MODEL_INPUTS, Tree, TreeVocab, trees_to_batch

# ---------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="textclf")
class TreeEncoder(keras.layers.Layer):
    """Node states of batched trees.

    ``call(embedded (B, N, D), word_ids, left, right, height (B, N) int32)``
    returns ``h`` (B, N, U); padding nodes get zeros. Weights, as the NumPy
    reference names them:

    - ``rnn``: ``kernel`` (2U, U), ``bias`` (U,); needs D == U (leaves are
      embedding rows);
    - ``tree_lstm``: ``kernel`` (D, 4U) blocks [i, f, c, o], ``recurrent_kernel``
      (2U, 5U) rows [h_l; h_r], blocks [i, f_l, f_r, c, o], ``bias`` (4U,) with
      the forget block initialised to 1 (Keras' ``unit_forget_bias``).
    """

    def __init__(self, cell: str = "tree_lstm", units: int = 150,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if cell not in ("rnn", "tree_lstm"):
            raise ValueError(f"cell must be rnn or tree_lstm; got {cell!r}")
        self.cell = cell
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, embedded_shape, *args, **kwargs):
        D, U = int(embedded_shape[-1]), self.units
        if self.cell == "rnn":
            if D != U:
                raise ValueError(f"the rnn tree cell needs embedding_dim == units; "
                                 f"got {D} and {U}")
            self.kernel = self.add_weight(name="kernel", shape=(2 * U, U),
                                          initializer=self.kernel_initializer,
                                          regularizer=self.kernel_regularizer)
            self.bias = self.add_weight(name="bias", shape=(U,), initializer="zeros")
        else:
            self.kernel = self.add_weight(name="kernel", shape=(D, 4 * U),
                                          initializer=self.kernel_initializer,
                                          regularizer=self.kernel_regularizer)
            self.recurrent_kernel = self.add_weight(
                name="recurrent_kernel", shape=(2 * U, 5 * U),
                initializer=self.recurrent_initializer, regularizer=self.kernel_regularizer)
            forget_one = np.zeros(4 * U)
            forget_one[U:2 * U] = 1.0  # remember the children at the start
            self.bias = self.add_weight(name="bias", shape=(4 * U,),
                                        initializer=keras.initializers.Constant(forget_one))
        self.built = True

    def call(self, embedded, word_ids, left, right, height):
        U = self.units
        dtype = embedded.dtype
        B, N = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
        M = B * N
        offset = tf.range(B)[:, None] * N
        # Flat child index; an absent child (-1) reads the zero row M.
        flat_left = tf.reshape(tf.where(left >= 0, left + offset, M), [-1])
        flat_right = tf.reshape(tf.where(right >= 0, right + offset, M), [-1])
        flat_height = tf.reshape(height, [-1])
        x = tf.reshape(embedded, [M, -1])
        top = tf.reduce_max(flat_height)

        def level_nodes(k):
            idx = tf.where(tf.equal(flat_height, k))  # (n_k, 1) int64
            return idx, tf.gather(flat_left, idx[:, 0]), tf.gather(flat_right, idx[:, 0])

        if self.cell == "rnn":
            kernel, bias = tf.cast(self.kernel, dtype), tf.cast(self.bias, dtype)
            is_leaf = tf.reshape(tf.equal(height, 0), [M, 1])
            state = tf.concat([tf.where(is_leaf, x, tf.zeros_like(x)),
                               tf.zeros([1, U], dtype)], axis=0)  # (M + 1, U)

            def step(k, state):
                idx, l, r = level_nodes(k)
                children = tf.concat([tf.gather(state, l), tf.gather(state, r)], axis=1)
                new = tf.tanh(tf.matmul(children, kernel) + bias)
                return k + 1, tf.tensor_scatter_nd_update(state, idx, new)

            _, state = tf.while_loop(lambda k, s: k <= top, step, (tf.constant(1), state))
            h = state[:M]
        else:
            kernel = tf.cast(self.kernel, dtype)
            recurrent = tf.cast(self.recurrent_kernel, dtype)
            has_word = tf.reshape(word_ids > 0, [M, 1])
            x = tf.where(has_word, x, tf.zeros_like(x))  # a node without a word reads 0
            a = tf.matmul(x, kernel) + tf.cast(self.bias, dtype)  # (M, 4U), all nodes at once
            state = tf.zeros([M + 1, 2 * U], dtype)  # [h, c] per node, row M stays 0

            def step(k, state):
                idx, l, r = level_nodes(k)
                sl, sr = tf.gather(state, l), tf.gather(state, r)  # (n, 2U): [h, c]
                hl, cl, hr, cr = sl[:, :U], sl[:, U:], sr[:, :U], sr[:, U:]
                m = tf.matmul(tf.concat([hl, hr], axis=1), recurrent)  # (n, 5U)
                ai, af, ac, ao = tf.split(tf.gather_nd(a, idx), 4, axis=1)
                mi, mfl, mfr, mc, mo = tf.split(m, 5, axis=1)
                c = (tf.sigmoid(ai + mi) * tf.tanh(ac + mc)
                     + tf.sigmoid(af + mfl) * cl + tf.sigmoid(af + mfr) * cr)
                h = tf.sigmoid(ao + mo) * tf.tanh(c)
                return k + 1, tf.tensor_scatter_nd_update(state, idx, tf.concat([h, c], 1))

            _, state = tf.while_loop(lambda k, s: k <= top, step, (tf.constant(0), state))
            h = state[:M, :U]
        return tf.reshape(h, [B, N, U])

    def compute_output_shape(self, embedded_shape, *args):
        return (*embedded_shape[:2], self.units)

    def get_config(self):
        return {**super().get_config(), "cell": self.cell, "units": self.units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


@keras.saving.register_keras_serializable(package="textclf")
class TreeNet(keras.Model):
    """Batched trees -> class probabilities at every node (B, N, C).

    ``inputs`` is a dict of (B, N) int32 tensors ``word_ids``, ``left``,
    ``right``, ``height`` (see :func:`textclf.trees.trees_to_batch`).
    :meth:`encode` gives the node states (B, N, U) that the classifier reads.
    """

    def __init__(self, vocab_size: int, n_classes: int, embedding_dim: int = 150,
                 units: int = 150, cell: str = "tree_lstm", dropout: float = 0.5,
                 embedding_dropout: float = 0.0, l2: float = 0.0,
                 kernel_initializer="glorot_uniform", embeddings_initializer="uniform",
                 trainable_embeddings: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.n_classes = int(vocab_size), int(n_classes)
        self.embedding_dim, self.units, self.cell = int(embedding_dim), int(units), cell
        self.dropout_rate, self.embedding_dropout_rate = float(dropout), float(embedding_dropout)
        self.l2, self.trainable_embeddings = float(l2), bool(trainable_embeddings)
        self.kernel_initializer = kernel_initializer
        self.embeddings_initializer = embeddings_initializer
        reg = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        policy = self.dtype_policy
        self.embedding = keras.layers.Embedding(
            self.vocab_size, self.embedding_dim, embeddings_initializer=embeddings_initializer,
            trainable=self.trainable_embeddings, name="embedding", dtype=policy)
        self.embedding_dropout = keras.layers.Dropout(self.embedding_dropout_rate,
                                                      name="embedding_dropout", dtype=policy)
        self.encoder = TreeEncoder(cell, self.units, kernel_initializer=kernel_initializer,
                                   kernel_regularizer=reg, name="tree_encoder", dtype=policy)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout", dtype=policy)
        self.classifier = keras.layers.Dense(
            self.n_classes, activation="softmax", kernel_initializer=kernel_initializer,
            kernel_regularizer=reg, name="output", dtype=policy)

    def build(self, input_shape=None):
        self.embedding.build((None, None))
        self.encoder.build((None, None, self.embedding_dim))
        self.classifier.build((None, None, self.units))
        self.built = True

    def encode(self, inputs, training=None):
        """Node states h (B, N, U); zeros at padding."""
        ids = tf.cast(inputs["word_ids"], "int32")
        x = self.embedding_dropout(self.embedding(ids), training=training)
        return self.encoder(x, ids, tf.cast(inputs["left"], "int32"),
                            tf.cast(inputs["right"], "int32"),
                            tf.cast(inputs["height"], "int32"))

    def call(self, inputs, training=None):
        h = self.encode(inputs, training=training)
        return self.classifier(self.dropout(h, training=training))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "n_classes": self.n_classes, "embedding_dim": self.embedding_dim,
                "units": self.units, "cell": self.cell, "dropout": self.dropout_rate,
                "embedding_dropout": self.embedding_dropout_rate, "l2": self.l2,
                "kernel_initializer": self.kernel_initializer,
                "embeddings_initializer": self.embeddings_initializer,
                "trainable_embeddings": self.trainable_embeddings}


# ---------------------------------------------------------------- loss and metrics


@keras.saving.register_keras_serializable(package="textclf")
class NodeCrossEntropy(keras.losses.Loss):
    """Sum of the cross-entropies of a tree's labelled nodes, mean over the batch.

    ``y_true`` (B, N) class ids, -1 = no label (neutral phrase in binary mode,
    padding, or a non-root node under ``tree_loss: root``); ``y_pred`` (B, N, C)
    probabilities. Returns (B,) per-tree sums; Keras averages them.
    """

    def __init__(self, name="node_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labels = tf.cast(y_true, "int32")
        valid = labels >= 0
        eps = keras.backend.epsilon()
        probs = tf.clip_by_value(y_pred, eps, 1.0 - eps)
        picked = tf.gather(probs, tf.maximum(labels, 0), batch_dims=2)  # (B, N)
        return -tf.reduce_sum(tf.where(valid, tf.math.log(picked), 0.0), axis=1)


class _CountingAccuracy(keras.metrics.Metric):
    """Correct / counted over all batches (not a mean of per-batch means)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _select(self, labels, probs):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, probs = self._select(tf.cast(y_true, "int32"), y_pred)
        valid = labels >= 0
        hit = tf.logical_and(valid, tf.equal(tf.argmax(probs, axis=-1, output_type="int32"),
                                             labels))
        self.correct.assign_add(tf.reduce_sum(tf.cast(hit, self.dtype)))
        self.count.assign_add(tf.reduce_sum(tf.cast(valid, self.dtype)))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="textclf")
class RootAccuracy(_CountingAccuracy):
    """Accuracy at the roots (column N - 1), labelled roots only."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def _select(self, labels, probs):
        return labels[:, -1], probs[:, -1]


@keras.saving.register_keras_serializable(package="textclf")
class NodeAccuracy(_CountingAccuracy):
    """Accuracy over every labelled node."""

    def __init__(self, name="all_nodes_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def _select(self, labels, probs):
        return labels, probs


# ---------------------------------------------------------------- building


def build_treenet(cfg: ModelConfig, vocab_size: int, n_classes: int,
                  pretrained: np.ndarray | None = None, trainable: bool = True,
                  dtype: str | None = None, embedding_dropout: float | None = None) -> TreeNet:
    """A built (weights created) :class:`TreeNet` for ``cfg`` (``model.*``).

    ``model.dropout`` applies twice, as in Tai et al.'s sentiment setup: to the
    word vectors entering the tree and to the node states before the softmax
    (``embedding_dropout`` overrides the first). On SST-2 the input dropout is
    worth about a point: dev root accuracy 82.0 -> 83.0.

    ``pretrained`` (vocab_size, embedding_dim) replaces the random embeddings;
    ``trainable=False`` freezes them. ``dtype="float64"`` is for reference
    comparisons. The rnn cell needs ``embedding_dim == units``.
    """
    if cfg.tree_cell == "rnn" and cfg.embedding_dim != cfg.units:
        raise ConfigError("model.units", f"equal to model.embedding_dim "
                          f"({cfg.embedding_dim}) for tree_cell rnn", cfg.units)
    model = TreeNet(vocab_size, n_classes, embedding_dim=cfg.embedding_dim, units=cfg.units,
                    cell=cfg.tree_cell, dropout=cfg.dropout,
                    embedding_dropout=cfg.dropout if embedding_dropout is None
                    else embedding_dropout, l2=cfg.l2,
                    kernel_initializer=cfg.kernel_initializer, trainable_embeddings=trainable,
                    name=f"treenet_{cfg.tree_cell}", dtype=dtype)
    model.build()
    if pretrained is not None:
        model.embedding.embeddings.assign(np.asarray(pretrained, dtype=model.embedding.dtype))
    return model


def compile_treenet(model: TreeNet, cfg: TrainConfig, n_train: int,
                    optimizer=None) -> TreeNet:
    """Loss: per-tree node cross-entropy sum; metrics ``accuracy`` (root) and
    ``all_nodes_accuracy``. No XLA: the level loop's node sets have data-dependent sizes.
    ``n_train`` training trees size the learning-rate schedule."""
    model.compile(optimizer=optimizer or make_optimizer(cfg, n_train), loss=NodeCrossEntropy(),
                  metrics=[RootAccuracy(), NodeAccuracy()], jit_compile=False,
                  steps_per_execution=cfg.steps_per_execution)
    return model


# ---------------------------------------------------------------- data


def batch_plan(trees: Sequence[Tree], batch_size: int, shuffle: bool, seed: int, epoch: int,
               bucketing: bool) -> list[np.ndarray]:
    """Index arrays of one epoch's batches.

    Bucketing sorts windows of shuffled trees by height, so a batch's level
    loop runs about as many steps as its members need, not as its tallest
    outlier. Without ``shuffle`` batches keep the input order.
    """
    if not shuffle:
        order = np.arange(len(trees))
        return [order[i:i + batch_size] for i in range(0, len(trees), batch_size)]
    from ..batching import epoch_plan
    heights = np.fromiter((t.height[-1] for t in trees), dtype=np.int64, count=len(trees))
    return epoch_plan(heights, batch_size, seed, epoch, bucketing)


def root_only_labels(labels: np.ndarray) -> np.ndarray:
    """(B, N) labels with every column but the roots' (N - 1) set to -1."""
    out = np.full_like(labels, -1)
    out[:, -1] = labels[:, -1]
    return out


def tree_dataset(trees: Sequence[Tree], vocab: TreeVocab, batch_size: int,
                 shuffle: bool = False, seed: int = 0, bucketing: bool = True,
                 root_only: bool = False, start_epoch: int = 0) -> tf.data.Dataset:
    """``(inputs dict of (B, N) int32, labels (B, N) int32)`` batches for ``model.fit``.

    Each pass over the dataset is the next epoch: a fresh shuffle from
    ``(seed, epoch)``. ``root_only`` keeps only the root labels (``tree_loss: root``).
    Batch and node dimensions are left unknown, so the model is traced once.
    """
    trees = list(trees)
    epoch = [start_epoch]

    def generate():
        plan = batch_plan(trees, batch_size, shuffle, seed, epoch[0], bucketing)
        epoch[0] += 1
        for rows in plan:
            batch = trees_to_batch([trees[i] for i in rows], vocab)
            labels = batch["labels"]
            if root_only:
                labels = root_only_labels(labels)
            yield {name: batch[name] for name in MODEL_INPUTS}, labels

    spec = tf.TensorSpec((None, None), tf.int32)
    signature = ({name: spec for name in MODEL_INPUTS}, spec)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    # A known length lets Keras show progress and start each epoch with a fresh pass.
    n_batches = -(-len(trees) // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    return with_epoch_options(dataset).prefetch(2)


def fit_treenet(config: Config, model: TreeNet, train_trees: Sequence[Tree],
                valid_trees: Sequence[Tree] | None, vocab: TreeVocab, callbacks=(),
                verbose="auto", epochs: int | None = None):
    """Compile (unless compiled) and ``model.fit`` per ``config.train``; returns the History.

    Early stopping / checkpoints are the caller's callbacks (``textclf.training``).
    """
    train = config.train
    if not model.compiled:
        compile_treenet(model, train, n_train=len(train_trees))
    root_only = config.model.tree_loss == "root"
    data = tree_dataset(train_trees, vocab, train.batch_size, shuffle=True, seed=train.seed,
                        bucketing=train.bucketing, root_only=root_only)
    valid = None
    if valid_trees:
        valid = tree_dataset(valid_trees, vocab, max(train.batch_size, 64),
                             root_only=root_only)
    return model.fit(data, validation_data=valid, epochs=epochs or train.epochs,
                     callbacks=list(callbacks), verbose=verbose, shuffle=False)


# ---------------------------------------------------------------- prediction


def _predict_fn(model: TreeNet):
    """One traced forward per model, with unknown (B, N): no retracing per batch shape.

    Kept on the model with ``object.__setattr__`` so Keras does not track it.
    """
    traced = getattr(model, "_textclf_predict", None)
    if traced is None:
        spec = tf.TensorSpec((None, None), tf.int32)
        traced = tf.function(lambda inputs: model(inputs, training=False),
                             input_signature=[{name: spec for name in MODEL_INPUTS}])
        object.__setattr__(model, "_textclf_predict", traced)
    return traced


def predict_trees(model: TreeNet, trees: Sequence[Tree], vocab: TreeVocab,
                  batch_size: int = 128) -> list[np.ndarray]:
    """Per-node class probabilities of each tree: a list of (n_nodes, C) arrays, input order.

    Trees are batched in order of height (less padding, fewer level steps) and
    put back in input order.
    """
    order = sorted(range(len(trees)), key=lambda i: (trees[i].height[-1], trees[i].n_nodes))
    out: list[np.ndarray | None] = [None] * len(trees)
    forward = _predict_fn(model)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        chunk = [trees[i] for i in rows]
        batch = trees_to_batch(chunk, vocab)
        probs = forward({name: tf.constant(batch[name]) for name in MODEL_INPUTS}).numpy()
        width = probs.shape[1]
        for row, (i, tree) in enumerate(zip(rows, chunk)):
            out[i] = probs[row, width - tree.n_nodes:]
    return out


def evaluate_trees(model: TreeNet, trees: Sequence[Tree], vocab: TreeVocab,
                   batch_size: int = 128) -> dict:
    """Root and all-node accuracy over the labelled roots / nodes of ``trees``.

    Returns ``{"accuracy": root accuracy, "all_nodes_accuracy": ..., "n_roots",
    "n_nodes", "root_probs": (T, C) array, "root_labels": (T,) array}``;
    ``root_probs``/``root_labels`` feed the generic metrics report (labels -1
    where a root has none).
    """
    node_probs = predict_trees(model, trees, vocab, batch_size)
    root_probs = np.stack([p[-1] for p in node_probs]) if node_probs else np.zeros((0, 0))
    root_labels = np.array([t.root_label for t in trees], dtype=np.int64)
    labels = np.concatenate([t.labels for t in trees]) if trees else np.zeros(0, np.int64)
    predicted = (np.concatenate([p.argmax(axis=1) for p in node_probs])
                 if trees else np.zeros(0, np.int64))
    has_root = root_labels >= 0
    has_label = labels >= 0
    root_hits = root_probs.argmax(axis=1)[has_root] == root_labels[has_root] if trees else []
    return {"accuracy": float(np.mean(root_hits)) if np.any(has_root) else float("nan"),
            "all_nodes_accuracy": (float(np.mean(predicted[has_label] == labels[has_label]))
                                   if np.any(has_label) else float("nan")),
            "n_roots": int(has_root.sum()), "n_nodes": int(has_label.sum()),
            "root_probs": root_probs, "root_labels": root_labels}


# ---------------------------------------------------------------- reference checks


def numpy_treenet_from_keras(model: TreeNet):
    """The NumPy :class:`~textclf.reference.treenet.TreeNetReference` with ``model``'s
    weights in float64 (inference: no dropout)."""
    from ..reference.treenet import TreeNetReference

    def f64(variable):
        return np.array(keras.ops.convert_to_numpy(variable), dtype=np.float64)

    params = {"embedding": f64(model.embedding.embeddings),
              "kernel": f64(model.encoder.kernel), "bias": f64(model.encoder.bias),
              "output_kernel": f64(model.classifier.kernel),
              "output_bias": f64(model.classifier.bias)}
    if model.cell == "tree_lstm":
        params["recurrent_kernel"] = f64(model.encoder.recurrent_kernel)
    return TreeNetReference(params, cell=model.cell, l2=model.l2)


def keras_gradients(model: TreeNet, batch: dict[str, np.ndarray],
                    root_only: bool = False) -> tuple[float, dict[str, np.ndarray]]:
    """Summed node loss (+ L2, as the reference defines it) and its gradients, by
    ``tf.GradientTape``, dense, under the reference's parameter names."""
    labels = batch["labels"]
    if root_only:
        labels = root_only_labels(labels)
    names = {"embedding": model.embedding.embeddings, "kernel": model.encoder.kernel,
             "bias": model.encoder.bias, "output_kernel": model.classifier.kernel,
             "output_bias": model.classifier.bias}
    if model.cell == "tree_lstm":
        names["recurrent_kernel"] = model.encoder.recurrent_kernel
    inputs = {name: tf.constant(batch[name]) for name in MODEL_INPUTS}
    variables = list(names.values())
    with tf.GradientTape() as tape:
        probs = model(inputs, training=False)
        labels_t = tf.constant(labels)
        valid = labels_t >= 0
        picked = tf.gather(probs, tf.maximum(labels_t, 0), batch_dims=2)
        loss = -tf.reduce_sum(tf.where(valid, tf.math.log(picked), tf.zeros_like(picked)))
        if model.l2:
            loss += model.l2 * tf.add_n([tf.reduce_sum(tf.square(names[n].value))
                                         for n in ("kernel", "recurrent_kernel", "output_kernel")
                                         if n in names])
    grads = tape.gradient(loss, [v.value for v in variables])
    out = {}
    for name, grad in zip(names, grads):
        if isinstance(grad, tf.IndexedSlices):
            grad = tf.convert_to_tensor(grad)
        out[name] = grad.numpy()
    return float(loss.numpy()), out


def compare_with_reference(model: TreeNet, trees: Sequence[Tree], vocab: TreeVocab,
                           gradients: bool = False, root_only: bool = False) -> dict:
    """Max differences between ``model`` and its float64 NumPy twin on ``trees``.

    Returns ``{name: {"max_abs": float, "max_rel": float, "ok": bool}}`` for
    ``node_vectors`` and ``probabilities`` (float32 tolerance atol = rtol =
    1e-5), and with ``gradients`` the loss and every parameter's gradient
    (``grad/<name>``; rtol 1e-4, atol 1e-5). The float64 reference sets the
    truth; ``ok`` is ``|tf - ref| <= atol + rtol |ref|`` everywhere.
    """
    reference = numpy_treenet_from_keras(model)
    batch = trees_to_batch(list(trees), vocab)
    inputs = {name: tf.constant(batch[name]) for name in MODEL_INPUTS}
    mask = batch["height"] >= 0
    ours_h = model.encode(inputs, training=False).numpy()
    ours_p = model(inputs, training=False).numpy()
    ref = reference.forward(batch)
    report = {"node_vectors": _difference(ours_h[mask], ref.h[mask], 1e-5, 1e-5),
              "probabilities": _difference(ours_p[mask], ref.probs[mask], 1e-5, 1e-5)}
    if gradients:
        loss, grads = keras_gradients(model, batch, root_only)
        ref_loss, ref_grads = reference.loss_and_gradients(batch, root_only)
        report["loss"] = _difference(np.array([loss]), np.array([ref_loss]), 1e-4, 1e-5)
        for name in ref_grads:
            report[f"grad/{name}"] = _difference(grads[name], ref_grads[name], 1e-4, 1e-5)
    return report


def _difference(ours: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> dict:
    diff = np.abs(np.asarray(ours, dtype=np.float64) - ref)
    if diff.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0, "ok": True}
    rel = diff / np.maximum(np.abs(ref), 1e-12)
    return {"max_abs": float(diff.max()), "max_rel": float(rel.max()),
            "ok": bool(np.all(diff <= atol + rtol * np.abs(ref)))}
