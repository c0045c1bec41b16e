"""Gated recurrent unit, Keras' ``GRUCell`` (both ``reset_after`` settings), in NumPy.

Notation (row vectors, as Keras): B batch, D input features, U units;
s = sigmoid, act = tanh by default. Gate blocks in the order z, r, h along
the last axis, each U wide; W = kernel, R = recurrent_kernel.

``reset_after=True`` (Keras' default, the cuDNN variant):

    a_t  = x_t @ W + b_in                  (B, 3U)  all steps at once
    m_t  = h_{t-1} @ R + b_rec             (B, 3U)
    z_t  = s(a_z + m_z)     r_t = s(a_r + m_r)
    hh_t = act(a_h + r_t * m_h)
    h_t  = z_t * h_{t-1} + (1 - z_t) * hh_t          (note: z weights the *old* state)

``reset_after=False`` (the original Cho et al. formulation):

    a_t  = x_t @ W + b                     (B, 3U)
    z_t  = s(a_z + h_{t-1} @ R_z)     r_t = s(a_r + h_{t-1} @ R_r)
    hh_t = act(a_h + (r_t * h_{t-1}) @ R_h)
    h_t  = z_t * h_{t-1} + (1 - z_t) * hh_t

Parameters (Keras weight names and layout):

    kernel            W  (D, 3U)
    recurrent_kernel  R  (U, 3U)      R_z, R_r, R_h = its three column blocks
    bias              (2, 3U) when reset_after: row 0 = b_in, row 1 = b_rec;
                      (3U,) otherwise

Backward, given dh_t:

    dhh = dh_t (1 - z)         dz = dh_t (h_{t-1} - hh)         dh_{t-1} = dh_t z + ...
    dp_h = dhh act'(.)         dp_z = dz z(1-z)
    reset_after:   dr = dp_h m_h,  dm = [dp_z | dp_r | dp_h r],  dh_{t-1} += dm @ R^T
    otherwise:     d(r h) = dp_h @ R_h^T,  dr = d(r h) h_{t-1},
                   dh_{t-1} += [dp_z | dp_r] @ [R_z | R_r]^T + d(r h) r
    with dp_r = dr r(1-r); da = [dp_z | dp_r | dp_h].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import activations
from .rnn import _matmul, _outer_sum


class _Cache(NamedTuple):
    h_prev: np.ndarray  # (B, U)
    z: np.ndarray       # (B, U) update gate
    r: np.ndarray       # (B, U) reset gate
    p_h: np.ndarray     # (B, U) candidate pre-activation
    hh: np.ndarray      # (B, U) candidate
    m_h: np.ndarray     # (B, U) reset_after: h_{t-1} R_h + b_rec,h ; otherwise unused


class GRUCell:
    """One GRU step; see the module docstring. States are (h,)."""

    weight_names = ("kernel", "recurrent_kernel", "bias")
    n_states = 1

    def __init__(self, units: int, activation: str = "tanh", reset_after: bool = True):
        self.units = int(units)
        self.activation = activation
        self.reset_after = bool(reset_after)

    def _biases(self, params: dict):
        bias = params["bias"]
        if self.reset_after:
            return bias[0], bias[1]
        return bias, None

    def input_projection(self, params: dict, x: np.ndarray) -> np.ndarray:
        """(T, B, D) -> a (T, B, 3U) = x W + b_in."""
        return _matmul(x, params["kernel"]) + self._biases(params)[0]

    def step(self, params: dict, a_t: np.ndarray, states: tuple) -> tuple[tuple, _Cache]:
        """a_t (B, 3U), states (h_{t-1},) -> (h_t,), cache."""
        (h_prev,) = states
        u = self.units
        kernel = params["recurrent_kernel"]
        if self.reset_after:
            m = h_prev @ kernel + self._biases(params)[1]
            zr = activations.sigmoid(a_t[:, :2 * u] + m[:, :2 * u])
            z, r = zr[:, :u], zr[:, u:]
            m_h = m[:, 2 * u:]
            p_h = a_t[:, 2 * u:] + r * m_h
        else:
            zr = activations.sigmoid(a_t[:, :2 * u] + h_prev @ kernel[:, :2 * u])
            z, r = zr[:, :u], zr[:, u:]
            m_h = None
            p_h = a_t[:, 2 * u:] + (r * h_prev) @ kernel[:, 2 * u:]
        hh = activations.apply(self.activation, p_h)
        h = z * h_prev + (1.0 - z) * hh
        return (h,), _Cache(h_prev, z, r, p_h, hh, m_h)

    def step_backward(self, params: dict, d_states: tuple, cache: _Cache):
        """(dh_t,) -> (da_t (B, 3U), d_rec_t (B, 3U), (dh_{t-1},)).

        ``d_rec_t`` is the gradient w.r.t. the recurrent matmul outputs: m_t
        when reset_after, else [h R_z | h R_r | (r h) R_h].
        """
        (dh,) = d_states
        u = self.units
        kernel = params["recurrent_kernel"]
        z, r, h_prev = cache.z, cache.r, cache.h_prev
        dp_h = dh * (1.0 - z) * activations.derivative(self.activation, cache.p_h, cache.hh)
        dp_z = dh * (h_prev - cache.hh) * z * (1.0 - z)
        d_a = np.empty(dh.shape[:-1] + (3 * u,), dtype=dh.dtype)
        d_a[:, :u] = dp_z
        d_a[:, 2 * u:] = dp_h
        if self.reset_after:
            d_a[:, u:2 * u] = dp_h * cache.m_h * r * (1.0 - r)
            d_rec = d_a.copy()
            d_rec[:, 2 * u:] = dp_h * r
            dh_prev = dh * z + d_rec @ kernel.T
        else:
            d_rh = dp_h @ kernel[:, 2 * u:].T
            d_a[:, u:2 * u] = d_rh * h_prev * r * (1.0 - r)
            d_rec = d_a
            dh_prev = dh * z + d_a[:, :2 * u] @ kernel[:, :2 * u].T + d_rh * r
        return d_a, d_rec, (dh_prev,)

    def weight_grads(self, params: dict, x: np.ndarray, caches: list, d_a: np.ndarray,
                     d_rec: np.ndarray) -> tuple[np.ndarray, dict]:
        """x (T, B, D), d_a and d_rec (T, B, 3U) -> dx (T, B, D), {name: gradient}."""
        u = self.units
        h_prev = np.stack([c.h_prev for c in caches])  # (T, B, U)
        sum_a = d_a.reshape(-1, 3 * u).sum(axis=0)
        if self.reset_after:
            recurrent = _outer_sum(h_prev, d_rec)
            bias = np.stack([sum_a, d_rec.reshape(-1, 3 * u).sum(axis=0)])
        else:
            rh_prev = np.stack([c.r * c.h_prev for c in caches])
            recurrent = np.concatenate([_outer_sum(h_prev, d_rec[..., :2 * u]),
                                        _outer_sum(rh_prev, d_rec[..., 2 * u:])], axis=1)
            bias = sum_a
        grads = {"kernel": _outer_sum(x, d_a), "recurrent_kernel": recurrent, "bias": bias}
        return _matmul(d_a, params["kernel"].T), grads
