"""The PyTorch twin of :func:`unet_keras.model.build_unet`, built from the same ArchConfig.

Every Keras layer has a submodule of the same name (``down1_conv1``, ``down1_bn1``,
``down1_relu1``, ``down1_pool``, ``up4_transpose``, ``up4_att_psi``, ``head`` ...); the Keras
layers without a module equivalent (``*_concat``, ``*_att_add``, ``*_att_gate``) are the
``torch.cat``, ``+`` and ``*`` in :meth:`TorchUNet.forward`. State-dict keys are therefore
``<keras layer name>.<parameter>``, e.g. ``down1_bn1.running_var``.

Input ``(B, C, H, W)`` float32 in [0, 1]  ->  output ``(B, 1, H, W)`` tumor probability.
"""

from __future__ import annotations

import torch
from torch import nn

from unet_keras.config import ArchConfig


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """Stride-2 transposed convolution with Keras' ``padding="same"`` semantics.

    Keras (TensorFlow's ``conv2d_transpose`` with ``SAME``) outputs exactly ``2 * H`` rows: of
    the full transposed convolution (``2 * (H - 1) + k`` rows) it drops
    ``floor(max(k - 2, 0) / 2)`` leading rows and keeps ``2 * H``. PyTorch's symmetric
    ``padding`` drops that many rows at both ends and ``output_padding`` appends rows (bias
    only), which covers every case except odd ``k >= 3``, where the one extra trailing row is
    cropped in :meth:`forward`.

    Weight layout ``(in_channels, out_channels, k, k)``, the Keras kernel
    ``(k, k, out, in)`` permuted by ``(3, 2, 0, 1)`` with no spatial flip.
    Shapes: ``(B, in, H, W) -> (B, out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        lead = max(kernel_size - 2, 0) // 2
        extra = 2 - kernel_size + 2 * lead  # rows the symmetric padding leaves short (+) / over (-)
        super().__init__(in_channels, out_channels, kernel_size, stride=2, padding=lead,
                         output_padding=max(extra, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return super().forward(x)[..., : 2 * h, : 2 * w]


class TorchUNet(nn.Module):
    """The U-Net of :mod:`unet_keras.model` in PyTorch (eval-mode numerics match Keras).

    BatchNorm uses ``eps = config.bn_epsilon`` and ``momentum = 1 - config.bn_momentum``
    (PyTorch weighs the new batch statistic, Keras the old running value). Dropout modules
    exist where Keras has them and are inactive in ``eval()``.

    Attributes:
        config: the :class:`~unet_keras.config.ArchConfig` it was built from.
    """

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        for level in range(1, config.depth + 1):
            self._double_conv(f"down{level}", channels, config.filters(level))
            self.add_module(f"down{level}_pool", nn.MaxPool2d(2))
            channels = config.filters(level)
        self._double_conv("bottleneck", channels, config.filters(config.depth + 1))
        channels = config.filters(config.depth + 1)
        if config.dropout > 0:
            self.add_module("bottleneck_dropout", nn.Dropout(config.dropout))
        for level in range(config.depth, 0, -1):
            filters = config.filters(level)
            name = f"up{level}"
            self.add_module(f"{name}_transpose",
                            ConvTranspose2dSame(channels, filters, config.transpose_kernel))
            if config.attention:
                inter = max(filters // 2, 1)
                self.add_module(f"{name}_att_theta", nn.Conv2d(filters, inter, 1, bias=False))
                self.add_module(f"{name}_att_phi", nn.Conv2d(filters, inter, 1))
                self.add_module(f"{name}_att_relu", nn.ReLU())
                self.add_module(f"{name}_att_psi", nn.Conv2d(inter, 1, 1))
            if config.dropout > 0:
                self.add_module(f"{name}_dropout", nn.Dropout(config.dropout))
            self._double_conv(name, 2 * filters, filters)
            channels = filters
        self.head = nn.Conv2d(channels, 1, 1)

    def _double_conv(self, name: str, in_channels: int, filters: int) -> None:
        """Register ``{name}_conv{i}`` (3x3, padding 1), ``{name}_bn{i}``, ``{name}_relu{i}``."""
        for i in (1, 2):
            self.add_module(f"{name}_conv{i}", nn.Conv2d(in_channels, filters, 3, padding=1))
            self.add_module(f"{name}_bn{i}", nn.BatchNorm2d(
                filters, eps=self.config.bn_epsilon, momentum=1.0 - self.config.bn_momentum))
            self.add_module(f"{name}_relu{i}", nn.ReLU())
            in_channels = filters

    def _apply_double_conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for i in (1, 2):
            x = self.get_submodule(f"{name}_conv{i}")(x)
            x = self.get_submodule(f"{name}_bn{i}")(x)
            x = self.get_submodule(f"{name}_relu{i}")(x)
        return x

    def _attention_gate(self, name: str, skip: torch.Tensor, gating: torch.Tensor
                        ) -> torch.Tensor:
        """``skip * sigmoid(psi(relu(theta(skip) + phi(gating))))``, a 1-channel map broadcast
        over the ``F`` skip channels. Shapes: ``(B, F, H, W)``, ``(B, F, H, W)`` -> skip's."""
        act = self.get_submodule(f"{name}_att_relu")(
            self.get_submodule(f"{name}_att_theta")(skip)
            + self.get_submodule(f"{name}_att_phi")(gating))
        return skip * torch.sigmoid(self.get_submodule(f"{name}_att_psi")(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 1, H, W)`` probabilities; H, W multiples of ``2**depth``."""
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.channels:
            raise ValueError(f"expected input (B, {cfg.channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % cfg.size_multiple or x.shape[3] % cfg.size_multiple:
            raise ValueError(f"input H and W must be multiples of {cfg.size_multiple}, "
                             f"got {tuple(x.shape[2:])}")
        skips = []
        for level in range(1, cfg.depth + 1):
            x = self._apply_double_conv(f"down{level}", x)
            skips.append(x)
            x = self.get_submodule(f"down{level}_pool")(x)
        x = self._apply_double_conv("bottleneck", x)
        if cfg.dropout > 0:
            x = self.bottleneck_dropout(x)
        for level in range(cfg.depth, 0, -1):
            name = f"up{level}"
            up = self.get_submodule(f"{name}_transpose")(x)
            skip = skips[level - 1]
            if cfg.attention:
                skip = self._attention_gate(name, skip, up)
            x = torch.cat([up, skip], dim=1)
            if cfg.dropout > 0:
                x = self.get_submodule(f"{name}_dropout")(x)
            x = self._apply_double_conv(name, x)
        return torch.sigmoid(self.head(x))


def build_torch_unet(config: ArchConfig | None = None) -> TorchUNet:
    """The PyTorch U-Net for ``config`` (default: the paper's), freshly initialised."""
    return TorchUNet(config or ArchConfig())
