"""The paper's U-Net (algorithm section), built from an :class:`~unet_keras.config.ArchConfig`.

Input ``(B, H, W, C)`` in [0, 1]  ->  output ``(B, H, W, 1)`` tumor probability (float32).

Encoder leg: ``depth`` DownConv blocks ``down1..down{depth}``, each (Conv3x3-BN-ReLU) x 2
followed by MaxPooling2D 2x2, filters ``base, 2*base, ...``. Bottleneck: (Conv3x3-BN-ReLU) x 2
with ``base * 2**depth`` filters (then Dropout when configured). Decoder leg: UpConv blocks
``up{depth}..up1``; ``up{i}`` upsamples with Conv2DTranspose (stride 2), concatenates the skip
of ``down{i}`` and applies (Conv3x3-BN-ReLU) x 2. Head: Conv2D 1x1 with sigmoid, kept in
float32 even under a mixed-precision policy.
"""

from __future__ import annotations

import keras
from keras import layers

from unet_keras.blocks import double_conv, down_block, up_block
from unet_keras.config import ArchConfig


def build_unet(config: ArchConfig | None = None, batchnorm: str = "keras") -> keras.Model:
    """Build the U-Net as a Keras functional model named ``"unet"``.

    ``batchnorm`` says how the BatchNormalization layers are computed, never what they compute
    (:mod:`unet_keras.batchnorm`): ``"keras"`` (Keras' layer, what saved models hold),
    ``"fused"`` (TensorFlow's fused kernel, for training) or ``"folded"`` (folded into the
    convolutions, for prediction).
    """
    config = config or ArchConfig()
    inputs = keras.Input(shape=config.input_shape, name="image")

    x = inputs
    skips = []
    for level in range(1, config.depth + 1):
        skip, x = down_block(x, config.filters(level), f"down{level}", config, batchnorm)
        skips.append(skip)

    x = double_conv(x, config.filters(config.depth + 1), "bottleneck", config, batchnorm)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="bottleneck_dropout")(x)

    for level in range(config.depth, 0, -1):
        x = up_block(x, skips[level - 1], config.filters(level), f"up{level}", config,
                     batchnorm)

    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name="unet")


def arch_config_of(model: keras.Model) -> ArchConfig:
    """Recover the :class:`ArchConfig` of a U-Net built by :func:`build_unet`, from its layers.

    Read from the model itself: input shape (``None`` H/W kept), filters of ``down1_conv1``,
    the number of ``down{i}_pool`` layers (depth), the rate of ``bottleneck_dropout`` (0 when
    absent), whether ``up1_att_psi`` exists (attention), the kernel size of ``up1_transpose``
    and momentum/epsilon of ``down1_bn1``. Raises ``ValueError`` naming the missing layers when
    the model is not such a U-Net.
    """
    by_name = {layer.name: layer for layer in model.layers}
    needed = ("down1_conv1", "down1_bn1", "down1_pool", "up1_transpose")
    missing = [n for n in needed if n not in by_name]
    if missing:
        raise ValueError(f"model {model.name!r} is not a unet_keras U-Net: it has no layer "
                         f"{', '.join(missing)}")
    bn = by_name["down1_bn1"]
    if not isinstance(bn, layers.BatchNormalization):
        raise ValueError(f"model {model.name!r} has its batch norms folded into the "
                         "convolutions (an inference copy); use the model it was made from")
    depth = 0
    while f"down{depth + 1}_pool" in by_name:
        depth += 1
    dropout = by_name.get("bottleneck_dropout")
    return ArchConfig(
        input_shape=tuple(model.input_shape[1:]),
        base_filters=int(by_name["down1_conv1"].filters),
        depth=depth,
        dropout=float(dropout.rate) if dropout is not None else 0.0,
        attention="up1_att_psi" in by_name,
        transpose_kernel=int(by_name["up1_transpose"].kernel_size[0]),
        bn_momentum=float(bn.momentum),
        bn_epsilon=float(bn.epsilon),
    )
