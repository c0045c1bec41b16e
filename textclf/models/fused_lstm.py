"""An LSTM whose CPU path does one large matmul per sequence, not two small ones per step.

Keras' LSTM runs cuDNN's fused kernel on a GPU; anywhere else it falls back to a
generic loop that computes ``x_t @ kernel`` *and* ``h @ recurrent_kernel``
inside every time step, and lets autodiff differentiate that loop (four more
small matmuls per step on the way back, including one ``dU`` update per step).

:class:`FusedLSTM` is ``keras.layers.LSTM`` with the same weights, options and
saved form; only its CPU inner loop differs (:func:`scaled_lstm_recurrence`):

- forward: the input projection ``X @ W + b`` for all steps as one
  (B*T, D) x (D, 4U) matmul; the loop runs only ``h @ U``;
- backward (hand-written, through :func:`tf.custom_gradient`): the loop runs
  only ``dz @ U^T``; ``dU = H_prev^T dZ``, ``dW`` and ``dX`` are each one large
  matmul after it;
- the batch is cut into one slice per core, each with a loop of its own, run
  side by side (:attr:`FusedLSTM.batch_groups`);
- prediction and validation run a lean loop that records nothing for a
  backward pass.

So each step does one small matmul each way instead of two forward and four
backward. Masking follows Keras exactly (a masked step carries ``h`` and ``c``
and repeats the previous output), so outputs and gradients equal the stock
layer's to float rounding; ``tests/test_fused_lstm.py`` checks both against
Keras and against the NumPy reference. On a GPU, or with options the fused
loop does not cover (recurrent dropout, other activations, unrolling), the
layer defers to Keras, which keeps the cuDNN kernel.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf


def gate_scale(units: int, dtype) -> tf.Tensor:
    """(4U,): 1 for the sigmoid gates i, f, o and 2 for the candidate c.

    Every gate but the candidate (a tanh) is a sigmoid, and
    tanh(x) = 2 sigmoid(2x) - 1. With the candidate's columns of W, U and b
    doubled (exact in floating point) one sigmoid over all 4U columns serves
    every gate, which saves element-wise operations in the loop, where each
    one costs its dispatch.
    """
    ones = tf.ones([units], dtype)
    return tf.concat([ones, ones, 2 * ones, ones], axis=0)


def scaled_lstm_recurrence(projected, recurrent_kernel, h0, c0, mask, training: bool = True):
    """Run the LSTM recurrence over precomputed, gate-scaled input projections.

    ``projected`` (T, B, 4U) = (x_t @ kernel + bias) * gate_scale, time-major,
    gates in Keras' order i, f, c, o; ``recurrent_kernel`` (U, 4U) = U *
    gate_scale; ``h0``, ``c0`` (B, U); ``mask`` (T, B, 1) in the loop dtype
    (1 = real step). Returns ``outputs`` (T, B, U), ``last_output``, ``h_T`` and
    ``c_T`` (B, U); differentiable in all but the mask, through the
    hand-written :func:`_backward` when ``training``. Otherwise a lean loop
    keeps nothing for a backward pass (prediction, validation: at T = 600 and
    B = 64 the records take 0.1 GB); TensorFlow can still differentiate it,
    the slow generic way (``textclf check --gradients`` does, and compares
    with the reference nets).

    Keras' masking rule: a masked step carries h and c and repeats the previous
    *output*, which starts at zeros, not at h0; so a step before a row's first
    real one outputs zeros (the states are equal from the first real step on).
    """
    run = _recurrence if training else _forward_only
    states, h_last, c_last = run(projected, recurrent_kernel, h0, c0, mask)
    emitted = tf.cast(tf.cumsum(mask, axis=0) > 0, states.dtype)  # (T, B, 1)
    last_output = h_last * tf.cast(tf.reduce_any(mask > 0, axis=0), h_last.dtype)
    return states * emitted, last_output, h_last, c_last


def lstm_step(z, c):
    """One cell update from gate-scaled pre-activations z (B, 4U) and c (B, U):
    (all four gates after their activations (B, 4U), c_new, h_new)."""
    s = tf.sigmoid(z)
    i, f, g2, o = tf.split(s, 4, axis=1)  # g2 = sigmoid(2 z_c); tanh(z_c) = 2 g2 - 1
    c_new = f * c + i * (2 * g2 - 1)
    return s, c_new, o * tf.tanh(c_new)


def _forward_only(projected, recurrent_kernel, h0, c0, mask):
    """The recurrence without the per-step records of :func:`_recurrence`."""
    keep = mask > 0
    written = tf.TensorArray(projected.dtype, size=tf.shape(projected)[0],
                             element_shape=h0.shape)

    def step(t, h, c, outputs):
        _, c_new, h_new = lstm_step(projected[t] + tf.matmul(h, recurrent_kernel), c)
        h_new, c_new = tf.where(keep[t], h_new, h), tf.where(keep[t], c_new, c)
        return t + 1, h_new, c_new, outputs.write(t, h_new)

    _, h_last, c_last, outputs = tf.while_loop(
        lambda t, *_: t < tf.shape(projected)[0], step, (tf.constant(0), h0, c0, written),
        parallel_iterations=32)
    return outputs.stack(), h_last, c_last


@tf.custom_gradient
def _recurrence(projected, recurrent_kernel, h0, c0, mask):
    steps = tf.shape(projected)[0]
    keep = mask > 0
    # Element shapes let a zero-step loop (a batch of empty texts) still stack.
    written = [tf.TensorArray(projected.dtype, size=steps, element_shape=shape)
               for shape in (projected.shape[1:], h0.shape, h0.shape)]

    def step(t, h, c, sigmoids, cells, outputs):
        s, c_new, h_new = lstm_step(projected[t] + tf.matmul(h, recurrent_kernel), c)
        m = keep[t]  # (B, 1): a masked step keeps h and c (Keras' rule)
        h_new, c_new = tf.where(m, h_new, h), tf.where(m, c_new, c)
        return (t + 1, h_new, c_new, sigmoids.write(t, s), cells.write(t, c_new),
                outputs.write(t, h_new))

    # parallel_iterations > 1 lets the executor start a step's independent
    # work (reads, writes) while the previous step finishes.
    _, h_last, c_last, sigmoids, cells, outputs = tf.while_loop(
        lambda t, *_: t < steps, step, (tf.constant(0), h0, c0, *written),
        parallel_iterations=32)
    sigmoids, cells, outputs = sigmoids.stack(), cells.stack(), outputs.stack()

    def grad(d_outputs, d_h_last, d_c_last):
        # An output nobody used arrives as None.
        d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
        d_h_last = tf.zeros_like(h0) if d_h_last is None else d_h_last
        d_c_last = tf.zeros_like(c0) if d_c_last is None else d_c_last
        d_projected, d_kernel, d_h0, d_c0 = _backward(
            d_outputs, d_h_last, d_c_last, recurrent_kernel, h0, c0, mask,
            sigmoids, cells, outputs)
        return d_projected, d_kernel, d_h0, d_c0, tf.zeros_like(mask)

    return (outputs, h_last, c_last), grad


def _backward(d_outputs, d_h_last, d_c_last, recurrent_kernel, h0, c0, mask,
              sigmoids, cells, outputs):
    """Backprop through time; returns the gradients of (projected,
    recurrent_kernel, h0, c0), the first two in their gate-scaled form.

    Everything that does not depend on the carried gradients is computed for
    all steps at once before the loop (T, B, .) so that the loop runs one
    matmul and a handful of element-wise operations per step (z' = the scaled
    pre-activations; d tanh(z_c) / d z'_c = (1 - g^2) / 2):

        d_c_new = m (d_c + d_h * o (1 - tanh(c)^2))
        d_z'    = [d_c_new, d_c_new, d_c_new, d_h] * [g i', c_prev f', i g' / 2, tanh(c) o'] m
        d_h    <- m ? d_z' @ U'^T : d_h        d_c <- m ? d_c_new f : d_c

    At a masked step (m = 0) the state passed through unchanged, so the
    gradient does too; there the stored cell is c_prev, not c_new, which is
    harmless because every term that reads it is multiplied by m = 0.
    """
    steps = tf.shape(outputs)[0]
    units = tf.shape(h0)[1]
    i, f, g2, o = tf.split(sigmoids, 4, axis=2)  # (T, B, U) each
    g = 2 * g2 - 1
    c_prev = tf.concat([c0[None], cells[:-1]], axis=0)
    h_prev = tf.concat([h0[None], outputs[:-1]], axis=0)
    tanh_c = tf.tanh(cells)
    through_h = o * (1 - tanh_c * tanh_c)  # d c_new / d h_new, (T, B, U)
    gate_factors = mask[:, :, None] * tf.stack(
        [g * i * (1 - i), c_prev * f * (1 - f), 0.5 * i * (1 - g * g), tanh_c * o * (1 - o)],
        axis=2)  # (T, B, 4, U)
    is_output_gate = tf.constant([[False], [False], [False], [True]])  # (4, 1)
    keep = mask > 0
    kernel_t = tf.transpose(recurrent_kernel)  # (4U, U)

    def step(t, d_h, d_c, d_z_seq):
        d_h = d_h + d_outputs[t]  # (B, U): everything that reaches h_t
        d_c_new = mask[t] * (d_c + d_h * through_h[t])
        # [d_c_new, d_c_new, d_c_new, d_h] by broadcasting, not a concat: with the
        # default threads TensorFlow shards a concat over the pool, and the
        # profiler showed it waiting for the core busy with the other slice.
        d_gates = tf.where(is_output_gate, d_h[:, None, :], d_c_new[:, None, :])  # (B, 4, U)
        d_z = tf.reshape(d_gates * gate_factors[t], [-1, 4 * units])  # (B, 4U)
        d_h_prev = tf.ensure_shape(tf.where(keep[t], tf.matmul(d_z, kernel_t), d_h), d_h.shape)
        d_c_prev = tf.where(keep[t], d_c_new * f[t], d_c)
        return t - 1, d_h_prev, d_c_prev, d_z_seq.write(t, d_z)

    _, d_h0, d_c0, d_z_seq = tf.while_loop(
        lambda t, *_: t >= 0, step,
        (steps - 1, d_h_last, d_c_last,
         tf.TensorArray(outputs.dtype, size=steps, element_shape=sigmoids.shape[1:])),
        parallel_iterations=32)
    d_projected = d_z_seq.stack()  # (T, B, 4U)
    d_kernel = tf.matmul(tf.reshape(h_prev, [-1, units]),
                         tf.reshape(d_projected, [-1, 4 * units]), transpose_a=True)
    return d_projected, d_kernel, d_h0, d_c0


def fused_path_applies(layer: keras.layers.LSTM, training: bool) -> bool:
    """True when the fused CPU loop computes exactly what Keras' loop would."""
    cell = layer.cell
    return (keras.backend.backend() == "tensorflow"
            and not tf.config.list_logical_devices("GPU")  # cuDNN's kernel is better
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and cell.use_bias and not cell.recurrent_dropout
            and not (training and cell.dropout)
            and not layer.unroll)


def split_batch(tensors, groups: int):
    """Cut each (B, ...) tensor (or None) into ``groups`` row slices of near-equal size."""
    batch = tf.shape(tensors[0])[0]
    bounds = [batch * k // groups for k in range(groups + 1)]
    sizes = tf.stack([bounds[k + 1] - bounds[k] for k in range(groups)])
    pieces = [[None] * groups if tensor is None else tf.split(tensor, sizes, num=groups)
              for tensor in tensors]
    return list(zip(*pieces))


@keras.saving.register_keras_serializable(package="textclf")
class FusedLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` with the fused CPU loop of this module (same weights)."""

    #: Row slices of a batch whose loops run side by side: one per usable core.
    #: The rows are independent, so each slice gets a loop of its own and the
    #: executor runs the loops' small per-step matmuls on different cores at
    #: once; one (B, U) x (U, 4U) matmul is too small to share between cores
    #: with profit (scripts/bench_lstm.py times 1 slice against N).
    batch_groups = max(1, len(os.sched_getaffinity(0)))

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """(B, T, D) -> (last output (B, U), outputs (B, T, U), [h_T, c_T]), as Keras."""
        if not fused_path_applies(self, training):
            return super().inner_loop(sequences, initial_state, mask, training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        # Cut before going time-major, where a row slice is contiguous.
        results = [self._slice_loop(*piece, training) for piece in
                   split_batch([sequences, mask, *initial_state], self.batch_groups)]
        outputs, last_output, h, c = (tf.concat(part, axis=0) for part in zip(*results))
        return last_output, outputs, [h, c]

    def _slice_loop(self, sequences, mask, h0, c0, training):
        """One slice: (B', T, D) -> outputs (B', T, U), last output, h_T, c_T."""
        cell = self.cell
        # Under mixed precision the matmul over all steps runs in the compute
        # dtype and the loop keeps float32 states, as cuDNN does.
        loop_dtype = tf.float32 if sequences.dtype in (tf.bfloat16, tf.float16) else sequences.dtype
        scale = gate_scale(self.units, loop_dtype)
        inputs = tf.transpose(sequences, [1, 0, 2])  # time-major (T, B', D)
        if mask is None:
            mask = tf.ones_like(inputs[:, :, :1], dtype=loop_dtype)
        else:
            mask = tf.cast(tf.transpose(mask)[:, :, None], loop_dtype)  # (T, B', 1)
        if self.go_backwards:
            inputs, mask = tf.reverse(inputs, [0]), tf.reverse(mask, [0])
        kernel = tf.cast(cell.kernel, loop_dtype) * scale
        projected = tf.tensordot(inputs, tf.cast(kernel, inputs.dtype), 1)  # (T, B', 4U)
        projected = tf.cast(projected, loop_dtype) + tf.cast(cell.bias, loop_dtype) * scale
        recurrent_kernel = tf.cast(cell.recurrent_kernel, loop_dtype) * scale
        outputs, last_output, h, c = scaled_lstm_recurrence(
            projected, recurrent_kernel, tf.cast(h0, loop_dtype), tf.cast(c0, loop_dtype), mask,
            training=bool(training))
        return tf.transpose(outputs, [1, 0, 2]), last_output, h, c
