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

``amsgrad`` and variable dtypes the kernel does not take defer to Keras'
update. Everything around the update (clipping, weight decay, loss scaling,
tf.distribute) is Keras' own, and the moments are Keras' variables, so
checkpoints keep their layout.
"""

from __future__ import annotations

import keras
import tensorflow as tf

#: Variable dtypes ResourceApplyAdam has kernels for on every device textclf runs on.
FUSED_DTYPES = (tf.float32, tf.float64)


@keras.saving.register_keras_serializable(package="textclf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` (same arguments and state) updating through
    ``tf.raw_ops.ResourceApplyAdam``."""

    def update_step(self, gradient, variable, learning_rate):
        """One Adam step of ``variable`` (any shape) by ``gradient`` (same
        shape, or ``tf.IndexedSlices`` of its rows, repeated rows summed)."""
        target = variable.value if isinstance(variable, keras.Variable) else variable
        dtype = target.dtype
        if self.amsgrad or dtype not in FUSED_DTYPES:
            return super().update_step(gradient, variable, learning_rate)
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.math.unsorted_segment_sum(gradient.values, gradient.indices,
                                                    tf.shape(target)[0])
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=target.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))
