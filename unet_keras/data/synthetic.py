"""Seeded synthetic phantoms: a head-like slice with a textured "tumor" and its mask.

For property tests (augmentation alignment, resizing) and scale tests (many slices, any size),
never as a substitute for the real slices in accuracy claims.
"""

from __future__ import annotations

import cv2
import numpy as np

from unet_keras.data.slices import Slice


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
             angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / rx
    v = (-(xx - cx) * s + (yy - cy) * c) / ry
    return u * u + v * v <= 1.0


def _texture(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Smooth noise in [-1, 1]: white noise blurred with a Gaussian of ``scale`` pixels."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(scale, 0.5))
    return smooth / (np.abs(smooth).max() + 1e-6)


def make_phantom(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One phantom slice.

    A dark background, a bright skull ring, a textured brain ellipse with two darker ventricles,
    and a brighter tumor blob (an ellipse with a wavy border from low-frequency noise) at a
    random place inside the brain.

    Args:
        size: height and width in pixels (>= 16).
        seed: the same seed gives the same phantom.

    Returns:
        ``image`` float32 ``(size, size)`` in [0, 1] and ``mask`` uint8 ``(size, size)`` 0/1
        (the tumor; never empty).
    """
    if size < 16:
        raise ValueError(f"phantom size must be >= 16, got {size}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = size / 2.0
    tilt = rng.uniform(-0.3, 0.3)
    ry, rx = size * rng.uniform(0.40, 0.46), size * rng.uniform(0.32, 0.38)
    head = _ellipse(yy, xx, c, c, ry, rx, tilt)
    brain = _ellipse(yy, xx, c, c, ry * 0.9, rx * 0.88, tilt)
    image = np.zeros((size, size), np.float32)
    image[head] = 0.85
    image[brain] = 0.45 + 0.08 * _texture(rng, size, size / 40)[brain]
    for side in (-1, 1):
        vent = _ellipse(yy, xx, c - ry * 0.05, c + side * rx * 0.18, ry * 0.18, rx * 0.08,
                        tilt + side * 0.3)
        image[vent] = 0.2
    # Tumor: centre well inside the brain, radius 4-12% of the size, wavy border.
    angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.5)
    ty, tx = c + ry * radius * np.sin(angle), c + rx * radius * np.cos(angle)
    tr = size * rng.uniform(0.04, 0.12)
    wobble = 0.5 * _texture(rng, size, size / 16)
    dist = np.hypot((yy - ty) / (tr * rng.uniform(0.7, 1.0)), (xx - tx) / tr)
    mask = ((dist + wobble) <= 1.0) & brain
    if not mask.any():
        mask[int(ty), int(tx)] = True
    image[mask] = 0.75 + 0.12 * _texture(rng, size, size / 60)[mask]
    image += 0.01 * rng.standard_normal((size, size)).astype(np.float32)
    return np.clip(image, 0.0, 1.0), mask.astype(np.uint8)


def make_phantom_slices(n: int, size: int = 256, seed: int = 0,
                        slices_per_patient: int = 5) -> list[Slice]:
    """``n`` phantom :class:`Slice` records (``uint8`` images, ids ``"1"``.. ``"n"``, patient ids
    ``"P001"``... in runs of ``slices_per_patient``, label ``None``, path ``"phantom:<id>"``)."""
    out = []
    for i in range(n):
        image, mask = make_phantom(size, seed * 1_000_003 + i)
        out.append(Slice(
            image=np.round(image * 255).astype(np.uint8), mask=mask, id=str(i + 1),
            patient_id=f"P{i // slices_per_patient + 1:03d}", label=None, path=f"phantom:{i + 1}",
        ))
    return out
