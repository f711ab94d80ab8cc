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


def build_unet(config: ArchConfig | None = None) -> keras.Model:
    """Build the U-Net as a Keras functional model named ``"unet"``."""
    config = config or ArchConfig()
    inputs = keras.Input(shape=config.input_shape, name="image")

    x = inputs
    skips = []
    for level in range(1, config.depth + 1):
        skip, x = down_block(x, config.filters(level), f"down{level}", config)
        skips.append(skip)

    x = double_conv(x, config.filters(config.depth + 1), "bottleneck", config)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="bottleneck_dropout")(x)

    for level in range(config.depth, 0, -1):
        x = up_block(x, skips[level - 1], config.filters(level), f"up{level}", config)

    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name="unet")
