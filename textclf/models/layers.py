"""The few layers Keras does not ship, each registered so a saved model loads
with ``safe_mode=True`` (no Lambda layers, no pickled code).

Token ids use 0 for padding and sit left-aligned in their row (TextVectorization
pads on the right), so a document's length is the count of non-zero ids.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textclf")
class TruncateTokens(keras.layers.Layer):
    """Keep at most ``max_length`` tokens of each row, and at least one column:
    (B, T) -> (B, max(1, min(T, max_length))).

    TextVectorization with ``output_sequence_length=None`` pads each batch only to
    its longest document, which is what makes short-text prediction cheap; this
    layer adds the cap that a fixed output length would have given. A batch of
    empty texts vectorizes to (B, 0), on which Keras' recurrent layers fail
    (they read the first step); it gets one padding column instead, masked like
    any padding, so every model gives an empty text what it gives it in a
    batch with longer ones.
    """

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)

    def call(self, ids):
        ids = ids[:, : self.max_length]
        missing = ops.maximum(1 - ops.shape(ids)[1], 0)  # 1 for a (B, 0) batch, else 0
        return ops.concatenate([ids, ops.zeros((ops.shape(ids)[0], missing), ids.dtype)], axis=1)

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else max(1, min(steps, self.max_length)))

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


@keras.saving.register_keras_serializable(package="textclf")
class EndPadding(keras.layers.Layer):
    """Append ``pad`` padding ids to every row: (B, T) int -> (B, T + pad).

    With ``pad = max(kernel_sizes)`` every Conv1D branch has a window starting
    at each real token (and one window for an empty document), however the
    batch was padded, which :class:`LengthMaskedMaxPooling` relies on.
    """

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, ids):
        return ops.pad(ids, [[0, 0], [0, self.pad]])

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else steps + self.pad)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


def valid_windows(ids, windows):
    """(B, T) ids -> (B, windows) bool: window t starts at a real token, t < max(length, 1)."""
    lengths = ops.sum(ops.cast(ops.not_equal(ids, 0), "int32"), axis=1)
    lengths = ops.maximum(lengths, 1)  # (B,)
    positions = ops.arange(windows, dtype="int32")  # (T',)
    return ops.expand_dims(positions, 0) < ops.expand_dims(lengths, 1)


def _very_negative(dtype):
    return ops.cast(-1e9 if dtype != "float16" else -6e4, dtype)


@keras.saving.register_keras_serializable(package="textclf")
class LengthMaskedMaxPooling(keras.layers.Layer):
    """Max over time of conv features whose window starts at a real token.

    Inputs ``[features (B, T', F), ids (B, T)]`` where ``features`` is a "valid"
    Conv1D over ``EndPadding(ids)``. Window ``t`` counts when
    ``t < max(length, 1)``: windows that start in the padding are excluded, so a
    document's features do not depend on how long its batch-mates are (plain
    GlobalMaxPooling1D lets padding windows win the max, and the result changes
    with the batch's padding). An empty document keeps its first window.
    Output (B, F).
    """

    def call(self, inputs):
        features, ids = inputs
        valid = valid_windows(ids, ops.shape(features)[1])
        masked = ops.where(ops.expand_dims(valid, -1), features, _very_negative(features.dtype))
        return ops.max(masked, axis=1)

    def compute_output_shape(self, input_shapes):
        features_shape = input_shapes[0]
        return (features_shape[0], features_shape[2])


#: Conv activations that never decrease, so that max_t f(z_t + b) = f(max_t z_t + b).
MONOTONE_ACTIVATIONS = ("relu", "tanh", "elu", "linear")


@keras.saving.register_keras_serializable(package="textclf")
class MaxPooledConv1D(keras.layers.Conv1D):
    """``Conv1D(activation=f)`` then :class:`LengthMaskedMaxPooling`, with the
    bias and ``f`` applied after the max: ``[x (B, T + pad, E), ids (B, T)] ->
    f(max_t (x * W)_t + b)`` (B, F).

    For a non-decreasing ``f`` (:data:`MONOTONE_ACTIVATIONS`) this equals the
    two layers exactly: max_t f(z_t + b) = f(max_t z_t + b), in floating point
    too, since rounding never reverses an order. The bias, the activation and
    their gradients then touch (B, F) instead of (B, T', F), and the max's
    gradient is written out (:func:`masked_max_over_time`): bbc_cnn trains
    1.10-1.19x faster than with the two layers (four runs of ``make bench``'s
    ablation, ``model.pool_in_conv: false``). Same weights and options as ``Conv1D``.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        name = keras.activations.serialize(self.activation)
        if name not in MONOTONE_ACTIVATIONS:
            raise ValueError(f"MaxPooledConv1D needs a non-decreasing activation "
                             f"({', '.join(MONOTONE_ACTIVATIONS)}), not {name}")
        # valid_windows counts the windows of a valid, stride-1, undilated
        # convolution over (B, T, E) inputs, with a bias to add after the max.
        if (self.padding != "valid" or self.strides != (1,) or self.dilation_rate != (1,)
                or self.data_format != "channels_last" or not self.use_bias):
            raise ValueError("MaxPooledConv1D is a valid, stride-1, undilated, "
                             "channels-last Conv1D with a bias")
        self.input_spec = None  # two inputs; Conv1D's spec describes one

    def build(self, input_shape):
        super().build(input_shape[0])
        self.input_spec = None

    def call(self, inputs):
        x, ids = inputs
        features = self.convolution_op(x, self.kernel)  # (B, T', F), no bias yet
        pooled = masked_max_over_time(features, valid_windows(ids, ops.shape(features)[1]))
        return self.activation(pooled + self.bias)

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape[0], (list, tuple)):  # Conv1D.build checks x's shape
            return super().compute_output_shape(input_shape)
        return (input_shape[0][0], self.filters)


def masked_max_over_time(features, valid):
    """Max over the valid windows: features (B, T', F), valid (B, T') -> (B, F).

    Gradient as TensorFlow's ``reduce_max`` through a masking select gives it
    (ties share equally; masked windows get nothing), written out with fewer
    passes over (B, T', F) than TensorFlow's generic gradients take.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def masked_max(features):
        masked = tf.where(valid[:, :, None], features, _very_negative(features.dtype))
        pooled = tf.reduce_max(masked, axis=1)

        def grad(d_pooled):
            winners = tf.logical_and(tf.equal(masked, pooled[:, None, :]), valid[:, :, None])
            # Counts in at least float32 (bfloat16 holds integers exactly only up
            # to 256); every row has a valid window, so each count is at least 1.
            wide = tf.float64 if d_pooled.dtype == tf.float64 else tf.float32
            counts = tf.reduce_sum(tf.cast(winners, wide), axis=1)  # (B, F)
            share = tf.cast(tf.cast(d_pooled, wide) / counts, d_pooled.dtype)
            return tf.cast(winners, d_pooled.dtype) * share[:, None, :]

        return pooled, grad

    return masked_max(features)


@keras.saving.register_keras_serializable(package="textclf")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over the unpadded time steps: (B, T, D) with mask (B, T) -> (B, D).

    ``sum_t m_t x_t / max(sum_t m_t, 1)``: padding is multiplied out (cuDNN
    writes zeros at masked steps, the generic kernel repeats the last output;
    both give the same mean) and an empty document gives zeros, not the NaN of
    ``GlobalAveragePooling1D``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)  # (B, T, 1)
        total = ops.sum(inputs * weights, axis=1)  # (B, D)
        count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1, inputs.dtype))  # (B, 1)
        return total / count

    def compute_mask(self, inputs, mask=None):
        return None  # the time axis is gone

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
