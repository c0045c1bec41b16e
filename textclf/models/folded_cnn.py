"""TextCNN inference with the embedding folded into the convolutions.

A Conv1D of width K over embedded tokens is, at window ``t``,

    conv_K[t] = b_K + sum_{j<K} E[id_{t+j}] @ W_K[j]          (W_K[j]: (E, F))

and once training is over ``E @ W_K[j]`` is a fixed (V, F) table. A row
lookup and F additions replace 2·E·F floating-point operations per token and
kernel offset (256x fewer at E = 128), so prediction costs memory reads
instead of convolutions. The tables take V · sum(K) · F floats (96 MB for
Kim's 3/4/5 x 100 filters and a 20,000-word vocabulary);
:func:`folded_predict_fn` declines above ``max_table_bytes`` and the caller
keeps the plain model. Building them is one (V, E) x (E, sum(K)·F) product
when a run is opened for prediction.

Everything after the convolutions (activation and length-masked max
pooling, in the model's order, dropout at inference, the softmax layer) is
the saved model's own layers and functions, so only the order of the
additions differs: tests/test_folded_cnn.py requires
the same probabilities to 1e-5 on every kind of padding.
"""

from __future__ import annotations

import numpy as np

MAX_TABLE_BYTES = 1 << 30


def folded_predict_fn(model, max_table_bytes: int = MAX_TABLE_BYTES):
    """A ``tf.function`` texts (B,) string -> probabilities (B, C) for a textclf
    end-to-end TextCNN ``model`` (layers ``vectorizer``, ``truncate``,
    ``textcnn``), or None when ``model`` is not one or its tables would pass
    ``max_table_bytes``.
    """
    import tensorflow as tf

    names = {layer.name for layer in model.layers}
    if not {"vectorizer", "truncate", "textcnn"} <= names:
        return None
    vectorizer, truncate = model.get_layer("vectorizer"), model.get_layer("truncate")
    cnn = model.get_layer("textcnn")
    convs = sorted((layer for layer in cnn.layers if layer.name.startswith("conv_")),
                   key=lambda layer: layer.kernel_size[0])
    dtype = convs[0].compute_dtype  # float32, or bfloat16/float16 under mixed precision
    # Under mixed precision the convolutions multiply inputs and kernels rounded to
    # ``dtype`` (products and sums in float32) and round their output: the
    # tables are built from the same rounded values and the sums rounded alike.
    embeddings = rounded(cnn.get_layer("embedding").embeddings.numpy(), dtype)  # (V, E)
    filters = sum(int(np.prod(layer.kernel.shape[::2])) for layer in convs)  # sum K * F
    if embeddings.shape[0] * filters * 4 > max_table_bytes:
        return None
    pad = cnn.get_layer("end_padding").pad
    branches = []
    for conv in convs:
        kernel = rounded(conv.kernel.numpy(), dtype)  # (K, E, F)
        tables = [tf.constant(embeddings @ kernel[j]) for j in range(kernel.shape[0])]
        branches.append((conv, tables, tf.constant(conv.bias.numpy(), dtype),
                         pooling(cnn, conv)))
    concat = cnn.get_layer("concat") if len(convs) > 1 else None
    head = cnn.get_layer("output")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def predict(texts):
        ids = tf.cast(truncate(vectorizer(texts)), tf.int32)  # (B, T)
        padded = tf.pad(ids, [[0, 0], [0, pad]])  # (B, T + pad), as EndPadding
        pooled = []
        for conv, tables, bias, pool in branches:
            windows = tf.shape(padded)[1] - len(tables) + 1  # a "valid" conv's output length
            total = tf.add_n([tf.gather(table, padded[:, j:j + windows])
                              for j, table in enumerate(tables)])  # (B, T', F) float32
            pooled.append(pool(tf.cast(total, dtype), bias, ids))  # (B, F)
        features = concat(pooled) if concat is not None else pooled[0]
        return tf.cast(head(features), tf.float32)  # dropout is the identity here

    return predict


def pooling(cnn, conv):
    """The branch's f(conv + b) and max over time, as the model computes them:
    (features without bias (B, T', F), bias (F,), ids (B, T)) -> (B, F)."""
    import tensorflow as tf

    from .layers import MaxPooledConv1D, masked_max_over_time, valid_windows

    if isinstance(conv, MaxPooledConv1D):  # bias and activation after the max
        return lambda features, bias, ids: conv.activation(masked_max_over_time(
            features, valid_windows(ids, tf.shape(features)[1])) + bias)
    max_pool = cnn.get_layer(f"max_pool_{conv.kernel_size[0]}")
    return lambda features, bias, ids: max_pool([conv.activation(features + bias), ids])


def rounded(values, dtype: str) -> np.ndarray:
    """``values`` rounded to ``dtype`` and back to float32 (a no-op for float32)."""
    import tensorflow as tf

    return tf.cast(tf.cast(tf.constant(values, tf.float32), dtype), tf.float32).numpy()
