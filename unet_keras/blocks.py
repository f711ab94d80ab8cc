"""Small composable building blocks of the U-Net (Keras functional API).

Every block takes a symbolic tensor of shape ``(B, H, W, C)`` and a ``name`` prefix, and gives
its layers stable names (``{name}_conv1``, ``{name}_bn1`` ...) that the PyTorch mirror and the
weight converter rely on.
"""

from __future__ import annotations

import keras
from keras import layers

from unet_keras.batchnorm import BATCHNORM_KINDS, FusedBatchNormalization
from unet_keras.config import ArchConfig


def conv_bn_relu(x: keras.KerasTensor, filters: int, name: str, index: int,
                 config: ArchConfig, batchnorm: str = "keras") -> keras.KerasTensor:
    """Conv2D 3x3 'same' -> BatchNormalization -> ReLU.

    Shapes: ``(B, H, W, C) -> (B, H, W, filters)``. Layers: ``{name}_conv{index}``,
    ``{name}_bn{index}``, ``{name}_relu{index}``. ``batchnorm`` (see
    :data:`~unet_keras.batchnorm.BATCHNORM_KINDS`): ``"keras"`` Keras' layer, ``"fused"``
    :class:`~unet_keras.batchnorm.FusedBatchNormalization` (same weights and math, faster),
    ``"folded"`` an ``Identity`` named ``{name}_bn{index}``, the batch norm being folded into the
    convolution's weights (inference only, :func:`~unet_keras.batchnorm.fold_batchnorm`).
    """
    if batchnorm not in BATCHNORM_KINDS:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_KINDS}; got {batchnorm!r}")
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{index}")(x)
    bn_name = f"{name}_bn{index}"
    if batchnorm == "folded":
        x = layers.Identity(name=bn_name)(x)
    else:
        layer = FusedBatchNormalization if batchnorm == "fused" else layers.BatchNormalization
        x = layer(momentum=config.bn_momentum, epsilon=config.bn_epsilon, name=bn_name)(x)
    return layers.ReLU(name=f"{name}_relu{index}")(x)


def double_conv(x: keras.KerasTensor, filters: int, name: str, config: ArchConfig,
                batchnorm: str = "keras") -> keras.KerasTensor:
    """(Conv3x3-BN-ReLU) x 2. Shapes: ``(B, H, W, C) -> (B, H, W, filters)``."""
    x = conv_bn_relu(x, filters, name, 1, config, batchnorm)
    return conv_bn_relu(x, filters, name, 2, config, batchnorm)


def down_block(x: keras.KerasTensor, filters: int, name: str, config: ArchConfig,
               batchnorm: str = "keras") -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """DownConv block: (Conv3x3-BN-ReLU) x 2, then MaxPooling2D 2x2.

    Returns ``(skip, pooled)`` with shapes ``(B, H, W, filters)`` and
    ``(B, H/2, W/2, filters)``.
    """
    skip = double_conv(x, filters, name, config, batchnorm)
    pooled = layers.MaxPooling2D(2, name=f"{name}_pool")(skip)
    return skip, pooled


def attention_gate(skip: keras.KerasTensor, gating: keras.KerasTensor, name: str
                   ) -> keras.KerasTensor:
    """Additive attention gate (Oktay et al. 2018) on a skip connection.

    ``alpha = sigmoid(psi(relu(theta(skip) + phi(gating))))`` and the gate returns
    ``skip * alpha``. ``theta``/``phi``/``psi`` are 1x1 convolutions with
    ``F_int = max(F // 2, 1)`` intermediate channels (``psi`` has one).
    Shapes: skip ``(B, H, W, F)``, gating ``(B, H, W, G)`` -> ``(B, H, W, F)``.
    """
    f = int(skip.shape[-1])
    inter = max(f // 2, 1)
    theta = layers.Conv2D(inter, 1, use_bias=False, name=f"{name}_att_theta")(skip)
    phi = layers.Conv2D(inter, 1, name=f"{name}_att_phi")(gating)
    act = layers.ReLU(name=f"{name}_att_relu")(layers.Add(name=f"{name}_att_add")([theta, phi]))
    alpha = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_att_psi")(act)
    return layers.Multiply(name=f"{name}_att_gate")([skip, alpha])


def up_block(x: keras.KerasTensor, skip: keras.KerasTensor, filters: int, name: str,
             config: ArchConfig, batchnorm: str = "keras") -> keras.KerasTensor:
    """UpConv block: Conv2DTranspose (stride 2), [attention gate], concat with skip,
    [Dropout], (Conv3x3-BN-ReLU) x 2.

    Shapes: x ``(B, H/2, W/2, C)``, skip ``(B, H, W, filters)`` -> ``(B, H, W, filters)``.
    """
    up = layers.Conv2DTranspose(
        filters, config.transpose_kernel, strides=2, padding="same", name=f"{name}_transpose"
    )(x)
    if config.attention:
        skip = attention_gate(skip, up, name)
    x = layers.Concatenate(name=f"{name}_concat")([up, skip])
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name=f"{name}_dropout")(x)
    return double_conv(x, filters, name, config, batchnorm)
