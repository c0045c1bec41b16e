"""LSTM inference with the embedding folded into the input projection.

:class:`~textclf.models.fused_lstm.FusedLSTM` computes the first layer's input
projection ``x_t @ W + b`` for all steps as one matmul. In a trained model
``x_t`` is a row of the embedding, so once training is over

    (E @ W + b) * gate_scale                       (V, 4U)

is a fixed table: one row lookup per token replaces 2·E·4U floating-point
operations (half of what a step costs in prediction at E = U), and the
recurrence starts from the looked-up rows. The table takes V · 4U floats (41 MB
at a 20,000-word vocabulary and 128 units); :func:`folded_predict_fn` declines
above ``max_table_bytes``, on a GPU (cuDNN's kernel is faster there) and for
first layers the fused loop does not cover (GRU, SimpleRNN, bidirectional,
``go_backwards``, other activations), and the caller keeps the plain model.

Where textclf's native ops are built (:mod:`textclf.kernels`), the first
layer's recurrence runs in their forward op, with Keras' masking. Otherwise
the first layer's loop is the fused layer's step (one sigmoid over the
gate-scaled pre-activations) without the masking: the vectorizer pads at the
end only, so no padding step comes before a real one, and what the loop
computes at padding steps is ignored by the masked mean pooling and by any
later layer's mask (Keras' loop carries the states through padding instead:
two selects per step that prediction does not need). Everything after the
first layer's recurrence (further recurrent layers, masked mean pooling, the
softmax layer) is the saved model's own layers, so only the order of the
additions in the projection differs: tests/test_folded_lstm.py requires the
same probabilities to 1e-5 (float32) and 1e-2 (bfloat16) on every kind of
padding. ``make bench`` times both forms (BENCHMARKS.md, "Other prediction
settings").
"""

from __future__ import annotations

from .folded_cnn import MAX_TABLE_BYTES, rounded

_HEAD_LAYERS = ("embedding", "rnn_1", "mean_pool", "dropout", "output")


def folded_predict_fn(model, max_table_bytes: int = MAX_TABLE_BYTES):
    """A ``tf.function`` texts (B,) string -> probabilities (B, C) for a textclf
    end-to-end recurrent ``model`` (layers ``vectorizer``, ``truncate``, then the
    classifier of textclf.models.rnn) whose first recurrent layer is an LSTM the
    fused loop computes exactly; None otherwise, or when the table would pass
    ``max_table_bytes``.
    """
    import keras
    import tensorflow as tf

    from ..kernels import native_lstm_available
    from .fused_lstm import (
        FusedLSTM,
        fused_path_applies,
        gate_scale,
        lstm_step,
        native_lstm,
        split_batch,
    )

    names = {layer.name for layer in model.layers}
    if not {"vectorizer", "truncate"} <= names:
        return None
    classifier = model.layers[-1]
    if not isinstance(classifier, keras.Model) or \
            not set(_HEAD_LAYERS) <= {layer.name for layer in classifier.layers}:
        return None
    first = classifier.get_layer("rnn_1")
    if not (isinstance(first, keras.layers.LSTM) and not first.go_backwards
            and fused_path_applies(first, training=False)):
        return None
    units = first.units
    if classifier.get_layer("embedding").input_dim * 4 * units * 4 > max_table_bytes:
        return None

    # Under mixed precision FusedLSTM multiplies the embeddings and the scaled
    # kernel rounded to the compute dtype and rounds the product (float32 sums
    # inside), then adds the float32 bias: the table repeats those roundings.
    dtype = first.compute_dtype
    scale = gate_scale(units, tf.float32).numpy()  # (4U,)
    cell = first.cell
    embeddings = rounded(classifier.get_layer("embedding").embeddings.numpy(), dtype)  # (V, E)
    kernel = rounded(cell.kernel.numpy() * scale, dtype)  # (E, 4U)
    table = tf.constant(rounded(embeddings @ kernel, dtype) + cell.bias.numpy() * scale)
    recurrent_kernel = tf.constant(cell.recurrent_kernel.numpy() * scale)  # (U, 4U)
    groups = FusedLSTM.batch_groups
    native = getattr(first, "native_loop", True) and native_lstm_available(tf.float32)

    vectorizer, truncate = model.get_layer("vectorizer"), model.get_layer("truncate")
    later_layers = [layer for layer in classifier.layers
                    if layer.name.startswith("rnn_") and layer is not first]
    mean_pool = classifier.get_layer("mean_pool")
    dropout, output = classifier.get_layer("dropout"), classifier.get_layer("output")

    def first_layer(ids):
        """(B', T) token ids, right-padded -> the first layer's outputs (B', T, U)
        float32, exact at every real token (padding steps: see the module doc)."""
        time_major = tf.transpose(ids)  # (T, B')
        projected = tf.gather(table, time_major)  # (T, B', 4U)
        zeros = tf.zeros([tf.shape(ids)[0], units])
        written = tf.TensorArray(tf.float32, size=tf.shape(projected)[0], element_shape=zeros.shape)

        def step(t, h, c, outputs):
            _, c, h = lstm_step(projected[t] + tf.matmul(h, recurrent_kernel), c)
            return t + 1, h, c, outputs.write(t, h)

        *_, outputs = tf.while_loop(lambda t, *_: t < tf.shape(projected)[0], step,
                                    (tf.constant(0), zeros, zeros, written), parallel_iterations=32)
        return tf.transpose(outputs.stack(), [1, 0, 2])

    def native_first_layer(ids, mask):
        """:func:`first_layer` in textclf's native forward op (which carries the
        states through padding as Keras does, at no cost worth saving)."""
        zeros = tf.zeros([tf.shape(ids)[0], units])
        outputs, _, _ = native_lstm(tf.gather(table, ids), tf.zeros([4 * units]),
                                    recurrent_kernel, zeros, zeros, tf.cast(mask, tf.float32),
                                    training=False)
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def predict(texts):
        ids = tf.cast(truncate(vectorizer(texts)), tf.int32)  # (B, T)
        mask = ids != 0  # the embedding's mask_zero
        if native:
            x = native_first_layer(ids, mask)
        else:  # one slice of rows per core, their loops side by side (as FusedLSTM does)
            x = tf.concat([first_layer(part) for (part,) in split_batch([ids], groups)], axis=0)
        for layer in later_layers:
            x = layer(x, mask=mask, training=False)
        x = dropout(mean_pool(x, mask=mask), training=False)  # dropout: the identity here
        return tf.cast(output(x), tf.float32)

    return predict
