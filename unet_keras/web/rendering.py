"""What the page shows: the slice, the mask and the overlay as PNG ``data:`` URLs.

Browsers cannot display TIFF, 16-bit or ``.mat`` slices, so the page shows the slice as the
model saw it (preprocessed, 8-bit PNG). The overlay is the CLI's (:func:`unet_keras.viz.overlay`,
the tumor tinted red) with the tumor's outline drawn on top in yellow.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from unet_keras.viz import encode_png, overlay

OUTLINE_RGB = (255, 230, 0)


def png_data_url(array: np.ndarray) -> str:
    """uint8 ``(H, W)`` grayscale or ``(H, W, 3)`` RGB -> ``"data:image/png;base64,..."``."""
    return "data:image/png;base64," + base64.b64encode(encode_png(array)).decode("ascii")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 ``(H, W)`` (1 channel) or ``(H, W, 3)``."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] != 3:
        x = x[..., 0]
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)


def outlined_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The slice ``(H, W[, C])`` in [0, 1] with ``mask`` (H, W; nonzero = tumor) tinted and
    outlined; uint8 RGB ``(H, W, 3)``."""
    rgb = (overlay(image, mask) * 255).round().astype(np.uint8)
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(min(binary.shape) / 256))
    cv2.drawContours(rgb, contours, -1, OUTLINE_RGB, thickness)
    return rgb
