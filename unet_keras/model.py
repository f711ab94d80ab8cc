"""The paper's U-Net (algorithm section), built from an :class:`~unet_keras.config.ArchConfig`.

Input ``(B, H, W, C)`` in [0, 1]  ->  output ``(B, H, W, 1)`` tumor probability (float32).

Encoder leg: ``depth`` DownConv blocks ``down1..down{depth}``, each (Conv3x3-BN-ReLU) x 2
followed by MaxPooling2D 2x2, filters ``base, 2*base, ...``. Bottleneck: (Conv3x3-BN-ReLU) x 2
with ``base * 2**depth`` filters (then Dropout when configured). Decoder leg: UpConv blocks
``up{depth}..up1``; ``up{i}`` upsamples with Conv2DTranspose (stride 2), concatenates the skip
of ``down{i}`` and applies (Conv3x3-BN-ReLU) x 2. Head: Conv2D 1x1 with sigmoid, kept in
float32 even under a mixed-precision policy.

The model carries its configuration: :func:`build_unet` attaches a
:class:`~unet_keras.model_meta.ModelMeta` holding the :class:`ArchConfig` as
``model.unet_meta``, saved models keep it inside the ``.keras`` file and
:func:`unet_keras.inference.load_model` attaches it again; :func:`arch_config_of` reads it
there, and reads the layers only for files saved before it existed.
"""

from __future__ import annotations

import keras
from keras import layers

from unet_keras.blocks import double_conv, down_block, up_block
from unet_keras.config import ArchConfig
from unet_keras.model_meta import ModelMeta


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
    model = keras.Model(inputs, outputs, name="unet")
    model.unet_meta = ModelMeta(arch=config.to_dict())
    return model


def arch_config_of(model: keras.Model) -> ArchConfig:
    """The :class:`ArchConfig` of a U-Net built by :func:`build_unet`: the one it carries
    (``model.unet_meta``; the input shape is the model's own), else, for a file saved before
    models carried it (or loaded without :func:`unet_keras.inference.load_model`), read off
    its layers (:func:`arch_config_from_layers`).

    Raises:
        ValueError: the model is not such a U-Net (naming the missing layers), or it is an
            inference copy with its batch norms folded into the convolutions.
    """
    by_name = {layer.name: layer for layer in model.layers}
    needed = ("down1_conv1", "down1_bn1", "down1_pool", "up1_transpose")
    missing = [n for n in needed if n not in by_name]
    if missing:
        raise ValueError(f"model {model.name!r} is not a unet_keras U-Net: it has no layer "
                         f"{', '.join(missing)}")
    if not isinstance(by_name["down1_bn1"], layers.BatchNormalization):
        raise ValueError(f"model {model.name!r} has its batch norms folded into the "
                         "convolutions (an inference copy); use the model it was made from")
    meta = getattr(model, "unet_meta", None)
    if meta is not None and meta.arch:
        return ArchConfig.from_dict({**meta.arch, "input_shape": model.input_shape[1:]})
    return arch_config_from_layers(model)


def arch_config_from_layers(model: keras.Model) -> ArchConfig:
    """The :class:`ArchConfig` of a U-Net read off its layers (files saved before models
    carried their configuration): input shape (``None`` H/W kept), filters of
    ``down1_conv1``, the number of ``down{i}_pool`` layers (depth), the rate of
    ``bottleneck_dropout`` (0 when absent), whether ``up1_att_psi`` exists (attention), the
    kernel size of ``up1_transpose`` and momentum/epsilon of ``down1_bn1``. The model must be
    one (see :func:`arch_config_of`)."""
    by_name = {layer.name: layer for layer in model.layers}
    bn = by_name["down1_bn1"]
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
