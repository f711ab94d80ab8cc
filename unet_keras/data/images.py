"""Decoding of raster image files (PNG, JPEG, TIFF, BMP) from a path or from bytes.

Colour images come back in RGB(A) order; single-channel images as ``(H, W)``. The stored dtype is
kept (``uint8``, ``uint16``, ``int16``, ``float32`` TIFF...).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import tifffile

from unet_keras.data.records import DataError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def decode_raster(data: bytes, name: str) -> np.ndarray:
    """Decode raster image bytes; ``name`` (file name or path) picks TIFF vs. the rest.

    Returns:
        ``(H, W)`` or ``(H, W, C)`` array (RGB/RGBA order), the file's dtype.

    Raises:
        DataError: the bytes are not a decodable image (truncated, wrong type).
    """
    suffix = Path(name).suffix.lower()
    if suffix not in RASTER_SUFFIXES:
        raise DataError(f"{name}: unsupported image type {suffix or '(none)'!r}; "
                        f"expected one of {', '.join(RASTER_SUFFIXES)} or .mat")
    if suffix in (".tif", ".tiff"):
        try:
            image = tifffile.imread(io.BytesIO(data))
        except Exception as e:  # tifffile raises many types for bad files
            raise DataError(f"{name}: cannot decode TIFF ({type(e).__name__}: {e})") from None
    else:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DataError(f"{name}: cannot decode image (truncated or not a {suffix[1:]} file)")
        if image.ndim == 3 and image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3):
        raise DataError(f"{name}: expected a 2-D image, got an array of shape {image.shape}")
    return image


def read_raster(path: str | Path) -> np.ndarray:
    """Read one raster image file (see :func:`decode_raster`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_raster(data, str(path))
