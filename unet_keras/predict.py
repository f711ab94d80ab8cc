"""Segment image files at their own size and write mask and overlay PNGs (``unet-predict``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from unet_keras.atomic import atomic_path
from unet_keras.data import read_image_file
from unet_keras.data.preprocess import preprocess_image
from unet_keras.inference import inference_model, load_model, predict_any_size
from unet_keras.viz import encode_png, overlay


def segment_image(model: keras.Model, image: np.ndarray, threshold: float = 0.5,
                  tta: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw slice (any size, dtype, 1 or 3 channels) -> ``(x, probs, mask)``.

    ``x``: the preprocessed image ``(H, W, C)`` in [0, 1]; ``probs``: ``(H, W)`` float32;
    ``mask``: ``(H, W)`` uint8 0/1 — all at the input's own H, W.
    """
    channels = model.input_shape[-1]
    x = preprocess_image(image, size=None, channels=channels)
    probs = predict_any_size(model, x, tta=tta)
    return x, probs, (probs >= threshold).astype(np.uint8)


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or RGB ``(H, W, 3)`` array as PNG, atomically."""
    data = encode_png(np.asarray(array, dtype=np.uint8))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def segment_files(files: Sequence[Path], output: Path, model_path: str | None = None,
                  threshold: float = 0.5, tta: bool = False, precision: str = "float32",
                  jit_compile: bool = False) -> Iterator[dict]:
    """Segment each file; yield ``{"input", "mask", "overlay", "area_px", "area_pct"}``.

    ``precision`` and ``jit_compile`` set up the forward pass (see
    :func:`~unet_keras.inference.inference_model`).
    """
    model = inference_model(load_model(model_path), precision, jit_compile)
    output.mkdir(parents=True, exist_ok=True)
    for f in files:
        x, _, mask = segment_image(model, read_image_file(f), threshold, tta)
        mask_path, overlay_path = output / f"{f.stem}_mask.png", output / f"{f.stem}_overlay.png"
        write_png(mask_path, mask * 255)
        write_png(overlay_path, (overlay(x, mask) * 255).round().astype(np.uint8))
        area = int(mask.sum())
        yield {"input": str(f), "mask": str(mask_path), "overlay": str(overlay_path),
               "area_px": area, "area_pct": 100.0 * area / mask.size}
