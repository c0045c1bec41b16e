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
    """Drop the stop words' ids, then keep at most ``max_length`` tokens of each
    row, and at least one column: (B, T) -> (B, max(1, min(T', max_length))),
    T' = the longest row left.

    TextVectorization with ``output_sequence_length=None`` pads each batch only to
    its longest document, which is what makes short-text prediction cheap; this
    layer adds the cap that a fixed output length would have given. A batch of
    empty texts vectorizes to (B, 0), on which Keras' recurrent layers fail
    (they read the first step); it gets one padding column instead, masked like
    any padding, so every model gives an empty text what it gives it in a
    batch with longer ones.

    ``stop_words`` = n: ids 2 .. n + 1 are the recipe's ``text.stop_words``
    (textclf.text.build_vectorizer puts them there); they are removed before
    the cut, as in training (textclf.text.vectorize).
    """

    def __init__(self, max_length: int, stop_words: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)
        self.stop_words = int(stop_words)

    def call(self, ids):
        if self.stop_words:
            from ..text import remove_stop_words

            ids = remove_stop_words(ids, self.stop_words).to_tensor(default_value=0)
        ids = ids[:, : self.max_length]
        missing = ops.maximum(1 - ops.shape(ids)[1], 0)  # 1 for a (B, 0) batch, else 0
        return ops.concatenate([ids, ops.zeros((ops.shape(ids)[0], missing), ids.dtype)], axis=1)

    def compute_output_shape(self, input_shape):
        steps = None if self.stop_words else input_shape[1]
        return (input_shape[0], None if steps is None else max(1, min(steps, self.max_length)))

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length,
                "stop_words": self.stop_words}


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

#: How MaxPooledConv1D's max passes its gradient back (``model.pool_gradient``).
POOL_GRADIENTS = ("argmax", "shared")


@keras.saving.register_keras_serializable(package="textclf")
class MaxPooledConv1D(keras.layers.Conv1D):
    """``Conv1D(activation=f)`` then :class:`LengthMaskedMaxPooling`, with the
    bias and ``f`` applied after the max: ``[x (B, T + pad, E), ids (B, T)] ->
    f(max_t (x * W)_t + b)`` (B, F).

    For a non-decreasing ``f`` (:data:`MONOTONE_ACTIVATIONS`) this equals the
    two layers exactly: max_t f(z_t + b) = f(max_t z_t + b), in floating point
    too, since rounding never reverses an order. The bias, the activation and
    their gradients then touch (B, F) instead of (B, T', F): bbc_cnn trains
    1.10-1.19x faster than with the two layers (``make bench``'s ablation,
    ``model.pool_in_conv: false``). Same weights and options as ``Conv1D``.

    ``pool_gradient`` says how the max passes its gradient back:

    - ``"argmax"`` (default): to one winning window per (example, filter), as
      PyTorch's max pooling does; the backward pass then reads only those
      B x F windows (:func:`conv_max_over_time`) instead of running the
      convolution's two dense backprops over (B, T', F).
    - ``"shared"``: shared equally among tied windows, as TensorFlow's
      ``reduce_max`` does, through the dense backprops
      (:func:`masked_max_over_time`).

    Without ties both are the same gradient (to rounding). Ties come from
    repeated n-grams, and in bfloat16 (8 significant bits) from rounding too.
    """

    def __init__(self, filters, kernel_size, pool_gradient: str = "argmax", **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if pool_gradient not in POOL_GRADIENTS:
            raise ValueError(f"pool_gradient must be one of {', '.join(POOL_GRADIENTS)}, "
                             f"not {pool_gradient!r}")
        self.pool_gradient = pool_gradient
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
        windows = ops.shape(x)[1] - self.kernel_size[0] + 1
        valid = valid_windows(ids, windows)  # (B, T')
        kernel = ops.cast(self.kernel, self.compute_dtype)  # bfloat16 under mixed precision
        if self.pool_gradient == "argmax":
            pooled = conv_max_over_time(x, kernel, valid, self.convolution_op)
        else:
            features = self.convolution_op(x, kernel)  # (B, T', F), no bias yet
            pooled = masked_max_over_time(features, valid)
        return self.activation(pooled + self.bias)

    def get_config(self):
        return {**super().get_config(), "pool_gradient": self.pool_gradient}

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


def conv_max_over_time(x, kernel, valid, convolution):
    """max_t of a valid, stride-1 convolution over the valid windows, with the
    gradient sent to one winning window per (example, filter).

    x (B, T, E), kernel (K, E, F), valid (B, T') bool with T' = T - K + 1,
    ``convolution(x, kernel)`` -> (B, T', F). Returns (B, F).

    The max passes its gradient to the window ``w[b, f]`` that won it, so the
    convolution's gradients need only the B x F winning windows:

    - dkernel[k, e, f] = sum_b d[b, f] x[b, w[b, f] + k, e]: a gather of the
      windows and F products of (1 x B) @ (B x K*E);
    - dx[b, w[b, f] + k, :] += d[b, f] kernel[k, :, f]: B x F x K rows of E,
      summed into place in at least float32.

    That is O(B F K E) work, where the dense backprops (what ``"shared"``
    runs) are O(B T' F K E) each.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def conv_max(x, kernel):
        features = convolution(x, kernel)  # (B, T', F)
        masked = tf.where(valid[:, :, None], features, _very_negative(features.dtype))
        # Compared in float32 (exact for 16-bit floats), where a CPU's argmax is faster.
        scores = masked if masked.dtype in (tf.float32, tf.float64) else tf.cast(masked, tf.float32)
        winners = tf.argmax(scores, axis=1, output_type=tf.int32)  # (B, F)
        batch, windows, filters = tf.shape(masked)[0], tf.shape(masked)[1], tf.shape(masked)[2]
        flat_winners = ((tf.range(batch)[:, None] * windows + winners) * filters
                        + tf.range(filters)[None, :])  # (B, F) into masked, flattened
        pooled = tf.gather(tf.reshape(masked, [-1]), flat_winners)  # (B, F): the max

        def grad(d_pooled):
            steps, dim, width = tf.shape(x)[1], tf.shape(x)[2], tf.shape(kernel)[0]
            # Row of x (flattened to (B*T, E)) under tap k of each winning window.
            starts = winners + (tf.range(batch) * steps)[:, None]  # (B, F)
            rows = starts[:, :, None] + tf.range(width)  # (B, F, K)

            # dkernel, filter-major so that each filter is one (1 x B) @ (B x K*E).
            flat_x = tf.reshape(x, [-1, dim])
            windows = tf.gather(flat_x, tf.transpose(rows, [1, 0, 2]))  # (F, B, K, E)
            windows = tf.reshape(windows, [filters, batch, width * dim])
            d_kernel = tf.matmul(tf.transpose(d_pooled)[:, None, :], windows)  # (F, 1, K*E)
            d_kernel = tf.transpose(tf.reshape(d_kernel, [filters, width, dim]), [1, 2, 0])

            # dx: each winning window adds d * its filter's taps; summed in at
            # least float32, as a dense backprop accumulates.
            wide = tf.float64 if x.dtype == tf.float64 else tf.float32
            taps = tf.transpose(tf.cast(kernel, wide), [2, 0, 1])  # (F, K, E)
            added = tf.cast(d_pooled, wide)[:, :, None, None] * taps[None]  # (B, F, K, E)
            d_x = tf.math.unsorted_segment_sum(tf.reshape(added, [-1, dim]),
                                               tf.reshape(rows, [-1]), batch * steps)
            d_x = tf.reshape(tf.cast(d_x, x.dtype), tf.shape(x))
            return d_x, tf.cast(d_kernel, kernel.dtype)

        return pooled, grad

    # A tensor, not a variable: custom_gradient then differentiates the read.
    return conv_max(x, tf.convert_to_tensor(kernel))


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
        weights = ops.cast(mask, inputs.dtype)  # (B, T)
        # The masked sum as one batched product, (B, 1, T) x (B, T, D): a
        # single pass over the inputs each way, where multiplying first
        # writes a (B, T, D) product to sum and its gradient broadcasts, then
        # multiplies (about 1 ms less per step at bbc_rnn's shapes, 64 x 250 x 128).
        total = ops.squeeze(ops.matmul(ops.expand_dims(weights, 1), inputs), 1)  # (B, D)
        count = ops.maximum(ops.sum(weights, axis=1, keepdims=True),
                            ops.cast(1, inputs.dtype))  # (B, 1)
        return total / count

    def compute_mask(self, inputs, mask=None):
        return None  # the time axis is gone

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
