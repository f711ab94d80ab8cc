"""The one record every reader yields (:class:`Slice`) and the data error type.

Readers differ in how files are laid out; they all end in :func:`make_slice`, which checks the
pair (image rank, mask size) and stores the mask as ``uint8`` 0/1 whatever the file held
(0/1, 0/255, ``bool``, a label map).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """A data file is missing, unreadable or inconsistent. The message starts with its path."""


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
        DataError: the image is not ``(H, W)``/``(H, W, C)``, or the mask's ``(H, W)`` differs
            from the image's (the message names ``mask_path`` when given).
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise DataError(f"{path}: expected a 2-D image (H, W) or (H, W, C), got {image.shape}")
    if mask.ndim not in (2, 3):
        raise DataError(f"{mask_path or path}: expected a 2-D mask, got shape {mask.shape}")
    if mask.shape[:2] != image.shape[:2]:
        raise DataError(
            f"{mask_path or path}: mask size {mask.shape[0]}x{mask.shape[1]} differs from the "
            f"image size {image.shape[0]}x{image.shape[1]}"
        )
    return Slice(image, binarize_mask(mask), str(id), patient_id, label, str(path))


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``"2" < "10"``, ``"p_9" < "p_10"``."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text))
