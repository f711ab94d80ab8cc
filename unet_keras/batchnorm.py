"""How BatchNormalization is computed: Keras' layer, TensorFlow's fused kernel, or folded away.

The U-Net's batch norms can be built three ways (``build_unet(config, batchnorm=...)``), all
with the same weights and results:

* ``"keras"``: Keras' ``BatchNormalization``. What every saved model holds.
* ``"fused"``: :class:`FusedBatchNormalization`, for training (below).
* ``"folded"``: for prediction. In inference mode a batch norm is a per-channel affine map, so
  it folds into the convolution before it (:func:`fold_batchnorm`); the ``{name}_bn{i}``
  layers become ``Identity`` and oneDNN runs convolution, bias and ReLU as one primitive.

Keras 3's ``BatchNormalization`` builds batch norm from small ops (moments, then scale and
shift, and their gradients), and under ``mixed_bfloat16`` casts every input to float32 and the
output back. On the paper's U-Net that is 7% of a float32 training step and about 16% of a
bfloat16 one. :class:`FusedBatchNormalization` is the same layer (same weights, names, math and
moving-average update) whose ``call`` runs ``FusedBatchNormV3``: one op forward, one backward,
reading bfloat16 directly.

The fused layer is an implementation detail of training speed, not of the architecture:
files the project writes for others (``model.keras``, ``last.keras``) are rebuilt with Keras'
own ``BatchNormalization`` (see ``unet_keras.training.export_float32``), so they load in plain
Keras. The layer is registered as serializable all the same, so a model holding it saves and
loads with ``safe_mode=True`` wherever ``unet_keras`` is imported.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

#: The ways ``build_unet`` can build the batch norms (see the module docstring).
BATCHNORM_KINDS = ("keras", "fused", "folded")

#: cuDNN's fused batch norm (GPU) rejects a smaller epsilon; the layer falls back to Keras'
#: ``call`` below it on every device, so CPU and GPU compute the same thing.
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


def fold_batchnorm(model: keras.Model, folded: keras.Model) -> None:
    """Copy ``model``'s weights into ``folded``, the same U-Net built with
    ``batchnorm="folded"``, folding each ``{name}_bn{i}`` into ``{name}_conv{i}``.

    With ``s = gamma / sqrt(moving_variance + epsilon)`` per output channel, the convolution
    gets ``kernel * s`` and bias ``(bias - moving_mean) * s + beta`` (computed in float64, stored
    float32), which is the inference-mode ``BatchNormalization(conv(x))``. Other layers are
    copied as they are. Raises ``ValueError`` if ``folded`` still has batch norms (its weights
    would then apply them twice) or the two models' weighted layers do not correspond.
    """
    if any(isinstance(layer, layers.BatchNormalization) for layer in folded.layers):
        raise ValueError(f"model {folded.name!r} has BatchNormalization layers: build it with "
                         "batchnorm='folded' to fold the batch norms into it")
    source = {layer.name: layer for layer in model.layers}
    unused = {name for name, layer in source.items()
              if layer.weights and not isinstance(layer, layers.BatchNormalization)}
    for layer in folded.layers:
        if not layer.weights:
            continue
        if layer.name not in source:
            raise ValueError(f"model {model.name!r} has no layer {layer.name!r} to copy")
        weights = source[layer.name].get_weights()
        bn = source.get(layer.name.replace("_conv", "_bn")) if "_conv" in layer.name else None
        if isinstance(bn, layers.BatchNormalization):
            gamma, beta, mean, variance = (w.astype(np.float64) for w in bn.get_weights())
            scale = gamma / np.sqrt(variance + bn.epsilon)
            kernel, bias = (w.astype(np.float64) for w in weights)
            weights = [(kernel * scale).astype(np.float32),
                       ((bias - mean) * scale + beta).astype(np.float32)]
        layer.set_weights(weights)
        unused.discard(layer.name)
    if unused:
        raise ValueError(f"model {folded.name!r} has no layer for the weights of "
                         f"{', '.join(sorted(unused))} of model {model.name!r}")
