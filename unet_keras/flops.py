"""Analytic FLOP count of the U-Net of :func:`unet_keras.model.build_unet`.

Counts the convolutions only (``Conv2D``, ``Conv2DTranspose`` and the attention gates' 1x1
convolutions): one multiply-add is 2 FLOPs, as in a matmul peak. Bias adds, BatchNorm, ReLU,
pooling, concatenation, sigmoid and the gate's multiply are elementwise and left out (they are
well under 1% of the total for the paper's config and are memory-bound, not FLOP-bound).

* A ``k x k`` ``Conv2D`` from ``cin`` to ``cout`` channels with an ``H x W`` output:
  ``2 * k*k * cin * cout * H * W``.
* A stride-2 ``Conv2DTranspose`` (``same``) from an ``h x w`` input: every input pixel meets the
  whole ``k x k x cout`` kernel, ``2 * k*k * cin * cout * h * w``.
* Training (forward + backward): the backward pass costs two forwards per layer (gradient of the
  weights and of the input), except that the first convolution needs no input gradient:
  ``3 * forward - forward(first conv)``.
"""

from __future__ import annotations

from unet_keras.config import ArchConfig


def _conv(k: int, cin: int, cout: int, pixels: int) -> int:
    return 2 * k * k * cin * cout * pixels


def layer_flops(config: ArchConfig, height: int | None = None,
                width: int | None = None) -> dict[str, int]:
    """Forward FLOPs of one image through each convolution, keyed by its Keras layer name.

    ``height``/``width`` default to ``config.input_shape``'s (required when that is ``None``).
    Keys follow the model's build order (``down1_conv1`` first, ``head`` last).
    """
    h = height if height is not None else config.input_shape[0]
    w = width if width is not None else config.input_shape[1]
    if h is None or w is None:
        raise ValueError("the config has no fixed input size: pass height and width")
    if h % config.size_multiple or w % config.size_multiple:
        raise ValueError(f"height and width must be multiples of {config.size_multiple}, "
                         f"got {(h, w)}")
    flops: dict[str, int] = {}
    cin = config.channels

    def double(name: str, cin: int, cout: int, pixels: int) -> None:
        flops[f"{name}_conv1"] = _conv(3, cin, cout, pixels)
        flops[f"{name}_conv2"] = _conv(3, cout, cout, pixels)

    for level in range(1, config.depth + 1):
        pixels = (h >> (level - 1)) * (w >> (level - 1))
        double(f"down{level}", cin, config.filters(level), pixels)
        cin = config.filters(level)
    bottom = config.filters(config.depth + 1)
    double("bottleneck", cin, bottom, (h >> config.depth) * (w >> config.depth))
    cin = bottom
    for level in range(config.depth, 0, -1):
        f = config.filters(level)
        pixels = (h >> (level - 1)) * (w >> (level - 1))
        name = f"up{level}"
        flops[f"{name}_transpose"] = _conv(config.transpose_kernel, cin, f, pixels // 4)
        if config.attention:
            inter = max(f // 2, 1)
            flops[f"{name}_att_theta"] = _conv(1, f, inter, pixels)
            flops[f"{name}_att_phi"] = _conv(1, f, inter, pixels)
            flops[f"{name}_att_psi"] = _conv(1, inter, 1, pixels)
        double(name, 2 * f, f, pixels)
        cin = f
    flops["head"] = _conv(1, cin, 1, h * w)
    return flops


def forward_flops(config: ArchConfig, height: int | None = None,
                  width: int | None = None) -> int:
    """Forward-pass FLOPs of one image (see :func:`layer_flops`)."""
    return sum(layer_flops(config, height, width).values())


def train_flops(config: ArchConfig, height: int | None = None,
                width: int | None = None) -> int:
    """FLOPs of one training step per image: forward, weight and input gradients.

    ``3 * forward - forward(down1_conv1)``: the input image needs no gradient.
    """
    layers = layer_flops(config, height, width)
    return 3 * sum(layers.values()) - layers["down1_conv1"]
