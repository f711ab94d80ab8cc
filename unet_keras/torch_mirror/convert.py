"""Weights between the Keras U-Net and its PyTorch twin, copied layer by layer by name.

Layouts: a Keras ``Conv2D`` kernel ``(kh, kw, in, out)`` and a ``Conv2DTranspose`` kernel
``(kh, kw, out, in)`` both become PyTorch's ``Conv2d`` ``(out, in, kh, kw)`` /
``ConvTranspose2d`` ``(in, out, kh, kw)`` by the axis permutation ``(3, 2, 0, 1)``, with no
spatial flip (both frameworks compute cross-correlation, and both transposed convolutions are
its adjoint). BatchNormalization ``gamma, beta, moving_mean, moving_variance`` are
``weight, bias, running_mean, running_var``. Values are copied, never recomputed, so a round
trip gives bit-identical weights.
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from keras import layers

from unet_keras.model import arch_config_of, build_unet
from unet_keras.torch_mirror.network import TorchUNet, build_torch_unet

KERAS_TO_TORCH_AXES = (3, 2, 0, 1)
TORCH_TO_KERAS_AXES = (2, 3, 1, 0)
_BATCH_NORM = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
               ("moving_variance", "running_var"))


class ConversionError(ValueError):
    """The Keras model or the PyTorch module is not a U-Net this package can convert."""


def _keras_variables(model: keras.Model) -> dict[str, tuple[keras.Variable, bool]]:
    """``{"<layer>.<torch parameter>": (Keras variable, is a kernel to permute)}``."""
    out = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, layers.BatchNormalization):
            for keras_name, torch_name in _BATCH_NORM:
                out[f"{layer.name}.{torch_name}"] = (getattr(layer, keras_name), False)
        elif isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            out[f"{layer.name}.weight"] = (layer.kernel, True)
            if layer.use_bias:
                out[f"{layer.name}.bias"] = (layer.bias, False)
        else:
            raise ConversionError(f"layer {layer.name!r} ({type(layer).__name__}) has weights "
                                  "but no PyTorch counterpart")
    return out


def _matched(model: keras.Model, module: TorchUNet
             ) -> list[tuple[str, keras.Variable, bool, torch.Tensor]]:
    """Pair every Keras variable with the PyTorch tensor of the same name (shapes checked)."""
    variables = _keras_variables(model)
    state = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    if set(variables) != set(state):
        only_keras = sorted(set(variables) - set(state))
        only_torch = sorted(set(state) - set(variables))
        raise ConversionError(f"weights do not correspond: only in Keras {only_keras[:5]}, "
                              f"only in PyTorch {only_torch[:5]}")
    pairs = []
    for key, (var, is_kernel) in variables.items():
        shape = tuple(var.shape)
        if is_kernel:
            shape = tuple(shape[a] for a in KERAS_TO_TORCH_AXES)
        if shape != tuple(state[key].shape):
            raise ConversionError(f"{key}: Keras shape {tuple(var.shape)} does not fit PyTorch "
                                  f"shape {tuple(state[key].shape)}")
        pairs.append((key, var, is_kernel, state[key]))
    return pairs


def keras_to_torch(model: keras.Model) -> TorchUNet:
    """A :class:`TorchUNet` (eval mode, CPU) with the weights of a Keras U-Net.

    The architecture is the one the model carries (:func:`unet_keras.model.arch_config_of`).

    Raises:
        ConversionError: ``model`` is not a unet_keras U-Net.
    """
    try:
        arch = arch_config_of(model)
    except ValueError as exc:
        raise ConversionError(str(exc)) from None
    module = build_torch_unet(arch)
    with torch.no_grad():
        for _, var, is_kernel, tensor in _matched(model, module):
            value = keras.ops.convert_to_numpy(var)
            if is_kernel:
                value = np.transpose(value, KERAS_TO_TORCH_AXES)
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module.eval()


def torch_to_keras(module: TorchUNet) -> keras.Model:
    """A Keras U-Net (``build_unet(module.config)``) with the weights of a :class:`TorchUNet`."""
    if not isinstance(module, TorchUNet):
        raise ConversionError(f"expected a unet_keras TorchUNet, got {type(module).__name__}")
    model = build_unet(module.config)
    for _, var, is_kernel, tensor in _matched(model, module):
        value = tensor.detach().cpu().numpy()
        if is_kernel:
            value = np.transpose(value, TORCH_TO_KERAS_AXES)
        var.assign(value)
    return model
