"""The one record every reader yields (:class:`Slice`) and the data error type.

Readers differ in how files are laid out; every array they decode goes through
:func:`check_image` (the one place where bad pixels are refused: shape, size, pixel type,
NaN/inf), and pairs end in :func:`make_slice`, which also checks the mask's size and stores it as
``uint8`` 0/1 whatever the file held (0/1, 0/255, ``bool``, a label map).

The rules (README, "What happens with bad input"): a slice is ``(H, W)`` or ``(H, W, 1|3|4)``
(a multi-page TIFF or 3-D array is refused, not flattened), at least :data:`MIN_SIDE` and at
most :data:`MAX_SIDE` pixels a side (checked from the file header before decoding where the
format has one), integer, boolean or floating-point pixels, and no NaN or infinite pixel
(refused with their count, never replaced). Every refusal is a :class:`DataError` whose
message starts with the file's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: Smallest accepted slice height and width in pixels: below it a slice is too small to segment
#: or to score (one 1x1 slice pulled a pooled Dice from 0.886 to 0.052). 32 = 2**5, above the
#: size multiple of every shipped model (2**depth, depth 4).
MIN_SIDE = 32
#: Default largest accepted slice height and width: a decompression-bomb guard (a 390 KB PNG
#: can declare 20000x20000 pixels) checked from the header before decoding. MRI slices are
#: 256 to 1024 pixels; callers with a tighter limit (the web app) pass their own ``max_side``.
MAX_SIDE = 4096

_PIXEL_KINDS = {"b": "boolean", "i": "integer", "u": "unsigned integer", "f": "floating-point"}


class DataError(ValueError):
    """A data file is missing, unreadable or inconsistent. The message starts with its path."""


def check_side(height: int, width: int, name: str, what: str = "image",
               max_side: int | None = None, declared: bool = False) -> None:
    """Refuse a slice under :data:`MIN_SIDE` or over ``max_side`` (default :data:`MAX_SIDE`)
    pixels a side; ``declared``: the size was read from the file header, before decoding.

    Raises:
        DataError: ``"<name>: the image is WxH pixels; ..."``.
    """
    limit = MAX_SIDE if max_side is None else max_side
    size = f"{name}: the {what} is {width}x{height} pixels"
    if min(height, width) < MIN_SIDE:
        raise DataError(f"{size}; slices must be at least {MIN_SIDE} pixels a side")
    if max(height, width) > limit:
        raise DataError(f"{size}; the limit is {limit} pixels a side"
                        + (" (read from its header, nothing decoded)" if declared else ""))


def check_shape(shape: tuple[int, ...], name: str, what: str = "image",
                max_side: int | None = None, declared: bool = False) -> None:
    """Refuse any shape but ``(H, W)`` / ``(H, W, 1|3|4)`` with sides within the limits (see
    :func:`check_side`); usable on a header's declared shape before decoding."""
    shape = tuple(int(n) for n in shape)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))):
        hint = ("; a stack or volume: give one 2-D slice per file" if len(shape) >= 3
                else "")
        raise DataError(f"{name}: expected a 2-D {what} (H, W) or (H, W, 1|3|4), got an array "
                        f"of shape {shape}{hint}")
    check_side(shape[0], shape[1], name, what, max_side, declared)


def check_image(array: np.ndarray, name: str, what: str = "image",
                max_side: int | None = None) -> np.ndarray:
    """The one check every decoded image and mask passes: shape and size (see
    :func:`check_shape`), pixel type (integer, boolean or floating point) and no NaN or
    infinite pixel. Returns the array, a trailing channel of 1 dropped.

    Raises:
        DataError: the first problem, the message starting with ``name``.
    """
    a = np.asarray(array)
    if a.dtype.kind not in _PIXEL_KINDS:
        kind = "complex numbers" if a.dtype.kind == "c" else "not numbers"
        raise DataError(f"{name}: unsupported pixel type {a.dtype} ({kind}); expected integer "
                        "or floating-point pixels")
    check_shape(a.shape, name, what, max_side)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype.kind == "f":
        bad = a.size - int(np.count_nonzero(np.isfinite(a)))
        if bad:
            raise DataError(f"{name}: {bad} non-finite pixel(s) (NaN or infinite) of {a.size}; "
                            "fix or mask them in the file (they are never replaced silently)")
        if a.dtype.itemsize > 4 and a.size and np.abs(a).max() > np.finfo(np.float32).max:
            raise DataError(f"{name}: pixel values beyond the float32 range (up to "
                            f"{float(np.abs(a).max()):.3g})")
    return a


@dataclass(frozen=True, eq=False)
class Slice:
    """One MRI slice with its tumor mask.

    Attributes:
        image: the image as stored: ``(H, W)`` or ``(H, W, C)``, any dtype (Figshare ``.mat``:
            ``int16``; PNG: ``uint8``; LGG TIFF: ``uint8`` RGB ``(256, 256, 3)``).
        mask: ``(H, W)`` ``uint8`` with values 0 (background) / 1 (tumor).
        id: the slice's name, unique within a dataset (file stem, e.g. ``"17"``).
        patient_id: patient identifier (Figshare ``cjdata.PID``, LGG folder name), or ``None``
            where the files do not hold one (PNG folders).
        label: Figshare tumor class 1/2/3 = meningioma/glioma/pituitary, or ``None``.
        path: the file the slice was read from (the image file for image/mask pairs).
    """

    image: np.ndarray
    mask: np.ndarray
    id: str
    patient_id: str | None
    label: int | None
    path: str


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """Any stored mask -> ``uint8`` 0/1 of shape ``(H, W)``.

    Multi-channel masks are reduced by their maximum over channels. Masks whose maximum is at
    most 1 (0/1, ``bool``, probabilities) are cut at 0.5; masks reaching 128 or more (0/255,
    also with JPEG noise) at 128; anything else (small label maps 0/1/2...) at "> 0".
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    m = m.astype(np.float32, copy=False)
    top = float(m.max()) if m.size else 0.0
    if top <= 1.0:
        out = m >= 0.5
    elif top >= 128.0:
        out = m >= 128.0
    else:
        out = m > 0.0
    return out.astype(np.uint8)


def make_slice(
    image: np.ndarray,
    mask: np.ndarray,
    id: str,
    patient_id: str | None,
    label: int | None,
    path: str,
    mask_path: str | None = None,
) -> Slice:
    """Check an image/mask pair and build its :class:`Slice` (mask binarised to 0/1).

    Raises:
        DataError: the image or the mask fails :func:`check_image`, or the mask's ``(H, W)``
            differs from the image's (the message names ``mask_path`` when given).
    """
    image = check_image(image, str(path))
    mask = check_image(mask, str(mask_path or path), "mask")
    if mask.shape[:2] != image.shape[:2]:
        raise DataError(
            f"{mask_path or path}: mask size {mask.shape[0]}x{mask.shape[1]} differs from the "
            f"image size {image.shape[0]}x{image.shape[1]}"
        )
    return Slice(image, binarize_mask(mask), str(id), patient_id, label, str(path))


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``"2" < "10"``, ``"p_9" < "p_10"``."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text))
