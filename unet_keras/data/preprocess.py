"""Preprocessing as the paper states it: grayscale, intensity scaling to [0, 1], resize.

* Grayscale: colour images (``(H, W, 3|4)``, RGB order; alpha dropped) become ITU-R BT.601 luma
  ``0.299 R + 0.587 G + 0.114 B``, computed in float32 so any dtype works (for LGG TIFFs this
  mixes the three MRI sequences into one channel, as the paper's grayscale step implies).
* Scaling: **per-image min-max**, ``(x - min) / (max - min)`` over the slice, in float32. It maps
  ``uint8`` PNGs, ``int16`` Figshare ``.mat`` slices (raw values up to a few thousand, sometimes
  negative) and 16-bit TIFFs alike onto [0, 1], independent of the scanner's range; a constant
  slice becomes all zeros. Because the common PNG conversion of the Figshare set is itself a
  min-max rescale of the ``int16`` image, a ``.mat`` slice and its PNG give nearly equal inputs.
* Resize: area interpolation for images, nearest neighbour for masks (which stay 0/1).
* Channels: the grayscale image is replicated ``channels`` times (3 for the 256x256x3 model).
* Bad pixels: the readers refuse files with NaN or infinite pixels (naming the file and the
  count, :func:`~unet_keras.data.slices.check_image`); arrays handed in directly are refused
  here the same way (``ValueError``), since one NaN would make the whole slice NaN and its
  predicted mask empty. They are never replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from unet_keras.data.slices import Slice, binarize_mask

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 1|3|4)`` of any dtype -> float32 ``(H, W)`` (C=3/4: BT.601 luma).

    Raises:
        ValueError: any other shape (a stack of slices is not averaged into one).
    """
    x = np.asarray(image)
    if x.ndim == 2:
        return x.astype(np.float32)
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image (H, W) or (H, W, C) with C = 1, 3 or 4, got shape "
                         f"{x.shape}")
    if x.shape[2] == 1:
        return x[..., 0].astype(np.float32)
    return x[..., :3].astype(np.float32) @ _LUMA


def scale_intensity(image: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling of a float ``(H, W)`` array to [0, 1] (constant -> 0).

    Raises:
        ValueError: the image holds NaN or infinite values (their count is in the message).
    """
    x = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        bad = x.size - int(np.count_nonzero(finite))
        raise ValueError(f"the image has {bad} non-finite pixel(s) (NaN or infinite) of "
                         f"{x.size}; refused rather than replaced")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def preprocess_image(image: np.ndarray, image_size: int | None, channels: int) -> np.ndarray:
    """A stored image -> model input.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, any dtype.
        image_size: output height and width (area interpolation), or ``None`` to keep ``H, W``.
        channels: output channels (the grayscale slice replicated).

    Returns:
        float32 ``(image_size, image_size, channels)`` (or ``(H, W, channels)``) in [0, 1].
    """
    x = scale_intensity(to_grayscale(image))
    if image_size is not None and x.shape != (image_size, image_size):
        x = np.clip(cv2.resize(x, (image_size, image_size), interpolation=cv2.INTER_AREA),
                    0.0, 1.0)
    return np.repeat(x[..., None], channels, axis=2)


def preprocess_mask(mask: np.ndarray, image_size: int | None) -> np.ndarray:
    """A stored mask (any encoding, see :func:`binarize_mask`) -> float32
    ``(image_size, image_size, 1)`` of 0/1 (nearest-neighbour resize; ``None`` keeps ``H, W``)."""
    m = binarize_mask(mask)
    if image_size is not None and m.shape != (image_size, image_size):
        m = cv2.resize(m, (image_size, image_size), interpolation=cv2.INTER_NEAREST)
    return m.astype(np.float32)[..., None]


def load_arrays(
    slices: Sequence[Slice], image_size: int | None, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess slices into stacked arrays.

    Returns:
        ``images`` float32 ``(N, image_size, image_size, channels)`` in [0, 1] and ``masks``
        float32 ``(N, image_size, image_size, 1)`` of 0/1. With ``image_size=None`` all slices
        must share one size, which they keep.

    Raises:
        ValueError: ``image_size=None`` and the slices differ in size.
    """
    if image_size is None:
        shapes = {s.image.shape[:2] for s in slices}
        if len(shapes) > 1:
            raise ValueError(f"slices differ in size ({sorted(shapes)}); pass a size to resize")
        h, w = shapes.pop() if shapes else (0, 0)
    else:
        h = w = image_size
    images = np.empty((len(slices), h, w, channels), dtype=np.float32)
    masks = np.empty((len(slices), h, w, 1), dtype=np.float32)
    for i, s in enumerate(slices):
        images[i] = preprocess_image(s.image, image_size, channels)
        masks[i] = preprocess_mask(s.mask, image_size)
    return images, masks
