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
- the batch is cut into one row slice per core, whose recurrences run side
  by side in one loop (:attr:`FusedLSTM.batch_groups`);
- under mixed precision the projection, ``dW`` and ``dX`` run in the
  compute dtype; the loop and ``dU`` stay float32 (``dU`` in bfloat16 made a
  training step a few percent faster, but bbc_rnn's test accuracy over
  train.seed 13/14/15 was 94.2/95.1/95.5% against 95.5/95.1/96.0% in float32);
- prediction and validation run a lean loop that records nothing for a
  backward pass.

So each step does one small matmul each way instead of two forward and four
backward. Where textclf's native ops are built (:mod:`textclf.kernels`) and
the loop runs in float32, :func:`native_lstm` runs the same recurrence in
two C++ ops instead of a graph loop (batch-major, the bias added inside, no
batch slices: the ops spread the rows over the intra-op threads themselves),
and in training a third op computes ``dX``, ``dW`` and ``dU`` in one pass
(:func:`native_lstm_training`);
the graph loop below stays for float64, for machines without the ops, and
as their reference in the tests. Masking follows Keras exactly (a masked step
carries ``h`` and ``c`` and repeats the previous output), so outputs and gradients equal the stock
layer's to float rounding; ``tests/test_fused_lstm.py`` checks both against
Keras and against the NumPy reference. On a GPU, or with options the fused
loop does not cover (recurrent dropout, other activations, unrolling), the
layer defers to Keras, which keeps the cuDNN kernel; empty rows, which
Keras' cuDNN path refuses, go through :func:`keras_loop_with_empty_rows`.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from ..kernels import native_lstm_available, native_ops


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

    The batch comes as row slices whose recurrences run side by side in one
    loop: ``projected``, ``h0``, ``c0`` and ``mask`` are equally long lists,
    one entry per slice. For slice ``g``: ``projected[g]`` (T, B_g, 4U) =
    (x_t @ kernel + bias) * gate_scale, time-major, gates in Keras' order i,
    f, c, o; ``h0[g]``, ``c0[g]`` (B_g, U); ``mask[g]`` (T, B_g, 1) in the loop
    dtype (1 = real step). ``recurrent_kernel`` (U, 4U) = U * gate_scale is
    shared. Returns lists ``outputs`` (T, B_g, U), ``last_output``, ``h_T`` and
    ``c_T`` (B_g, U); differentiable in all but the mask, through the
    hand-written :func:`_backward` when ``training``. Otherwise a lean loop
    keeps nothing for a backward pass (prediction, validation: at T = 600 and
    B = 64 the records take 0.1 GB); TensorFlow can still differentiate it,
    the slow generic way (``textclf check --gradients`` does, and compares
    with the reference nets).

    The slices share one ``tf.while_loop``: each step's per-slice products
    are independent, so the executor runs them on different cores at once (as
    fast as a loop per slice, measured in one process, and the slices cannot
    drift apart).

    Keras' masking rule: a masked step carries h and c and repeats the previous
    *output*, which starts at zeros, not at h0; so a step before a row's first
    real one outputs zeros (the states are equal from the first real step on).
    """
    slices = len(projected)
    run = _recurrence if training else _forward_only
    flat = run(recurrent_kernel, *projected, *h0, *c0, *mask)
    states, h_last, c_last = (flat[k * slices:(k + 1) * slices] for k in range(3))
    outputs, last_output = keras_outputs(states, h_last, mask)
    return outputs, last_output, h_last, c_last


def keras_outputs(states, h_last, mask):
    """Per slice, the loop's states (T, B, U) and final h (B, U) -> the
    outputs and last output Keras gives: zeros before a row's first real step
    (a masked step repeats the previous output, which starts at zeros, not at
    h0), and a zero last output for a row with no real step."""
    emitted = [tf.cast(tf.cumsum(m, axis=0) > 0, s.dtype) for m, s in zip(mask, states)]
    last_output = [h * tf.cast(tf.reduce_any(m > 0, axis=0), h.dtype)
                   for h, m in zip(h_last, mask)]
    return [s * e for s, e in zip(states, emitted)], last_output


def loop_dtype(compute_dtype):
    """The recurrence's dtype: float32 under mixed precision (the matmuls over
    all steps run in the 16-bit compute dtype, the loop keeps float32 states,
    as cuDNN does), else the compute dtype itself."""
    return tf.float32 if compute_dtype in (tf.bfloat16, tf.float16) else compute_dtype


def lstm_step(z, c):
    """One cell update from gate-scaled pre-activations z (B, 4U) and c (B, U):
    (all four gates after their activations (B, 4U), c_new, h_new)."""
    s = tf.sigmoid(z)
    i, f, g2, o = tf.split(s, 4, axis=1)  # g2 = sigmoid(2 z_c); tanh(z_c) = 2 g2 - 1
    c_new = f * c + i * (2 * g2 - 1)
    return s, c_new, o * tf.tanh(c_new)


def keep_mask(mask, units):
    """(T, B, 1) mask -> (T, B, U) bool, so that the loops' selects take
    operands of one shape (TensorFlow's broadcasting select is its slow path)."""
    shape = tf.shape(mask)
    return tf.broadcast_to(mask > 0, tf.stack([shape[0], shape[1], units]))


def unflatten(args, parts: int):
    """(a_1..a_n, b_1..b_n, ...) -> [(a_1..a_n), (b_1..b_n), ...] in ``parts`` groups."""
    size = len(args) // parts
    return [list(args[k * size:(k + 1) * size]) for k in range(parts)]


def _forward_only(recurrent_kernel, *slices):
    """The recurrence without the per-step records of :func:`_recurrence`;
    ``slices`` = projected..., h0..., c0..., mask... (one of each per slice)."""
    projected, h0, c0, mask = unflatten(slices, 4)
    units = recurrent_kernel.shape[0]
    keep = [keep_mask(m, units) for m in mask]
    steps = tf.shape(projected[0])[0]
    written = [tf.TensorArray(p.dtype, size=steps, element_shape=h.shape)
               for p, h in zip(projected, h0)]

    def step(t, hs, cs, outputs):
        for g, (h, c) in enumerate(zip(hs, cs)):
            _, c_new, h_new = lstm_step(projected[g][t] + tf.matmul(h, recurrent_kernel), c)
            hs[g], cs[g] = tf.where(keep[g][t], h_new, h), tf.where(keep[g][t], c_new, c)
            outputs[g] = outputs[g].write(t, hs[g])
        return t + 1, hs, cs, outputs

    _, h_last, c_last, outputs = tf.while_loop(
        lambda t, *_: t < steps, step, (tf.constant(0), list(h0), list(c0), written),
        parallel_iterations=32)
    return [o.stack() for o in outputs] + h_last + c_last


@tf.custom_gradient
def _recurrence(recurrent_kernel, *slices):
    """:func:`_forward_only` plus what :func:`_backward` needs, differentiable through it."""
    projected, h0, c0, mask = unflatten(slices, 4)
    units = recurrent_kernel.shape[0]
    keep = [keep_mask(m, units) for m in mask]
    steps = tf.shape(projected[0])[0]

    def records(shape_of):
        # Element shapes let a zero-step loop (a batch of empty texts) still stack.
        return [tf.TensorArray(p.dtype, size=steps, element_shape=shape_of(p, h))
                for p, h in zip(projected, h0)]

    written = (records(lambda p, h: p.shape[1:]), records(lambda p, h: h.shape),
               records(lambda p, h: h.shape))

    def step(t, hs, cs, sigmoids, cells, outputs):
        for g, (h, c) in enumerate(zip(hs, cs)):
            s, c_new, h_new = lstm_step(projected[g][t] + tf.matmul(h, recurrent_kernel), c)
            m = keep[g][t]  # a masked step keeps h and c (Keras' rule)
            hs[g], cs[g] = tf.where(m, h_new, h), tf.where(m, c_new, c)
            sigmoids[g] = sigmoids[g].write(t, s)
            cells[g] = cells[g].write(t, cs[g])
            outputs[g] = outputs[g].write(t, hs[g])
        return t + 1, hs, cs, sigmoids, cells, outputs

    # parallel_iterations > 1 lets the executor start a step's independent
    # work (reads, writes) while the previous step finishes.
    _, h_last, c_last, sigmoids, cells, outputs = tf.while_loop(
        lambda t, *_: t < steps, step, (tf.constant(0), list(h0), list(c0), *written),
        parallel_iterations=32)
    sigmoids, cells, outputs = ([r.stack() for r in records]
                                for records in (sigmoids, cells, outputs))

    def grad(*upstream):
        d_outputs, d_h_last, d_c_last = unflatten(upstream, 3)
        # An output nobody used arrives as None.
        d_outputs = [tf.zeros_like(o) if d is None else d for d, o in zip(d_outputs, outputs)]
        d_h_last = [tf.zeros_like(h) if d is None else d for d, h in zip(d_h_last, h0)]
        d_c_last = [tf.zeros_like(c) if d is None else d for d, c in zip(d_c_last, c0)]
        d_projected, d_kernel, d_h0, d_c0 = _backward(
            d_outputs, d_h_last, d_c_last, recurrent_kernel, h0, c0, mask, keep,
            sigmoids, cells, outputs)
        return [d_kernel, *d_projected, *d_h0, *d_c0, *(tf.zeros_like(m) for m in mask)]

    return outputs + h_last + c_last, grad


def native_lstm(projected, bias, recurrent_kernel, h0, c0, mask, training: bool = True):
    """The LSTM recurrence in textclf's native ops (:mod:`textclf.kernels`),
    float32, batch-major: ``projected`` (B, T, 4U) = x_t @ kernel * gate_scale,
    ``bias`` (4U,) and ``recurrent_kernel`` (U, 4U) times gate_scale, ``h0``,
    ``c0`` (B, U), ``mask`` (B, T) float (1 = real step). Returns Keras'
    outputs (B, T, U) (zeros before a row's first real step), h_T and c_T
    (B, U); differentiable in all but the mask (the hand-written backward op,
    then one large matmul for the recurrent kernel's gradient). Without
    ``training`` nothing is recorded for a backward pass; a gradient, if one
    is asked for (``textclf check --gradients``), reruns the forward with its
    records first."""
    return (_native_recurrence if training else _native_forward_only)(
        projected, bias, recurrent_kernel, h0, c0, mask)


def _native_backward(upstream, records, recurrent_kernel, c0, mask):
    """The backward op on the forward op's ``records``: ``d_projected``
    (B, T, 4U), ``d_bias`` (4U,), ``d_h0`` and ``d_c0`` (B, U)."""
    d_outputs, d_h_last, d_c_last = (tf.zeros_like(like) if d is None else d  # unused outputs
                                     for d, like in zip(upstream, records[:3]))
    return native_ops().textclf_lstm_backward(
        d_outputs, d_h_last, d_c_last, recurrent_kernel, c0, mask, *records[3:5])


def h_before_each_step(outputs, h0, mask):
    """h before each step, (B, T, U), from Keras' ``outputs`` (B, T, U), ``h0``
    (B, U) and ``mask`` (B, T) float: the output of the step before once a row
    has had a real step (a masked step carries h, and its output repeats the
    last one), else ``h0`` (outputs are zeros before a row's first real step).
    The native gradients op reads it the same way, without building it."""
    before = tf.concat([h0[:, None], outputs[:, :-1]], axis=1)
    started = tf.cumsum(mask, axis=1, exclusive=True) > 0  # (B, T): a real step came before
    return tf.where(started[..., None], before, h0[:, None])


def _native_gradients(upstream, records, recurrent_kernel, h0, c0, mask):
    """The gradients of :func:`native_lstm`'s inputs from the forward op's ``records``."""
    d_projected, d_bias, d_h0, d_c0 = _native_backward(upstream, records, recurrent_kernel,
                                                       c0, mask)
    # dU = sum over steps of h_{t-1}^T dz_t: one (U, B*T) x (B*T, 4U) matmul.
    units = recurrent_kernel.shape[0]
    h_prev = h_before_each_step(records[0], h0, mask)
    d_kernel = tf.matmul(tf.reshape(h_prev, [-1, units]),
                         tf.reshape(d_projected, [-1, 4 * units]), transpose_a=True)
    return d_projected, d_bias, d_kernel, d_h0, d_c0, tf.zeros_like(mask)


@tf.custom_gradient
def _native_recurrence(projected, bias, recurrent_kernel, h0, c0, mask):
    """:func:`native_lstm` for training: the forward op keeps its records."""
    records = native_ops().textclf_lstm_forward(projected, bias, recurrent_kernel, h0, c0, mask,
                                                record=True)

    def grad(*upstream):
        return _native_gradients(upstream, records, recurrent_kernel, h0, c0, mask)

    return records[:3], grad


@tf.custom_gradient
def native_lstm_training(inputs, kernel, bias, recurrent_kernel, h0, c0, mask):
    """:func:`native_lstm` for training with its input projection included:
    ``inputs`` (B, T, D) and ``kernel`` (D, 4U, gate-scaled like the other
    weights), both float32, instead of ``projected``; returns the same. Its
    gradient takes ``dX``, ``dW`` and ``dU`` from one op
    (``textclf_lstm_gradients``), which reads ``d_projected`` from memory once
    for all three and packs the operands of ``dW = X^T dZ`` and
    ``dU = H^T dZ`` for its own register tiles: both are sums over all B*T
    steps, a shape for which oneDNN's product ran at about 55% of its peak here."""
    projected = tf.tensordot(inputs, kernel, 1)  # (B*T, D) x (D, 4U) in one matmul
    records = native_ops().textclf_lstm_forward(projected, bias, recurrent_kernel, h0, c0, mask,
                                                record=True)

    def grad(*upstream):
        d_projected, d_bias, d_h0, d_c0 = _native_backward(upstream, records, recurrent_kernel,
                                                           c0, mask)
        d_inputs, d_kernel, d_recurrent = native_ops().textclf_lstm_gradients(
            inputs, records[0], h0, mask, d_projected, kernel)
        return d_inputs, d_kernel, d_bias, d_recurrent, d_h0, d_c0, tf.zeros_like(mask)

    return records[:3], grad


@tf.custom_gradient
def _native_forward_only(projected, bias, recurrent_kernel, h0, c0, mask):
    """:func:`native_lstm` for prediction and validation: nothing recorded."""
    forward = native_ops().textclf_lstm_forward
    results = forward(projected, bias, recurrent_kernel, h0, c0, mask, record=False)

    def grad(*upstream):
        records = forward(projected, bias, recurrent_kernel, h0, c0, mask, record=True)
        return _native_gradients(upstream, records, recurrent_kernel, h0, c0, mask)

    return results[:3], grad


def _gate_factors(sigmoids, cells, c0, mask):
    """What the backward loop multiplies by, for all steps at once: (d c_new /
    d h_new (T, B, U), d z' / d [c_new, c_new, c_new, h_new] (T, B, 4U), f (T, B, U))."""
    i, f, g2, o = tf.split(sigmoids, 4, axis=2)  # (T, B, U) each
    g = 2 * g2 - 1
    c_prev = tf.concat([c0[None], cells[:-1]], axis=0)
    tanh_c = tf.tanh(cells)
    through_h = o * (1 - tanh_c * tanh_c)
    factors = mask * tf.concat(
        [g * i * (1 - i), c_prev * f * (1 - f), 0.5 * i * (1 - g * g), tanh_c * o * (1 - o)],
        axis=2)
    return through_h, factors, f


def _backward(d_outputs, d_h_last, d_c_last, recurrent_kernel, h0, c0, mask, keep,
              sigmoids, cells, outputs):
    """Backprop through time for every slice in one loop; returns the gradients
    of (projected (list), recurrent_kernel, h0 (list), c0 (list)), the first
    two in their gate-scaled form.

    Everything that does not depend on the carried gradients is computed for
    all steps at once before the loop (T, B, .) so that the loop runs one
    matmul and a handful of element-wise operations per step and slice (z' =
    the scaled pre-activations; d tanh(z_c) / d z'_c = (1 - g^2) / 2):

        d_c_new = d_c + d_h * o (1 - tanh(c)^2)
        d_z'    = [d_c_new, d_c_new, d_c_new, d_h] * [g i', c_prev f', i g' / 2, tanh(c) o'] m
        d_h    <- m ? d_z' @ U'^T : d_h        d_c <- m ? d_c_new f : d_c

    At a masked step (m = 0) the state passed through unchanged, so the
    gradient does too; there the stored cell is c_prev, not c_new, which is
    harmless because every term that reads it is multiplied by m = 0.
    """
    slices = len(h0)
    steps = tf.shape(outputs[0])[0]
    units = recurrent_kernel.shape[0]
    factors = [_gate_factors(s, c, c_start, m)
               for s, c, c_start, m in zip(sigmoids, cells, c0, mask)]
    kernel_t = tf.transpose(recurrent_kernel)  # (4U, U)

    def step(t, d_hs, d_cs, d_z_seqs):
        for g in range(slices):
            through_h, gate_factors, forget = factors[g]
            d_h = d_hs[g] + d_outputs[g][t]  # (B, U): everything that reaches h_t
            # Unmasked: at a masked step the selects below discard d_c_new, and
            # the gate factors (masked) zero its share of d_z.
            d_c_new = d_cs[g] + d_h * through_h[t]
            d_z = tf.concat([d_c_new, d_c_new, d_c_new, d_h], axis=1) * gate_factors[t]
            d_hs[g] = tf.where(keep[g][t], tf.matmul(d_z, kernel_t), d_h)
            d_cs[g] = tf.where(keep[g][t], d_c_new * forget[t], d_cs[g])
            d_z_seqs[g] = d_z_seqs[g].write(t, d_z)
        return t - 1, d_hs, d_cs, d_z_seqs

    _, d_h0, d_c0, d_z_seqs = tf.while_loop(
        lambda t, *_: t >= 0, step,
        (steps - 1, list(d_h_last), list(d_c_last),
         [tf.TensorArray(o.dtype, size=steps, element_shape=s.shape[1:])
          for o, s in zip(outputs, sigmoids)]),
        parallel_iterations=32)
    d_projected = [d.stack() for d in d_z_seqs]  # (T, B, 4U) each
    h_prev = [tf.concat([h[None], o[:-1]], axis=0) for h, o in zip(h0, outputs)]
    d_kernel = tf.add_n([
        tf.matmul(tf.reshape(h, [-1, units]), tf.reshape(d, [-1, 4 * units]), transpose_a=True)
        for h, d in zip(h_prev, d_projected)])
    return d_projected, d_kernel, d_h0, d_c0


def fused_path_applies(layer: keras.layers.RNN, training: bool) -> bool:
    """True when a fused CPU loop (LSTM, or GRU with ``reset_after``) computes
    exactly what Keras' loop would."""
    cell = layer.cell
    return (keras.backend.backend() == "tensorflow"
            and not tf.config.list_logical_devices("GPU")  # cuDNN's kernel is better
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and cell.use_bias and not cell.recurrent_dropout
            and getattr(cell, "reset_after", True)  # GRU: only cuDNN's variant is fused
            and not (training and cell.dropout)
            and not layer.unroll)


def keras_loop_with_empty_rows(inner_loop, sequences, initial_state, mask, training):
    """Keras' own loop (cuDNN's kernel on a GPU) for a batch that may hold rows
    with no real step: empty documents.

    cuDNN takes a sequence length per row and Keras asserts at run time that
    none is 0 ("... while using cuDNN, which is not supported"), so a batch
    with one empty text would fail on a GPU. Such a row is given its first
    step as real, then its results are set to what Keras' generic loop gives
    it: zero outputs, a zero last output and the initial state. Other rows
    are untouched, and without a mask nothing changes.
    """
    if isinstance(mask, (list, tuple)):
        mask = mask[0]
    if mask is None:
        return inner_loop(sequences, initial_state, mask, training)
    mask = tf.cast(mask, tf.bool)  # (B, T)
    empty = tf.logical_not(tf.reduce_any(mask, axis=1))  # (B,)
    first_step = tf.equal(tf.range(tf.shape(mask)[1]), 0)  # (T,)
    mask = tf.logical_or(mask, tf.logical_and(empty[:, None], first_step[None, :]))
    last_output, outputs, states = inner_loop(sequences, initial_state, mask, training)
    kept = tf.cast(tf.logical_not(empty), outputs.dtype)
    initial = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
    states = [tf.where(empty[:, None], tf.cast(s0, s.dtype), s)
              for s, s0 in zip(states, initial)]
    return last_output * kept[:, None], outputs * kept[:, None, None], states


def time_major(sequences, mask, go_backwards: bool, mask_dtype):
    """(B, T, D) inputs and (B, T) bool mask or None -> time-major (T, B, D)
    inputs and (T, B, 1) mask in ``mask_dtype`` (ones for None), both in
    processing order (reversed for ``go_backwards``)."""
    inputs = tf.transpose(sequences, [1, 0, 2])
    if mask is None:
        mask = tf.ones_like(inputs[:, :, :1], dtype=mask_dtype)
    else:
        mask = tf.cast(tf.transpose(mask)[:, :, None], mask_dtype)
    if go_backwards:
        inputs, mask = tf.reverse(inputs, [0]), tf.reverse(mask, [0])
    return inputs, mask


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

    #: Row slices of a batch whose recurrences run side by side: one per usable
    #: core. The rows are independent, so the executor runs the slices'
    #: small per-step matmuls on different cores at once; one (B, U) x (U, 4U)
    #: matmul is too small to share between cores with profit
    #: (scripts/bench_lstm.py times 1 slice against N).
    batch_groups = max(1, len(os.sched_getaffinity(0)))

    #: Run the recurrence in textclf's native ops where they are built and the
    #: loop is float32 (:mod:`textclf.kernels`); False keeps the graph loop.
    native_loop = True

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """(B, T, D) -> (last output (B, U), outputs (B, T, U), [h_T, c_T]), as Keras."""
        if not fused_path_applies(self, training):
            return keras_loop_with_empty_rows(super().inner_loop, sequences, initial_state,
                                              mask, training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        dtype = loop_dtype(sequences.dtype)
        scale = gate_scale(self.units, dtype)
        recurrent_kernel = tf.cast(self.cell.recurrent_kernel, dtype) * scale
        if self.native_loop and native_lstm_available(dtype):
            return self._native_inner_loop(sequences, mask, initial_state, recurrent_kernel,
                                           scale, bool(training))
        # Cut before going time-major, where a row slice is contiguous.
        pieces = [self._time_major_slice(*piece, dtype, scale) for piece in
                  split_batch([sequences, mask, *initial_state], self.batch_groups)]
        projected, mask, h0, c0 = (list(part) for part in zip(*pieces))
        outputs, last_output, h, c = scaled_lstm_recurrence(
            projected, recurrent_kernel, h0, c0, mask, training=bool(training))
        outputs = [tf.transpose(o, [1, 0, 2]) for o in outputs]  # (B', T, U) each
        outputs, last_output, h, c = (tf.concat(part, axis=0)
                                      for part in (outputs, last_output, h, c))
        return last_output, outputs, [h, c]

    def _native_inner_loop(self, sequences, mask, initial_state, recurrent_kernel, scale,
                           training: bool):
        """:meth:`inner_loop` in textclf's native ops (float32 loop): batch-major
        throughout, so no transposes, and the bias added inside the loop."""
        cell = self.cell
        if mask is None:
            mask = tf.ones(tf.shape(sequences)[:2], tf.float32)
        mask = tf.cast(mask, tf.float32)  # (B, T)
        if self.go_backwards:
            sequences, mask = tf.reverse(sequences, [1]), tf.reverse(mask, [1])
        kernel = tf.cast(cell.kernel, tf.float32) * scale
        bias = tf.cast(cell.bias, tf.float32) * scale
        h0, c0 = (tf.cast(state, tf.float32) for state in initial_state)
        if training and sequences.dtype == tf.float32:
            outputs, h, c = native_lstm_training(sequences, kernel, bias, recurrent_kernel,
                                                 h0, c0, mask)
        else:
            # In the compute dtype (bfloat16 under mixed precision), the loop in
            # float32. tensordot: one (B*T, D) x (D, 4U) matmul, where matmul's
            # broadcast would run B batched products and sum B kernel gradients.
            projected = tf.cast(tf.tensordot(sequences, tf.cast(kernel, sequences.dtype), 1),
                                tf.float32)  # (B, T, 4U)
            outputs, h, c = native_lstm(projected, bias, recurrent_kernel, h0, c0, mask,
                                        training=training)
        last_output = h * tf.cast(tf.reduce_any(mask > 0, axis=1), h.dtype)[:, None]
        return last_output, outputs, [h, c]

    def _time_major_slice(self, sequences, mask, h0, c0, dtype, scale):
        """One row slice (B', T, D) -> the recurrence's inputs: gate-scaled
        projections (T, B', 4U), mask (T, B', 1), h0 and c0 (B', U), in the loop's ``dtype``."""
        cell = self.cell
        inputs, mask = time_major(sequences, mask, self.go_backwards, dtype)
        kernel = tf.cast(cell.kernel, dtype) * scale
        projected = tf.tensordot(inputs, tf.cast(kernel, inputs.dtype), 1)  # (T, B', 4U)
        projected = tf.cast(projected, dtype) + tf.cast(cell.bias, dtype) * scale
        return projected, mask, tf.cast(h0, dtype), tf.cast(c0, dtype)
