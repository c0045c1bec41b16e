"""Long short-term memory cell, Keras' ``LSTMCell``, batched and in NumPy.

Notation (row vectors, as Keras): B batch, D input features, U units;
s = sigmoid (exact, Keras' default ``recurrent_activation``), act = tanh by
default (``activation``, used for both the candidate and the cell output).

    a_t = x_t @ W + b                      (B, 4U)  input projection, all steps at once
    z_t = a_t + h_{t-1} @ R                (B, 4U)  blocks [i | f | c | o]
    i_t = s(z_i)    f_t = s(z_f)    o_t = s(z_o)    g_t = act(z_c)
    c_t = f_t * c_{t-1} + i_t * g_t        (B, U)
    h_t = o_t * act(c_t)                   (B, U)   also the output

Parameters (Keras weight names and layout; gate blocks in the order i, f, c, o
along the last axis, each U wide):

    kernel            W  (D, 4U)
    recurrent_kernel  R  (U, 4U)
    bias              b  (4U,)     (``unit_forget_bias`` only sets its f block to 1 at init)

Backward, given dh_t and dc_t (from the output and from step t+1):

    do   = dh_t * act(c_t)
    dc   = dc_t + dh_t * o_t * act'(c_t)      the cell-state carry path: dc_t
    di   = dc * g_t      df = dc * c_{t-1}      dg = dc * i_t
    dc_{t-1} = dc * f_t
    dz   = [di i(1-i) | df f(1-f) | dg act'(z_c) | do o(1-o)]     (B, 4U)
    dh_{t-1} = dz @ R^T
    dR += h_{t-1}^T dz,   dW += x_t^T dz,   db += sum_B dz  (each block its own gate)

(The course code dropped the ``dc_t`` carry term and copied the forget gate's
bias gradient into two other blocks.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import activations
from .rnn import _matmul, _outer_sum


class _Cache(NamedTuple):
    h_prev: np.ndarray   # (B, U)
    c_prev: np.ndarray   # (B, U)
    gates: np.ndarray    # (B, 4U): s(z) in the i, f, o blocks, act(z_c) in the c block
    z_c: np.ndarray      # (B, U) candidate pre-activation
    act_c: np.ndarray    # (B, U) act(c_t)
    c: np.ndarray        # (B, U)


class LSTMCell:
    """One LSTM step; see the module docstring. States are (h, c)."""

    weight_names = ("kernel", "recurrent_kernel", "bias")
    n_states = 2  # (h, c)

    def __init__(self, units: int, activation: str = "tanh"):
        self.units = int(units)
        self.activation = activation

    def input_projection(self, params: dict, x: np.ndarray) -> np.ndarray:
        """(T, B, D) -> a (T, B, 4U) = x W + b."""
        return _matmul(x, params["kernel"]) + params["bias"]

    def step(self, params: dict, a_t: np.ndarray, states: tuple) -> tuple[tuple, _Cache]:
        """a_t (B, 4U), states (h_{t-1}, c_{t-1}) -> (h_t, c_t), cache."""
        h_prev, c_prev = states
        u = self.units
        z = a_t + h_prev @ params["recurrent_kernel"]
        gates = activations.sigmoid(z)  # the c block is overwritten below
        z_c = z[:, 2 * u:3 * u]
        gates[:, 2 * u:3 * u] = activations.apply(self.activation, z_c)
        i, f, g, o = (gates[:, k * u:(k + 1) * u] for k in range(4))
        c = f * c_prev + i * g
        act_c = activations.apply(self.activation, c)
        h = o * act_c
        return (h, c), _Cache(h_prev, c_prev, gates, z_c, act_c, c)

    def step_backward(self, params: dict, d_states: tuple, cache: _Cache):
        """(dh_t, dc_t) -> (dz_t (B, 4U), dz_t, (dh_{t-1}, dc_{t-1}))."""
        dh, dc_next = d_states
        u = self.units
        gates = cache.gates
        i, f, g, o = (gates[:, k * u:(k + 1) * u] for k in range(4))
        dc = dc_next + dh * o * activations.derivative(self.activation, cache.c, cache.act_c)
        dz = np.empty_like(gates)
        dz[:, 0:u] = dc * g * i * (1.0 - i)
        dz[:, u:2 * u] = dc * cache.c_prev * f * (1.0 - f)
        dz[:, 2 * u:3 * u] = dc * i * activations.derivative(self.activation, cache.z_c, g)
        dz[:, 3 * u:] = dh * cache.act_c * o * (1.0 - o)
        return dz, dz, (dz @ params["recurrent_kernel"].T, dc * f)

    def weight_grads(self, params: dict, x: np.ndarray, caches: list, d_a: np.ndarray,
                     d_rec: np.ndarray) -> tuple[np.ndarray, dict]:
        """x (T, B, D), d_a and d_rec (T, B, 4U) -> dx (T, B, D), {name: gradient}."""
        h_prev = np.stack([c.h_prev for c in caches])
        grads = {
            "kernel": _outer_sum(x, d_a),
            "recurrent_kernel": _outer_sum(h_prev, d_rec),
            "bias": d_a.reshape(-1, d_a.shape[-1]).sum(axis=0),
        }
        return _matmul(d_a, params["kernel"].T), grads
