"""BatchNormalization computed by TensorFlow's fused kernel, for training speed.

Keras 3's ``BatchNormalization`` builds batch norm from small ops (moments, then scale and
shift, and their gradients), and under ``mixed_bfloat16`` casts every input to float32 and the
output back. On the paper's U-Net that is 7% of a float32 training step and about 16% of a
bfloat16 one. :class:`FusedBatchNormalization` is the same layer (same weights, names, math and
moving-average update) whose ``call`` runs ``FusedBatchNormV3``: one op forward, one backward,
reading bfloat16 directly.

It is an implementation detail of training and prediction speed, not of the architecture:
files the project writes for others (``model.keras``, ``last.keras``) are rebuilt with Keras'
own ``BatchNormalization`` (see ``unet_keras.training.export_float32``), so they load in plain
Keras. The layer is registered as serializable all the same, so a model holding it saves and
loads with ``safe_mode=True`` wherever ``unet_keras`` is imported.
"""

from __future__ import annotations

import keras
from keras import layers

#: TensorFlow's fused kernel rejects a smaller epsilon.
_MIN_FUSED_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="unet_keras")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' ``BatchNormalization`` on TensorFlow's fused kernel.

    Input and output ``(B, H, W, C)`` (channels last), in the layer's compute dtype (float32 or
    bfloat16); statistics and weights are float32. Training normalises with the biased batch
    variance and moves ``moving_mean``/``moving_variance`` by ``momentum`` exactly as the parent
    does. Anything the fused kernel cannot do (other backends, ranks or axes, masks,
    synchronized or renorm batch norm, missing ``scale``/``center``, epsilon below 1.001e-5)
    falls back to the parent's ``call``.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None
                and not self.synchronized and not self.renorm and self.scale and self.center
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.epsilon >= _MIN_FUSED_EPSILON
                and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "bfloat16"))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            # The kernel normalises with the biased variance but returns the unbiased one.
            n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
            variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))
            self.moving_mean.assign(
                self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, is_training=False)
        return tf.cast(y, self.compute_dtype)
