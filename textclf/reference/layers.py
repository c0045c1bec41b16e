"""The non-recurrent layers of textclf's models, forward and backward, in NumPy.

Shapes: B batch, T tokens, E embedding size, K kernel width, C input
channels, F filters, T' = T - K + 1 "valid" windows, D features, N classes.
Each ``*_backward`` takes the gradient of the loss w.r.t. the layer's output
and returns the gradients w.r.t. its inputs and weights (Keras weight names).

Keras layouts: Embedding ``embeddings`` (V, E); Conv1D ``kernel`` (K, C, F),
``bias`` (F,), channels last, cross-correlation (no flip):

    y[b, t, f] = act(bias[f] + sum_{k, c} x[b, t + k, c] kernel[k, c, f]),   t < T'

Dense ``kernel`` (D, N), ``bias`` (N,): logits = x @ kernel + bias.
"""

from __future__ import annotations

import numpy as np

from . import activations


# --- embedding and padding --------------------------------------------------

def end_padding(ids: np.ndarray, pad: int) -> np.ndarray:
    """``EndPadding``: (B, T) -> (B, T + pad), the new columns 0 (padding)."""
    return np.pad(ids, [(0, 0), (0, pad)])


def embedding_forward(embeddings: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(V, E), (B, T) int -> (B, T, E). Row 0 is *not* zeroed (Keras' mask_zero
    only produces a mask; the layers after it must respect the mask)."""
    return embeddings[ids]


def embedding_backward(embeddings_shape: tuple, ids: np.ndarray, d_out: np.ndarray) -> np.ndarray:
    """d_out (B, T, E) -> d_embeddings (V, E): a repeated id accumulates its rows."""
    grad = np.zeros(embeddings_shape, dtype=d_out.dtype)
    np.add.at(grad, ids.reshape(-1), d_out.reshape(-1, embeddings_shape[1]))
    return grad


# --- Conv1D, valid padding ---------------------------------------------------

def conv1d_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                   activation: str = "relu") -> tuple[np.ndarray, tuple]:
    """x (B, T, C), kernel (K, C, F), bias (F,) -> y (B, T', F), cache.

    One (B T', C) @ (C, F) product per kernel offset k: the loop runs over the
    kernel width, never over batch elements or positions.
    """
    width = kernel.shape[0]
    steps = x.shape[1] - width + 1
    if steps < 1:
        raise ValueError(f"Conv1D of width {width} needs at least {width} steps; got {x.shape[1]}")
    z = np.broadcast_to(bias, (x.shape[0], steps, kernel.shape[2])).copy()
    for k in range(width):
        z += x[:, k:k + steps] @ kernel[k]
    y = activations.apply(activation, z)
    return y, (x, z, y, activation)


def conv1d_backward(kernel: np.ndarray, d_y: np.ndarray, cache: tuple):
    """d_y (B, T', F) -> dx (B, T, C), {"kernel": (K, C, F), "bias": (F,)}."""
    x, z, y, activation = cache
    width = kernel.shape[0]
    steps = z.shape[1]
    d_z = d_y * activations.derivative(activation, z, y)
    flat_dz = d_z.reshape(-1, d_z.shape[-1])  # (B T', F)
    dx = np.zeros_like(x, dtype=d_y.dtype)
    d_kernel = np.empty_like(kernel, dtype=d_y.dtype)
    for k in range(width):
        dx[:, k:k + steps] += d_z @ kernel[k].T
        d_kernel[k] = x[:, k:k + steps].reshape(-1, x.shape[-1]).T @ flat_dz
    return dx, {"kernel": d_kernel, "bias": flat_dz.sum(axis=0)}


# --- pooling ----------------------------------------------------------------

def length_masked_max_pool(features: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``LengthMaskedMaxPooling``: features (B, T', F), ids (B, T) -> (B, F), cache.

    Max over windows t < max(length, 1), length = count of non-zero ids; the
    other windows are replaced by -1e9, as in the Keras layer.
    """
    lengths = np.maximum(np.count_nonzero(ids, axis=1), 1)  # (B,)
    valid = np.arange(features.shape[1])[None, :] < lengths[:, None]  # (B, T')
    masked = np.where(valid[..., None], features, features.dtype.type(-1e9))
    pooled = masked.max(axis=1)
    return pooled, (masked, pooled, valid)


def length_masked_max_pool_backward(d_pooled: np.ndarray, cache: tuple,
                                    ties: str = "shared") -> np.ndarray:
    """d_pooled (B, F) -> d_features (B, T', F).

    ``ties="shared"``: tied windows share the gradient equally, as TensorFlow's
    gradient of ``reduce_max`` does (ReLU features often tie at 0; repeated
    n-grams tie exactly). ``ties="first"``: the first maximal window takes it
    all, as ``MaxPooledConv1D(pool_gradient="argmax")`` does. The layer takes
    the argmax of z before ``f(z + b)``, this one of the features after it:
    the same window wherever ``f`` is increasing, and where relu is flat no
    gradient passes either way.
    """
    masked, pooled, valid = cache
    if ties == "first":
        first = masked.argmax(axis=1)  # (B, F): the first maximum, never a masked window
        d_features = np.zeros(masked.shape, dtype=d_pooled.dtype)
        np.put_along_axis(d_features, first[:, None, :], d_pooled[:, None, :], axis=1)
        return d_features
    winners = (masked == pooled[:, None, :]) & valid[..., None]
    share = winners / np.maximum(winners.sum(axis=1, keepdims=True), 1)
    return share.astype(d_pooled.dtype) * d_pooled[:, None, :]


def masked_mean_pool(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``MaskedMeanPooling``: x (B, T, D), mask (B, T) -> sum_t m x / max(sum_t m, 1), (B, D).

    Without a mask: the plain mean over T. An empty row gives zeros.
    """
    if mask is None:
        return x.mean(axis=1)
    weights = mask.astype(x.dtype)[..., None]  # (B, T, 1)
    return (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)


def masked_mean_pool_backward(d_pooled: np.ndarray, mask: np.ndarray | None,
                              steps: int) -> np.ndarray:
    """d_pooled (B, D) -> dx (B, T, D)."""
    if mask is None:
        return np.repeat(d_pooled[:, None, :] / steps, steps, axis=1)
    weights = mask.astype(d_pooled.dtype)[..., None]
    return weights * (d_pooled / np.maximum(weights.sum(axis=1), 1))[:, None, :]


# --- dense softmax head and loss -------------------------------------------

def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (B, N), shifted by the row max so exp cannot overflow."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def dense_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                  activation: str = "softmax") -> np.ndarray:
    """x (B, D), kernel (D, N), bias (N,) -> act(x kernel + bias) (B, N)."""
    logits = x @ kernel + bias
    if activation == "softmax":
        return softmax(logits)
    return activations.apply(activation, logits)


def dense_backward(x: np.ndarray, kernel: np.ndarray, d_logits: np.ndarray):
    """d_logits (B, N) w.r.t. the pre-activation -> dx (B, D), {"kernel", "bias"}."""
    return d_logits @ kernel.T, {"kernel": x.T @ d_logits, "bias": d_logits.sum(axis=0)}


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the batch of -log p[b, labels[b]]: probs (B, N), labels (B,) int."""
    picked = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(picked)))


def softmax_cross_entropy_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d(mean cross-entropy)/d logits = (probs - onehot(labels)) / B, shape (B, N)."""
    grad = probs.copy()
    grad[np.arange(len(labels)), labels] -= 1.0
    return grad / len(labels)
