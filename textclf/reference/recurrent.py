"""Recurrent layers over whole sequences: masking, direction, bidirectional merge.

A :class:`Recurrent` layer runs one cell (:class:`~textclf.reference.rnn.SimpleRNNCell`,
:class:`~textclf.reference.lstm.LSTMCell`, :class:`~textclf.reference.gru.GRUCell`)
over time exactly as Keras 3's generic (non-cuDNN) ``backend.rnn`` does; a
:class:`Bidirectional` layer runs two of them as ``keras.layers.Bidirectional``.
Everything is vectorised over the batch; the only Python loop is over time.

Shapes: B batch, T steps, D input features, U units, S states (1, or 2 for
LSTM: (h, c)). Inputs x (B, T, D), mask (B, T) bool (True = real step) or
None, initial state a tuple of S arrays (B, U) or None (zeros). Outputs
(B, T, U), ``return_sequences=True`` style.

Masking (Keras' semantics, processing step t, m_t the mask of that step):

    s_t = m_t ? cell(x_t, s_{t-1}) : s_{t-1}         every state is carried over
    y_t = m_t ? h_t : (zero_output_for_mask ? 0 : y_{t-1}),    y_{-1} = 0

so right padding repeats the last real output, left padding gives zeros
until the first real step, and a hole repeats the output before it. Note that
y_t is not h_t where s_{-1} != 0 and the sequence starts with padding.
``go_backwards=True`` processes (and masks) the time-reversed sequence and
returns the outputs in processing order, i.e. reversed. Bidirectional sets
``zero_output_for_mask`` on both directions and flips the backward outputs
back to input order before merging (concat: [y_f | y_b]; sum; ave; mul).

Backward (BPTT) mirrors this: at a masked step the gradients of the carried
states pass straight to s_{t-1}, the gradient of a repeated output passes to
y_{t-1}, and the cell receives nothing. Weight gradients are accumulated for
all steps at once from the per-step gradients of the pre-activations.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MERGE_MODES = ("concat", "sum", "ave", "mul")


class _Cache(NamedTuple):
    x: np.ndarray            # (T, B, D) time-major, in processing order
    mask: np.ndarray | None  # (T, B, 1) float in processing order, or None
    steps: list              # T cell caches
    batch: int


class Recurrent:
    """A cell run over the time axis, ``return_sequences=True``.

    ``forward(params, x, mask, initial_state) -> (y (B, T, U), final states, cache)``;
    ``backward(params, dy, cache, d_final_states=None) -> (grads, dx, d_initial_state)``.
    ``params`` holds the cell's weights under their Keras names.
    """

    def __init__(self, cell, go_backwards: bool = False, zero_output_for_mask: bool = False):
        self.cell = cell
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)

    @property
    def units(self) -> int:
        return self.cell.units

    def _time_major(self, array: np.ndarray) -> np.ndarray:
        """(B, T, ...) -> (T, B, ...) in processing order, contiguous (a strided
        stack of matrices would make ``@`` fall back from BLAS to a slow loop)."""
        array = np.swapaxes(array, 0, 1)
        return np.ascontiguousarray(array[::-1] if self.go_backwards else array)

    def _batch_major(self, array: np.ndarray) -> np.ndarray:
        """(T, B, ...) time-major in processing order -> (B, T, ...) in input order."""
        array = array[::-1] if self.go_backwards else array
        return np.ascontiguousarray(np.swapaxes(array, 0, 1))

    def forward(self, params: dict, x: np.ndarray, mask: np.ndarray | None = None,
                initial_state: tuple | None = None):
        batch, steps, _ = x.shape
        dtype = x.dtype
        xs = self._time_major(x)  # (T, B, D)
        a = self.cell.input_projection(params, xs)  # (T, B, G)
        if initial_state is None:
            initial_state = tuple(np.zeros((batch, self.units), dtype)
                                  for _ in range(self.cell.n_states))
        states = tuple(initial_state)
        m = None if mask is None else self._time_major(mask.astype(bool))[..., None]  # (T, B, 1)
        outputs = np.zeros((steps, batch, self.units), dtype)
        previous = np.zeros((batch, self.units), dtype)
        caches = []
        for t in range(steps):
            new_states, cache = self.cell.step(params, a[t], states)
            caches.append(cache)
            if m is None:
                states, previous = new_states, new_states[0]
            else:
                states = tuple(np.where(m[t], new, old) for new, old in zip(new_states, states))
                fill = 0.0 if self.zero_output_for_mask else previous
                previous = np.where(m[t], new_states[0], fill)
            outputs[t] = previous
        # Keras returns the outputs in processing order: reversed when go_backwards.
        y = np.ascontiguousarray(np.swapaxes(outputs, 0, 1))
        mask_f = None if m is None else m.astype(dtype)
        return y, states, _Cache(xs, mask_f, caches, batch)

    def backward(self, params: dict, dy: np.ndarray, cache: _Cache,
                 d_final_states: tuple | None = None):
        """dy (B, T, U) w.r.t. the outputs (in the order :meth:`forward` returned
        them) -> grads {name: array}, dx (B, T, D) in input order,
        d_initial_state (tuple of S arrays (B, U))."""
        xs, m, caches, batch = cache
        steps = len(caches)
        dtype = dy.dtype
        dys = np.swapaxes(dy, 0, 1)  # (T, B, U), already in processing order
        d_states = (tuple(np.zeros((batch, self.units), dtype) for _ in range(self.cell.n_states))
                    if d_final_states is None else tuple(d_final_states))
        d_out_carry = np.zeros((batch, self.units), dtype)  # gradient reaching y_t from y_{t+1}
        d_a, d_rec = [None] * steps, [None] * steps
        for t in reversed(range(steps)):
            g_y = dys[t] + d_out_carry
            if m is None:
                d_new = (g_y + d_states[0],) + d_states[1:]
                carried = None
            else:
                keep = m[t]          # (B, 1)
                skip = 1.0 - keep
                d_new = ((g_y + d_states[0]) * keep,) + tuple(d * keep for d in d_states[1:])
                carried = tuple(d * skip for d in d_states)
                if not self.zero_output_for_mask:
                    d_out_carry = g_y * skip
            d_a[t], d_rec[t], d_prev = self.cell.step_backward(params, d_new, caches[t])
            d_states = d_prev if carried is None else tuple(p + c for p, c in zip(d_prev, carried))
        if steps == 0:
            grads = {name: np.zeros_like(params[name]) for name in self.cell.weight_names}
            return grads, np.zeros((batch, 0, xs.shape[-1]), dtype), d_states
        dxs, grads = self.cell.weight_grads(params, xs, caches, np.stack(d_a), np.stack(d_rec))
        return grads, self._batch_major(dxs), d_states


class Bidirectional:
    """``keras.layers.Bidirectional`` over two :class:`Recurrent` layers of the same cell type.

    ``params`` keys are ``forward/<weight>`` and ``backward/<weight>``; the
    initial state is ``(forward states..., backward states...)``. Output
    (B, T, 2U) for concat, (B, T, U) for sum, ave, mul.
    """

    def __init__(self, forward_cell, backward_cell, merge_mode: str = "concat"):
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {', '.join(MERGE_MODES)}; "
                             f"got {merge_mode!r}")
        self.forward_layer = Recurrent(forward_cell, go_backwards=False, zero_output_for_mask=True)
        self.backward_layer = Recurrent(backward_cell, go_backwards=True, zero_output_for_mask=True)
        self.merge_mode = merge_mode

    @property
    def units(self) -> int:
        return self.forward_layer.units * (2 if self.merge_mode == "concat" else 1)

    @staticmethod
    def split_params(params: dict) -> tuple[dict, dict]:
        forward = {k[len("forward/"):]: v for k, v in params.items() if k.startswith("forward/")}
        backward = {k[len("backward/"):]: v for k, v in params.items() if k.startswith("backward/")}
        return forward, backward

    def forward(self, params: dict, x: np.ndarray, mask: np.ndarray | None = None,
                initial_state: tuple | None = None):
        p_f, p_b = self.split_params(params)
        n = self.forward_layer.cell.n_states
        s_f = s_b = None
        if initial_state is not None:
            s_f, s_b = tuple(initial_state[:n]), tuple(initial_state[n:])
        y_f, st_f, c_f = self.forward_layer.forward(p_f, x, mask, s_f)
        y_b, st_b, c_b = self.backward_layer.forward(p_b, x, mask, s_b)
        y_b = y_b[:, ::-1]  # back to input order
        if self.merge_mode == "concat":
            y = np.concatenate([y_f, y_b], axis=-1)
        elif self.merge_mode == "sum":
            y = y_f + y_b
        elif self.merge_mode == "ave":
            y = (y_f + y_b) / 2
        else:
            y = y_f * y_b
        return y, st_f + st_b, (c_f, c_b, y_f, y_b)

    def backward(self, params: dict, dy: np.ndarray, cache, d_final_states: tuple | None = None):
        c_f, c_b, y_f, y_b = cache
        p_f, p_b = self.split_params(params)
        n = self.forward_layer.cell.n_states
        d_f = d_b = None
        if d_final_states is not None:
            d_f, d_b = tuple(d_final_states[:n]), tuple(d_final_states[n:])
        if self.merge_mode == "concat":
            u = y_f.shape[-1]
            dy_f, dy_b = dy[..., :u], dy[..., u:]
        elif self.merge_mode == "sum":
            dy_f = dy_b = dy
        elif self.merge_mode == "ave":
            dy_f = dy_b = dy / 2
        else:
            dy_f, dy_b = dy * y_b, dy * y_f
        g_f, dx_f, ds_f = self.forward_layer.backward(p_f, dy_f, c_f, d_f)
        g_b, dx_b, ds_b = self.backward_layer.backward(p_b, dy_b[:, ::-1], c_b, d_b)
        grads = {f"forward/{k}": v for k, v in g_f.items()}
        grads.update({f"backward/{k}": v for k, v in g_b.items()})
        return grads, dx_f + dx_b, ds_f + ds_b
