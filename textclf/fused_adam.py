"""Adam whose update is TensorFlow's fused ``ResourceApplyAdam`` kernel.

Keras 3's ``Adam.update_step`` is written in backend-neutral ops: about ten
element-wise passes over each variable and its two moments per step. For a
(20,000 x 128) embedding that is most of the optimizer's time, and with a
sparse (``tf.IndexedSlices``) embedding gradient it densifies the gradient
twice, once for ``m`` and once for the squared values for ``v``, each a
single-threaded ``UnsortedSegmentSum`` (8.9 and 8.1 ms of CPU in a profile of
bbc_cnn's training step). :class:`FusedAdam` densifies once and hands the
gradient to the kernel TensorFlow ships for Adam, which updates var, m and v
in one pass (``scripts/bench_adam.py`` times one update both ways):

    m <- m + (g - m)(1 - beta_1)        v <- v + (g^2 - v)(1 - beta_2)
    var <- var - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

the formula Keras' class uses (epsilon outside the bias correction), so on
dense gradients the two agree to float rounding (``tests/test_fused_adam.py``).
They differ for sparse gradients with repeated rows, such as an embedding's
when a token occurs twice in a batch: Keras 3 squares each occurrence's
gradient and sums the squares into ``v``; this class squares the row's summed
gradient, as the Adam paper, Keras 2 (which merged repeated rows first) and
PyTorch's dense Adam do.

Where textclf's native kernels are built (CPU only), a float32 gradient that
arrives as rows goes to ``textclf_apply_adam_to_rows``
(``textclf/kernels/adam_kernels.cc``) instead: the same dense Adam step, with
Keras' ``clipnorm`` clipping of the rows and their summing per variable row
done inside it, in one multi-threaded pass over the variable. Densifying on
one thread, clipping in four passes and the update took 14.5-18.2 ms per step
for bbc_rnn's embedding, the op 5.6-7.2 (``python scripts/bench_adam.py
--tokens 14000``, two runs).

``amsgrad`` and variable dtypes the kernel does not take defer to Keras'
update. Everything around the update (clipping of dense gradients, weight
decay, loss scaling, tf.distribute) is Keras' own, and the moments are Keras'
variables, so checkpoints keep their layout.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from .kernels import native_adam_available, native_ops

#: Variable dtypes ResourceApplyAdam has kernels for on every device textclf runs on.
FUSED_DTYPES = (tf.float32, tf.float64)


@keras.saving.register_keras_serializable(package="textclf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` (same arguments and state) updating through
    ``tf.raw_ops.ResourceApplyAdam``, or for float32 rows on a CPU through
    textclf's ``textclf_apply_adam_to_rows``."""

    def _rows_op_takes(self, gradient) -> bool:
        """True when ``gradient`` goes to the native rows op unclipped (it
        clips the rows itself): float32 ``tf.IndexedSlices`` where the op can
        run. Depends on the gradient alone, so that :meth:`_clip_gradients`,
        which sees no variables, and :meth:`update_step` agree."""
        return (isinstance(gradient, tf.IndexedSlices) and gradient.values.dtype == tf.float32
                and not self.amsgrad and native_adam_available())

    def _clip_gradients(self, grads):
        """Keras' clipping, except for rows the native op clips (``clipnorm``
        only: ``global_clipnorm`` needs every gradient's norm first)."""
        if not (self.clipnorm and self.clipnorm > 0):
            return super()._clip_gradients(grads)
        return [g if g is None or self._rows_op_takes(g) else self._clip_by_norm(g)
                for g in grads]

    def update_step(self, gradient, variable, learning_rate):
        """One Adam step of ``variable`` (any shape) by ``gradient`` (same
        shape, or ``tf.IndexedSlices`` of its rows, repeated rows summed)."""
        target = variable.value if isinstance(variable, keras.Variable) else variable
        dtype = target.dtype
        rows_op = self._rows_op_takes(gradient)
        if rows_op and dtype != tf.float32:  # the op updates float32 variables only
            rows_op = False
            if self.clipnorm and self.clipnorm > 0:  # _clip_gradients left it to the op
                gradient = self._clip_by_norm(gradient)
        if not rows_op and (self.amsgrad or dtype not in FUSED_DTYPES):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        adam = dict(var=target.handle, m=self._momentums[index].value.handle,
                    v=self._velocities[index].value.handle,
                    beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                    lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                    epsilon=tf.cast(self.epsilon, dtype))
        if rows_op:
            native_ops().textclf_apply_adam_to_rows(
                **adam, clip_norm=tf.cast(self.clipnorm or 0.0, dtype), values=gradient.values,
                indices=gradient.indices)
            return
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.math.unsorted_segment_sum(gradient.values, gradient.indices,
                                                    tf.shape(target)[0])
        tf.raw_ops.ResourceApplyAdam(**adam, grad=tf.cast(gradient, dtype))
