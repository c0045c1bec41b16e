"""A GRU whose CPU path does one large matmul per sequence, not two small ones per step.

The same design as :mod:`textclf.models.fused_lstm`, for Keras' GRU with
``reset_after=True`` (its default, and cuDNN's variant). Per step Keras computes

    x_z, x_r, x_h = x_t W + b_in        (here: one matmul over all steps, before the loop)
    u_z, u_r, u_h = h U + b_rec         (the only matmul left in the loop)
    z = sigmoid(x_z + u_z)      r = sigmoid(x_r + u_r)
    hh = tanh(x_h + r u_h)      h' = z h + (1 - z) hh

and the backward pass is written by hand. With g the gradient that reaches h',

    d a_h = g (1 - z)(1 - hh^2)             (a_h = x_h + r u_h)
    d u   = [g (h - hh) z (1 - z),  d a_h u_h r (1 - r),  d a_h r]
    d x   = [d u_z, d u_r, d a_h]           d h = g z + d u U^T

so every term is g times a factor the forward pass already knows: the factors
are computed for all steps before the loop, which runs one ``d u @ U^T`` and a
few element-wise operations per step; ``dU``, ``db_rec`` and (through
autodiff) ``dW``, ``dX`` are large matmuls and sums after it. Masking follows
Keras (a masked step carries h and repeats the previous output), the batch is
cut into one row slice per core as for the LSTM, and on a GPU, or with
options the fused loop does not cover, the layer is Keras' own (cuDNN).
``tests/test_fused_gru.py`` checks outputs and gradients against Keras.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from .fused_lstm import (FusedLSTM, fused_path_applies, keep_mask, keras_loop_with_empty_rows,
                         keras_outputs, loop_dtype, split_batch, time_major, unflatten)


def gru_recurrence(projected, recurrent_kernel, recurrent_bias, h0, mask, training: bool = True):
    """Run the GRU recurrence over precomputed input projections, row slices side by side.

    ``projected``, ``h0`` and ``mask`` are equally long lists, one entry per
    row slice: ``projected[g]`` (T, B_g, 3U) = x_t @ kernel + input bias,
    time-major, gates in Keras' order z, r, h; ``h0[g]`` (B_g, U);
    ``mask[g]`` (T, B_g, 1) in the loop dtype (1 = real step).
    ``recurrent_kernel`` (U, 3U) and ``recurrent_bias`` (3U,) are shared.
    Returns lists ``outputs`` (T, B_g, U), ``last_output`` and ``h_T`` (B_g, U);
    differentiable in all but the mask (hand-written backward) when
    ``training``, else a lean loop that records nothing for a backward pass.
    Under mixed precision only the projections outside run in the compute
    dtype; the loop and ``dU`` stay float32 (as for the LSTM).
    """
    slices = len(projected)
    run = _recurrence if training else _forward_only
    flat = run(recurrent_kernel, recurrent_bias, *projected, *h0, *mask)
    states, h_last = flat[:slices], flat[slices:]
    outputs, last_output = keras_outputs(states, h_last, mask)
    return outputs, last_output, h_last


def gru_step(x_zr, x_h, h, recurrent_kernel, recurrent_bias):
    """One step from the input parts x_zr (B, 2U), x_h (B, U) and h (B, U):
    (z and r (B, 2U), u_h (B, U), hh (B, U), h_new (B, U))."""
    units = h.shape[-1]
    u_zr, u_h = tf.split(tf.nn.bias_add(tf.matmul(h, recurrent_kernel), recurrent_bias),
                         [2 * units, units], axis=1)
    zr = tf.sigmoid(x_zr + u_zr)
    z, r = tf.split(zr, 2, axis=1)
    hh = tf.tanh(x_h + r * u_h)
    return zr, u_h, hh, hh + z * (h - hh)  # z h + (1 - z) hh


def _input_parts(projected, units):
    """Each (T, B, 3U) projection -> its (T, B, 2U) gate part and (T, B, U) candidate part."""
    return zip(*(tf.split(p, [2 * units, units], axis=2) for p in projected))


def _forward_only(recurrent_kernel, recurrent_bias, *slices):
    """The recurrence without records; ``slices`` = projected..., h0..., mask..."""
    projected, h0, mask = unflatten(slices, 3)
    units = recurrent_kernel.shape[0]
    keep = [keep_mask(m, units) for m in mask]
    x_zr, x_h = _input_parts(projected, units)
    steps = tf.shape(projected[0])[0]
    written = [tf.TensorArray(p.dtype, size=steps, element_shape=h.shape)
               for p, h in zip(projected, h0)]

    def step(t, hs, outputs):
        for g, h in enumerate(hs):
            *_, h_new = gru_step(x_zr[g][t], x_h[g][t], h, recurrent_kernel, recurrent_bias)
            hs[g] = tf.where(keep[g][t], h_new, h)  # a masked step keeps h (Keras' rule)
            outputs[g] = outputs[g].write(t, hs[g])
        return t + 1, hs, outputs

    _, h_last, outputs = tf.while_loop(
        lambda t, *_: t < steps, step, (tf.constant(0), list(h0), written),
        parallel_iterations=32)
    return [o.stack() for o in outputs] + h_last


@tf.custom_gradient
def _recurrence(recurrent_kernel, recurrent_bias, *slices):
    """:func:`_forward_only` plus the records :func:`_backward` needs,
    differentiable through it."""
    projected, h0, mask = unflatten(slices, 3)
    units = recurrent_kernel.shape[0]
    keep = [keep_mask(m, units) for m in mask]
    x_zr, x_h = _input_parts(projected, units)
    steps = tf.shape(projected[0])[0]

    def records(width):
        # Element shapes let a zero-step loop (a batch of empty texts) still stack.
        return [tf.TensorArray(p.dtype, size=steps,
                               element_shape=tf.TensorShape([h.shape[0], width]))
                for p, h in zip(projected, h0)]

    def step(t, hs, gates, recurrent_h, candidates, outputs):
        for g, h in enumerate(hs):
            zr, u_h, hh, h_new = gru_step(x_zr[g][t], x_h[g][t], h, recurrent_kernel,
                                          recurrent_bias)
            hs[g] = tf.where(keep[g][t], h_new, h)
            gates[g] = gates[g].write(t, zr)
            recurrent_h[g] = recurrent_h[g].write(t, u_h)
            candidates[g] = candidates[g].write(t, hh)
            outputs[g] = outputs[g].write(t, hs[g])
        return t + 1, hs, gates, recurrent_h, candidates, outputs

    _, h_last, *written = tf.while_loop(
        lambda t, *_: t < steps, step,
        (tf.constant(0), list(h0), records(2 * units), records(units), records(units),
         records(units)),
        parallel_iterations=32)
    gates, recurrent_h, candidates, outputs = ([r.stack() for r in kind] for kind in written)

    def grad(*upstream):
        d_outputs, d_h_last = unflatten(upstream, 2)
        # An output nobody used arrives as None.
        d_outputs = [tf.zeros_like(o) if d is None else d for d, o in zip(d_outputs, outputs)]
        d_h_last = [tf.zeros_like(h) if d is None else d for d, h in zip(d_h_last, h0)]
        d_kernel, d_bias, d_projected, d_h0 = _backward(
            d_outputs, d_h_last, recurrent_kernel, h0, mask, keep, gates, recurrent_h,
            candidates, outputs)
        return [d_kernel, d_bias, *d_projected, *d_h0, *(tf.zeros_like(m) for m in mask)]

    return outputs + h_last, grad


def _backward(d_outputs, d_h_last, recurrent_kernel, h0, mask, keep, gates, recurrent_h,
              candidates, outputs):
    """Backprop through time for every slice in one loop: the gradients of
    (recurrent_kernel, recurrent_bias, projected (list), h0 (list)).

    Before the loop, for all steps (T, B, .): the factors that turn g (the
    gradient reaching h') into d u = [g, g, g] * factors_u and into
    d a_h = g * factor_h, masked so that a masked step contributes nothing.
    In the loop: d h <- m ? g z + d u @ U^T : g, with g = d h + d output_t.
    """
    units = recurrent_kernel.shape[0]
    slices = len(h0)
    steps = tf.shape(outputs[0])[0]
    h_prev = [tf.concat([h[None], o[:-1]], axis=0) for h, o in zip(h0, outputs)]
    factors = []
    for zr, u_h, hh, h_before, m in zip(gates, recurrent_h, candidates, h_prev, mask):
        z, r = tf.split(zr, 2, axis=2)  # (T, B, U) each
        factor_h = m * (1 - z) * (1 - hh * hh)  # d a_h / g
        factor_u = tf.concat([m * (h_before - hh) * z * (1 - z),
                              factor_h * u_h * r * (1 - r), factor_h * r], axis=2)
        factors.append((factor_u, factor_h, z))
    kernel_t = tf.transpose(recurrent_kernel)  # (3U, U)

    def step(t, d_hs, d_u_seqs, g_seqs):
        for g in range(slices):
            factor_u, _, z = factors[g]
            reaching = d_hs[g] + d_outputs[g][t]  # (B, U): everything that reaches h_t
            d_u = tf.concat([reaching, reaching, reaching], axis=1) * factor_u[t]  # (B, 3U)
            d_hs[g] = tf.where(keep[g][t], reaching * z[t] + tf.matmul(d_u, kernel_t), reaching)
            d_u_seqs[g] = d_u_seqs[g].write(t, d_u)
            g_seqs[g] = g_seqs[g].write(t, reaching)
        return t - 1, d_hs, d_u_seqs, g_seqs

    _, d_h0, d_u_seqs, g_seqs = tf.while_loop(
        lambda t, *_: t >= 0, step,
        (steps - 1, list(d_h_last),
         [tf.TensorArray(o.dtype, size=steps,
                         element_shape=tf.TensorShape([zr.shape[1], 3 * units]))
          for o, zr in zip(outputs, gates)],
         [tf.TensorArray(o.dtype, size=steps, element_shape=o.shape[1:])
          for o in outputs]),
        parallel_iterations=32)
    d_u = [d.stack() for d in d_u_seqs]  # (T, B, 3U) each
    d_projected = [tf.concat([d[:, :, :2 * units], g.stack() * factor_h], axis=2)
                   for d, g, (_, factor_h, _) in zip(d_u, g_seqs, factors)]
    d_kernel = tf.add_n([
        tf.matmul(tf.reshape(h, [-1, units]), tf.reshape(d, [-1, 3 * units]), transpose_a=True)
        for h, d in zip(h_prev, d_u)])
    d_bias = tf.add_n([tf.reduce_sum(d, axis=[0, 1]) for d in d_u])
    return d_kernel, d_bias, d_projected, d_h0


@keras.saving.register_keras_serializable(package="textclf")
class FusedGRU(keras.layers.GRU):
    """``keras.layers.GRU`` with the fused CPU loop of this module (same weights)."""

    #: Row slices whose recurrences run side by side (see FusedLSTM).
    batch_groups = FusedLSTM.batch_groups

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """(B, T, D) -> (last output (B, U), outputs (B, T, U), [h_T]), as Keras."""
        if not fused_path_applies(self, training):
            return keras_loop_with_empty_rows(super().inner_loop, sequences, initial_state,
                                              mask, training)
        if isinstance(initial_state, (list, tuple)):
            initial_state = initial_state[0]
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        dtype = loop_dtype(sequences.dtype)
        cell = self.cell
        input_bias, recurrent_bias = (tf.cast(cell.bias[k], dtype) for k in (0, 1))
        recurrent_kernel = tf.cast(cell.recurrent_kernel, dtype)
        # Cut before going time-major, where a row slice is contiguous.
        pieces = [self._time_major_slice(*piece, dtype, input_bias) for piece in
                  split_batch([sequences, mask, initial_state], self.batch_groups)]
        projected, mask, h0 = (list(part) for part in zip(*pieces))
        outputs, last_output, h = gru_recurrence(
            projected, recurrent_kernel, recurrent_bias, h0, mask, training=bool(training))
        outputs = [tf.transpose(o, [1, 0, 2]) for o in outputs]  # (B', T, U) each
        outputs, last_output, h = (tf.concat(part, axis=0)
                                   for part in (outputs, last_output, h))
        return last_output, outputs, [h]

    def _time_major_slice(self, sequences, mask, h0, dtype, input_bias):
        """One row slice (B', T, D) -> projections (T, B', 3U), mask (T, B', 1),
        h0 (B', U), in the loop's ``dtype``."""
        inputs, mask = time_major(sequences, mask, self.go_backwards, dtype)
        projected = tf.tensordot(inputs, tf.cast(self.cell.kernel, inputs.dtype), 1)
        projected = tf.cast(projected, dtype) + input_bias  # (T, B', 3U)
        return projected, mask, tf.cast(h0, dtype)
