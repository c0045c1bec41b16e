"""Elman recurrent cell, Keras' ``SimpleRNNCell``, batched and in NumPy.

Notation (row vectors, as Keras): B batch, D input features, U units.

    a_t = x_t @ W + b                    (B, U)   input projection, all steps at once
    z_t = a_t + h_{t-1} @ R              (B, U)
    h_t = act(z_t)                       (B, U)   act: tanh (Keras default) or relu

Parameters (Keras weight names and layout):

    kernel            W  (D, U)
    recurrent_kernel  R  (U, U)
    bias              b  (U,)

Backward, given dh_t (the gradient reaching h_t from the output and from step t+1):

    dz_t      = dh_t * act'(z_t)         (tanh: 1 - h_t^2; relu: [z_t > 0])
    dh_{t-1} += dz_t @ R^T
    dR       += h_{t-1}^T @ dz_t,   dW += x_t^T @ dz_t,   db += sum_B dz_t

The derivative is taken of the activation at z_t, never "times the state":
the course code multiplied by h_t, which its tiny-weight checks could not see.

The cell only knows one step; masking, direction and the time loop live in
:mod:`textclf.reference.recurrent`, which calls the methods below.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import activations


class _Cache(NamedTuple):
    h_prev: np.ndarray  # (B, U)
    z: np.ndarray       # (B, U) pre-activation
    h: np.ndarray       # (B, U)


class SimpleRNNCell:
    """One step of h_t = act(x_t W + h_{t-1} R + b); see the module docstring."""

    weight_names = ("kernel", "recurrent_kernel", "bias")
    n_states = 1  # (h,)

    def __init__(self, units: int, activation: str = "tanh"):
        self.units = int(units)
        self.activation = activation

    def input_projection(self, params: dict, x: np.ndarray) -> np.ndarray:
        """(T, B, D) -> a (T, B, U) = x W + b, every step in one matmul."""
        return _matmul(x, params["kernel"]) + params["bias"]

    def step(self, params: dict, a_t: np.ndarray, states: tuple) -> tuple[tuple, _Cache]:
        """a_t (B, U), states (h_{t-1},) -> (h_t,), cache. The output is h_t."""
        (h_prev,) = states
        z = a_t + h_prev @ params["recurrent_kernel"]
        h = activations.apply(self.activation, z)
        return (h,), _Cache(h_prev, z, h)

    def step_backward(self, params: dict, d_states: tuple, cache: _Cache):
        """(dh_t,) -> (da_t (B, U), d_rec_t (B, U), (dh_{t-1},)).

        ``d_rec_t`` is the gradient w.r.t. the recurrent product h_{t-1} R,
        accumulated into dR by :meth:`weight_grads` for all steps at once.
        """
        (dh,) = d_states
        dz = dh * activations.derivative(self.activation, cache.z, cache.h)
        return dz, dz, (dz @ params["recurrent_kernel"].T,)

    def weight_grads(self, params: dict, x: np.ndarray, caches: list, d_a: np.ndarray,
                     d_rec: np.ndarray) -> tuple[np.ndarray, dict]:
        """x (T, B, D), d_a and d_rec (T, B, U) -> dx (T, B, D), {name: gradient}."""
        h_prev = np.stack([c.h_prev for c in caches])  # (T, B, U)
        units = self.units
        grads = {
            "kernel": _outer_sum(x, d_a),
            "recurrent_kernel": _outer_sum(h_prev, d_rec),
            "bias": d_a.reshape(-1, units).sum(axis=0),
        }
        return _matmul(d_a, params["kernel"].T), grads


def _outer_sum(inputs: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """sum over steps and batch of inputs^T grads: (T, B, I), (T, B, G) -> (I, G)."""
    return inputs.reshape(-1, inputs.shape[-1]).T @ grads.reshape(-1, grads.shape[-1])


def _matmul(stack: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(T, B, I) @ (I, G) -> (T, B, G) as one 2-D BLAS product."""
    flat = np.ascontiguousarray(stack).reshape(-1, stack.shape[-1])
    return (flat @ matrix).reshape(stack.shape[:-1] + (matrix.shape[-1],))
