"""Segment image files at their own size and write mask and overlay PNGs (``unet-predict``)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from unet_keras.atomic import atomic_path
from unet_keras.data import read_image_file
from unet_keras.data.preprocess import preprocess_image
from unet_keras.inference import inference_model, load_model, predict_any_size
from unet_keras.viz import encode_png, overlay


def segment_images(model: keras.Model, images: Sequence[np.ndarray], threshold: float = 0.5,
                   tta: bool = False, batch_size: int = 8
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Raw slices (any sizes, dtypes, 1 or 3 channels) -> per slice ``(x, probs, mask)``.

    ``x``: the preprocessed image ``(H, W, C)`` in [0, 1]; ``probs``: ``(H, W)`` float32;
    ``mask``: ``(H, W)`` uint8 0/1, all at that slice's own H, W. Slices of equal size go
    through the model together, ``batch_size`` per forward pass.
    """
    channels = model.input_shape[-1]
    xs = [preprocess_image(image, size=None, channels=channels) for image in images]
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, x in enumerate(xs):
        by_shape[x.shape].append(i)
    probs: list[np.ndarray] = [np.empty(0)] * len(xs)
    for indices in by_shape.values():
        batch = predict_any_size(model, np.stack([xs[i] for i in indices]), batch_size, tta)
        for i, p in zip(indices, batch, strict=True):
            probs[i] = p
    return [(x, p, (p >= threshold).astype(np.uint8)) for x, p in zip(xs, probs, strict=True)]


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or RGB ``(H, W, 3)`` array as PNG, atomically."""
    data = encode_png(np.asarray(array, dtype=np.uint8))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def segment_files(files: Sequence[Path], output: Path, model_path: str | None = None,
                  threshold: float = 0.5, tta: bool = False, precision: str = "float32",
                  jit_compile: bool = False, batch_size: int = 8) -> Iterator[dict]:
    """Segment each file; yield ``{"input", "mask", "overlay", "area_px", "area_pct"}`` in the
    order of ``files``.

    Files are read one by one and segmented ``batch_size`` at a time, equal-size slices
    sharing forward passes. A file that cannot be read raises its error (naming the file)
    after the files read before it have been written. ``precision`` and ``jit_compile`` set
    up the model (see :func:`~unet_keras.inference.inference_model`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model = inference_model(load_model(model_path), precision, jit_compile)
    output.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> Iterator[dict]:
        results = segment_images(model, [image for _, image in pending], threshold, tta,
                                 batch_size)
        done = [_write_outputs(f, x, mask, output)
                for (f, _), (x, _, mask) in zip(pending, results, strict=True)]
        pending.clear()
        yield from done

    for f in files:
        try:
            pending.append((f, read_image_file(f)))
        except Exception:
            yield from flush()
            raise
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()


def _write_outputs(f: Path, x: np.ndarray, mask: np.ndarray, output: Path) -> dict:
    """Write ``<stem>_mask.png`` and ``<stem>_overlay.png`` for one input; describe them."""
    mask_path, overlay_path = output / f"{f.stem}_mask.png", output / f"{f.stem}_overlay.png"
    write_png(mask_path, mask * 255)
    write_png(overlay_path, (overlay(x, mask) * 255).round().astype(np.uint8))
    area = int(mask.sum())
    return {"input": str(f), "mask": str(mask_path), "overlay": str(overlay_path),
            "area_px": area, "area_pct": 100.0 * area / mask.size}
