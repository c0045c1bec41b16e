"""A whole textclf token-id model (cnn or rnn) in NumPy: forward, loss, backward.

``NumpyModel(spec, weights)`` rebuilds what ``textclf.models.build_model``
builds, from a spec and weights (see :mod:`textclf.reference.keras_weights`
for both formats), without TensorFlow. Input: int token ids (B, T), 0 =
padding, right-padded. Output: class probabilities (B, N).

CNN (Kim 2014), per kernel width K, then concatenated::

    ids_p = EndPadding(ids)              (B, T + P)       P = max(K)
    x     = E[ids_p]                     (B, T + P, E)
    f_K   = act(conv1d_K(x))             (B, T + P - K + 1, F)
    p_K   = max_{t < max(len, 1)} f_K    (B, F)            len = #non-zero ids
    probs = softmax([p_K...] W + b)      (B, N)            dropout = identity

RNN::

    x_0   = E[ids], mask m = ids != 0    (B, T, E)
    x_l   = rnn_l(x_{l-1}, m)            (B, T, U or 2U)   l = 1..L
    pool  = sum_t m x_L / max(sum_t m, 1)  (B, U or 2U)
    probs = softmax(pool W + b)          (B, N)

Loss: mean cross-entropy over the batch, -1/B sum_b log probs[b, y_b]
(no regularisation term). ``backward(labels)`` after ``forward(ids)`` gives
its gradient for every weight key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import layers
from .keras_weights import build_recurrent
from .threads import limited_blas

SPEC_KEY = "__spec__"


def encode_json(obj) -> np.ndarray:
    """A JSON document as a uint8 array, storable in an .npz without pickle."""
    return np.frombuffer(json.dumps(obj, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def decode_json(array: np.ndarray):
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


class NumpyModel:
    """A textclf cnn/rnn classifier in NumPy.

    ``spec``: the dict of :func:`keras_weights.model_spec`; ``weights``:
    {``<layer>/<param>``: array}, cast once to ``dtype`` (float64 by default:
    the reference computes more exactly than the float32 Keras model it checks).
    ``blas_threads``: cap on NumPy's BLAS threads during forward/backward
    (1 by default, see :mod:`textclf.reference.threads`; None: no cap).
    After :meth:`forward`, ``activations_`` maps each Keras layer name to its
    output (``end_padding``, ``embedding``, ``conv_K``, ``max_pool_K`` where the
    model has one, ``concat``, ``rnn_l``, ``mean_pool``, ``dropout``, ``output``).
    """

    def __init__(self, spec: dict, weights: dict[str, np.ndarray], dtype=np.float64,
                 blas_threads: int | None = 1):
        if spec.get("type") not in ("cnn", "rnn"):
            raise ValueError(f"spec type must be cnn or rnn; got {spec.get('type')!r}")
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.weights = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in weights.items()}
        self.recurrent = [(s["name"], build_recurrent(s)) for s in spec.get("recurrent", [])]
        self.blas_threads = blas_threads
        self.activations_: dict[str, np.ndarray] = {}
        self._cache = None

    # --- construction -------------------------------------------------------

    @classmethod
    def from_keras(cls, model, dtype=np.float64) -> "NumpyModel":
        """From a Keras token-id model built by ``textclf.models.build_model``."""
        from .keras_weights import model_spec, model_weights
        spec = model_spec(model)
        return cls(spec, model_weights(model, spec), dtype)

    @classmethod
    def from_npz(cls, path, dtype=np.float64) -> "NumpyModel":
        """From an .npz written by :func:`textclf.reference.export.export_numpy_weights`."""
        with np.load(Path(path), allow_pickle=False) as data:
            spec = decode_json(data[SPEC_KEY])
            weights = {k: data[k] for k in data.files if not k.startswith("__")}
        return cls(spec, weights, dtype)

    def _params(self, prefix: str) -> dict:
        start = len(prefix) + 1
        return {k[start:]: v for k, v in self.weights.items() if k.startswith(prefix + "/")}

    # --- forward -------------------------------------------------------------

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """ids (B, T) int -> probabilities (B, N); fills ``activations_``."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be (batch, steps); got shape {ids.shape}")
        acts = {}
        with limited_blas(self.blas_threads):
            if self.spec["type"] == "cnn":
                features, cache = self._cnn_forward(ids, acts)
            else:
                features, cache = self._rnn_forward(ids, acts)
            acts["dropout"] = features  # inference: dropout is the identity
            w = self._params("output")
            probs = layers.dense_forward(features, w["kernel"], w["bias"],
                                         self.spec["output_activation"])
        acts["output"] = probs
        self.activations_ = acts
        self._cache = (ids, features, probs, cache)
        return probs

    def _cnn_forward(self, ids, acts):
        padded = layers.end_padding(ids, self.spec["pad"])
        acts["end_padding"] = padded
        x = layers.embedding_forward(self.weights["embedding/embeddings"], padded)
        acts["embedding"] = x
        pooled, caches = [], []
        for conv in self.spec["convs"]:
            w = self._params(conv["name"])
            y, conv_cache = layers.conv1d_forward(x, w["kernel"], w["bias"], conv["activation"])
            p, pool_cache = layers.length_masked_max_pool(y, ids)
            if conv.get("pool"):  # Conv1D, then max_pool_K
                acts[conv["name"]], acts[conv["pool"]] = y, p
            else:  # MaxPooledConv1D: the layer's output is the pooled features
                acts[conv["name"]] = p
            pooled.append(p)
            caches.append((conv_cache, pool_cache))
        features = pooled[0] if len(pooled) == 1 else np.concatenate(pooled, axis=-1)
        if len(pooled) > 1:
            acts["concat"] = features
        return features, (padded, caches)

    def _rnn_forward(self, ids, acts):
        x = layers.embedding_forward(self.weights["embedding/embeddings"], ids)
        acts["embedding"] = x
        mask = ids != 0 if self.spec.get("mask_zero", True) else None
        caches = []
        for name, layer in self.recurrent:
            x, _, cache = layer.forward(self._params(name), x, mask)
            acts[name] = x
            caches.append(cache)
        pooled = layers.masked_mean_pool(x, mask)
        acts["mean_pool"] = pooled
        return pooled, (mask, x.shape[1], caches)

    # --- loss and backward ----------------------------------------------------

    def loss(self, ids: np.ndarray, labels: np.ndarray) -> float:
        """Mean cross-entropy of ``forward(ids)`` against int labels (B,)."""
        return layers.cross_entropy(self.forward(ids), np.asarray(labels))

    def backward(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of the mean cross-entropy of the last :meth:`forward` w.r.t.
        every weight, keyed like ``weights``."""
        if self._cache is None:
            raise RuntimeError("call forward(ids) before backward(labels)")
        if self.spec["output_activation"] != "softmax":
            raise ValueError("backward needs a softmax output layer")
        with limited_blas(self.blas_threads):
            return self._backward(np.asarray(labels))

    def _backward(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        ids, features, probs, cache = self._cache
        grads = {}
        d_logits = layers.softmax_cross_entropy_backward(probs, labels)
        w = self._params("output")
        d_features, g = layers.dense_backward(features, w["kernel"], d_logits)
        grads.update({f"output/{k}": v for k, v in g.items()})
        if self.spec["type"] == "cnn":
            padded, d_x = self._cnn_backward(d_features, cache, grads)
        else:
            padded, d_x = self._rnn_backward(ids, d_features, cache, grads)
        table = self.weights["embedding/embeddings"]
        grads["embedding/embeddings"] = layers.embedding_backward(table.shape, padded, d_x)
        return grads

    def loss_and_gradients(self, ids, labels) -> tuple[float, dict[str, np.ndarray]]:
        loss = self.loss(ids, labels)
        return loss, self.backward(labels)

    def _cnn_backward(self, d_features, cache, grads):
        padded, caches = cache
        d_x = None
        offset = 0
        for conv, (conv_cache, pool_cache) in zip(self.spec["convs"], caches):
            filters = conv["filters"]
            d_pooled = d_features[:, offset:offset + filters]
            offset += filters
            d_y = layers.length_masked_max_pool_backward(d_pooled, pool_cache,
                                                         conv.get("ties", "shared"))
            w = self._params(conv["name"])
            dx, g = layers.conv1d_backward(w["kernel"], d_y, conv_cache)
            grads.update({f"{conv['name']}/{k}": v for k, v in g.items()})
            d_x = dx if d_x is None else d_x + dx
        return padded, d_x

    def _rnn_backward(self, ids, d_features, cache, grads):
        mask, steps, caches = cache
        d_x = layers.masked_mean_pool_backward(d_features, mask, steps)
        for (name, layer), layer_cache in zip(reversed(self.recurrent), reversed(caches)):
            g, d_x, _ = layer.backward(self._params(name), d_x, layer_cache)
            grads.update({f"{name}/{k}": v for k, v in g.items()})
        return ids, d_x
