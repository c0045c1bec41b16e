"""Element-wise activations as Keras defines them, with their derivatives.

``apply(name, z)`` gives y = act(z); ``derivative(name, z, y)`` gives dy/dz,
using whichever of z and y is the cheaper and more exact (tanh: 1 - y^2).
Names are Keras' strings: ``tanh``, ``relu``, ``sigmoid``, ``elu``, ``gelu``
(exact, erf-based: Keras' default ``approximate=False``), ``linear``.

ReLU's derivative at exactly 0 is 0, as TensorFlow's ``ReluGrad`` has it
(the course material's remedy against vanishing gradients, SimpleRNN with ReLU).
"""

from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu", "gelu", "linear")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) written as 0.5 (1 + tanh(z / 2)): no overflow for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z) = erfc(-z / sqrt 2) / 2 (erfc, not 1 + erf: no cancellation for z << 0)."""
    try:  # SciPy is a scikit-learn dependency; a plain loop is the fallback
        from scipy.special import erfc
    except ImportError:  # pragma: no cover - depends on the environment
        erfc = np.vectorize(math.erfc, otypes=[z.dtype])
    return 0.5 * erfc(-z / math.sqrt(2.0))


def apply(name: str, z: np.ndarray) -> np.ndarray:
    """y = act(z), same shape and dtype as ``z``."""
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return sigmoid(z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "gelu":
        return z * _normal_cdf(z)
    if name == "linear":
        return z
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")


def derivative(name: str, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dy/dz element-wise, given the input ``z`` and output ``y = apply(name, z)``."""
    if name == "tanh":
        return 1.0 - y * y
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "sigmoid":
        return y * (1.0 - y)
    if name == "elu":
        return np.where(z > 0, 1.0, y + 1.0).astype(z.dtype)
    if name == "gelu":
        cdf = _normal_cdf(z)
        pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return cdf + z * pdf
    if name == "linear":
        return np.ones_like(z)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
