"""Decoding of raster image files (PNG, JPEG, TIFF, BMP) from a path or from bytes.

Colour images come back in RGB(A) order; single-channel images as ``(H, W)``. The stored dtype is
kept (``uint8``, ``uint16``, ``int16``, ``float32`` TIFF...).

Before any pixel is decoded the file's header is read: its declared size must be within
:data:`~unet_keras.data.slices.MIN_SIDE` .. ``max_side`` (a decompression-bomb guard: a 390 KB
PNG may declare 20000x20000 pixels), a TIFF must hold one 2-D page, and a PNG, JPEG or BMP must
be complete (a truncated JPEG otherwise decodes to a grey-filled image without an error). The
decoded array then passes :func:`~unet_keras.data.slices.check_image`. OpenCV's and tifffile's
own log lines are silenced: the :class:`DataError` is the one message.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import tifffile

from unet_keras.data.slices import DataError, check_image, check_shape, check_side

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# OpenCV logs "[ WARN:0@...] ... PNG input buffer is incomplete" on stderr for a broken file
# that the readers report themselves; keep only its errors. tifffile logs through `logging`.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
logging.getLogger("tifffile").setLevel(logging.ERROR)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG frame headers (SOF0..SOF15 without DHT C4, JPG C8 and DAC CC) hold the image size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _png_header(data: bytes, name: str, max_side: int | None) -> None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise DataError(f"{name}: cannot decode PNG: no image header (truncated or corrupt)")
    width, height = struct.unpack(">II", data[16:24])
    check_side(height, width, name, max_side=max_side, declared=True)
    if data.rfind(b"IEND") < 0:
        raise DataError(f"{name}: cannot decode PNG: the file ends before its IEND chunk "
                        "(truncated)")


def _jpeg_header(data: bytes, name: str, max_side: int | None) -> None:
    """Walk the JPEG segments to the frame header; the entropy-coded data after the first
    start-of-scan must end with an end-of-image marker (0xFFD9, never inside the data)."""
    i, size = 2, None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _JPEG_SOF and i + 9 <= len(data):
            size = (int.from_bytes(data[i + 5:i + 7], "big"),
                    int.from_bytes(data[i + 7:i + 9], "big"))
            check_side(*size, name, max_side=max_side, declared=True)
        if marker == 0xDA:  # start of scan: the size must be known by now
            if size is None:
                break
            if data.find(b"\xff\xd9", i + 2 + length) < 0:
                raise DataError(f"{name}: cannot decode JPEG: the file ends before its "
                                "end-of-image marker (truncated)")
            return
        i += 2 + length
    raise DataError(f"{name}: cannot decode JPEG: no frame header before the image data "
                    "(truncated or corrupt)")


def _bmp_header(data: bytes, name: str, max_side: int | None) -> None:
    if len(data) < 34:
        raise DataError(f"{name}: cannot decode BMP: no image header (truncated or corrupt)")
    (file_size,), (offset,) = struct.unpack("<I", data[2:6]), struct.unpack("<I", data[10:14])
    width, height = struct.unpack("<ii", data[18:26])
    (bits,), (compression,) = struct.unpack("<H", data[28:30]), struct.unpack("<I", data[30:34])
    height = abs(height)
    check_side(height, width, name, max_side=max_side, declared=True)
    if compression == 0 and width > 0:  # uncompressed: rows padded to 4 bytes
        needed = offset + ((bits * width + 31) // 32) * 4 * height
    else:
        needed = file_size
    if len(data) < needed:
        raise DataError(f"{name}: cannot decode BMP: {len(data)} of its {needed} bytes (truncated)")


def _sniff(data: bytes) -> str | None:
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    return None


_HEADERS = {"PNG": _png_header, "JPEG": _jpeg_header, "BMP": _bmp_header}


def _decode_tiff(data: bytes, name: str, max_side: int | None) -> np.ndarray:
    """One 2-D TIFF page; pages, shape and the strips' extent are checked before decoding."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = tif.pages
            try:
                pages[1]
                multi = True
            except IndexError:
                multi = False
            series = tif.series[0]
            if multi:
                raise DataError(f"{name}: a multi-page TIFF ({len(pages)} pages, shape "
                                f"{tuple(series.shape)}); give one 2-D slice per file")
            page = pages[0]
            check_shape(tuple(series.shape), name, max_side=max_side, declared=True)
            end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts,
                                             strict=False)), default=0)
            if end > len(data):
                raise DataError(f"{name}: cannot decode TIFF: its image data needs {end} bytes, "
                                f"the file has {len(data)} (truncated)")
            image = tif.asarray()
    except DataError:
        raise
    except Exception as e:  # tifffile raises many types for bad files
        first = (str(e).splitlines() or [""])[0][:200]
        raise DataError(f"{name}: cannot decode TIFF ({type(e).__name__}: {first})") from None
    return image


def decode_raster(data: bytes, name: str, max_side: int | None = None) -> np.ndarray:
    """Decode raster image bytes; ``name`` (file name or path) picks TIFF vs. the rest.

    Args:
        data: the file's bytes.
        name: the file's name (its suffix picks the decoder) or path; starts every error.
        max_side: largest accepted height/width (default
            :data:`~unet_keras.data.slices.MAX_SIDE`), checked from the header first.

    Returns:
        ``(H, W)`` or ``(H, W, 3|4)`` array (RGB/RGBA order), the file's dtype.

    Raises:
        DataError: the bytes are not a decodable image (truncated, wrong type), or the image
            fails :func:`~unet_keras.data.slices.check_image`.
    """
    suffix = Path(name).suffix.lower()
    if suffix not in RASTER_SUFFIXES:
        raise DataError(f"{name}: unsupported image type {suffix or '(none)'!r}; "
                        f"expected one of {', '.join(RASTER_SUFFIXES)} or .mat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if suffix in (".tif", ".tiff"):
            image = _decode_tiff(data, name, max_side)
        else:
            kind = _sniff(data)
            if kind is None:
                raise DataError(f"{name}: cannot decode image: not a PNG, JPEG or BMP file "
                                "(empty, truncated or another file type)")
            _HEADERS[kind](data, name, max_side)  # size and completeness, nothing decoded
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise DataError(f"{name}: cannot decode image (truncated or corrupt "
                                f"{kind} file)")
            if image.ndim == 3 and image.shape[2] == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            elif image.ndim == 3 and image.shape[2] == 4:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return check_image(image, name, max_side=max_side)


def read_raster(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Read one raster image file (see :func:`decode_raster`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_raster(data, str(path), max_side)
