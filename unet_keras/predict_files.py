"""Segment image files at their own size and write mask and overlay PNGs: what ``unet-predict``
(:mod:`unet_keras.cli.predict`) runs. Loading a model and predicting arrays is
:mod:`unet_keras.inference`.

Output names: an input ``REL`` (its path relative to the folder it was found in, or its file
name when given directly) gets ``OUT/REL_mask.png`` and ``OUT/REL_overlay.png``, e.g.
``scans/a/1.png`` -> ``OUT/a/1.png_mask.png``: the sub-folder and the suffix are kept, so
``a/1.png``, ``a/1.jpg`` and ``b/1.png`` never share an output. Two inputs that would still
share one are refused before anything runs, and so is an output file left by an earlier run
unless ``overwrite`` is set.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import NamedTuple

import keras
import numpy as np
from tqdm import tqdm

from unet_keras.data import read_image_file
from unet_keras.data.preprocess import preprocess_image
from unet_keras.inference import (
    default_tta,
    inference_model,
    load_unet,
    mask_rule,
    predict_any_size,
)
from unet_keras.viz import overlay, write_png

#: What ``unet-predict`` appends to an input's name; files ending so are its own outputs.
MASK_SUFFIX, OVERLAY_SUFFIX = "_mask.png", "_overlay.png"


def is_own_output(path: str | os.PathLike) -> bool:
    """True for a name ending in ``_mask.png`` or ``_overlay.png`` (what this tool writes)."""
    name = PurePath(path).name
    return name.endswith(MASK_SUFFIX) or name.endswith(OVERLAY_SUFFIX)


def output_paths(relative: str | os.PathLike, output: Path) -> tuple[Path, Path]:
    """``(OUT/REL_mask.png, OUT/REL_overlay.png)`` for an input whose relative name is
    ``relative`` (sub-folder and suffix kept: ``a/1.png`` -> ``OUT/a/1.png_mask.png``)."""
    rel = PurePath(relative)
    folder = output / rel.parent
    return folder / f"{rel.name}{MASK_SUFFIX}", folder / f"{rel.name}{OVERLAY_SUFFIX}"


def plan_outputs(files: Sequence[Path], output: Path,
                 relative: Sequence[str | os.PathLike] | None = None,
                 overwrite: bool = False) -> list[tuple[Path, Path]]:
    """The ``(mask, overlay)`` paths of every input, checked before any work is done.

    Args:
        files: the inputs.
        output: the output folder (created when the first file is written).
        relative: each input's name below ``output`` (default: its file name).
        overwrite: allow replacing files that exist already (an earlier run's).

    Raises:
        ValueError: ``output`` is an existing file; two different inputs would write the same
            output; or (without ``overwrite``) an output exists already.
    """
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output}: exists and is not a folder; -o/--output must name a folder")
    names = [PurePath(f.name) for f in files] if relative is None else list(relative)
    if len(names) != len(files):
        raise ValueError(f"{len(files)} inputs but {len(names)} relative names")
    plan = [output_paths(rel, output) for rel in names]
    writer: dict[Path, Path] = {}
    for f, (mask, _) in zip(files, plan, strict=True):
        first = writer.setdefault(mask, f)
        if first != f and Path(first).resolve() != Path(f).resolve():
            raise ValueError(f"{first} and {f} would both be written to {mask}; segment them "
                             "in separate runs or into separate -o folders")
    if not overwrite:
        for path in (p for pair in plan for p in pair):
            if path.exists():
                raise ValueError(f"{path}: already exists (an earlier run's output?); pass "
                                 "--overwrite to replace it, or choose another -o folder")
    return plan


class Segmentation(NamedTuple):
    """One slice segmented by :func:`segment_images`, all at the slice's own ``H, W``."""

    x: np.ndarray  #: the preprocessed image ``(H, W, C)`` in [0, 1]
    probs: np.ndarray  #: tumour probabilities ``(H, W)`` float32
    mask: np.ndarray  #: ``(H, W)`` uint8 0/1
    best_guess: bool  #: no pixel reached the threshold; ``mask`` is the fallback's best guess


def segment_images(model: keras.Model, images: Sequence[np.ndarray],
                   threshold: float | None = None, tta: bool | None = None,
                   batch_size: int = 8, postprocess: bool | None = None
                   ) -> list[Segmentation]:
    """Raw slices (any sizes, dtypes, 1 or 3 channels) -> a :class:`Segmentation` each.

    Slices of equal size go
    through the model together, ``batch_size`` per forward pass. ``threshold``, ``tta`` (flip
    test-time augmentation) and ``postprocess``: default the model's own
    (:func:`~unet_keras.inference.mask_rule`, :func:`~unet_keras.inference.default_tta`);
    ``postprocess=False`` makes the masks by the threshold alone.
    """
    rule = mask_rule(model, threshold, postprocess)
    tta = default_tta(model) if tta is None else tta
    channels = model.input_shape[-1]
    xs = [preprocess_image(image, image_size=None, channels=channels) for image in images]
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, x in enumerate(xs):
        by_shape[x.shape].append(i)
    probs: list[np.ndarray] = [np.empty(0)] * len(xs)
    for indices in by_shape.values():
        batch = predict_any_size(model, np.stack([xs[i] for i in indices]), batch_size, tta)
        for i, p in zip(indices, batch, strict=True):
            probs[i] = p
    return [Segmentation(x, p, *rule.mask_and_guess(p)) for x, p in zip(xs, probs, strict=True)]


def segment_files(files: Sequence[Path], output: Path, model_path: str | None = None,
                  threshold: float | None = None, tta: bool | None = None,
                  precision: str = "float32",
                  jit_compile: bool = False, batch_size: int = 8,
                  relative: Sequence[str | os.PathLike] | None = None,
                  overwrite: bool = False, progress: bool = False,
                  postprocess: bool | None = None) -> Iterator[dict]:
    """Segment each file; yield ``{"input", "mask", "overlay", "area_px", "area_pct",
    "best_guess"}`` in the order of ``files`` (``best_guess``: no pixel reached the threshold
    and the mask is the stored fallback's best guess, see :class:`Segmentation`).

    The outputs are planned and checked first (:func:`plan_outputs`: no two inputs share an
    output, no earlier file is replaced unless ``overwrite``), then the model is loaded
    (:func:`~unet_keras.inference.load_unet`). Files are read one by one and segmented
    ``batch_size`` at a time, equal-size slices sharing forward passes. A file that cannot be
    read raises its error (naming the file) after the files read before it have been written;
    nothing is written for it. ``threshold``, ``tta`` and ``postprocess``: as in
    :func:`segment_images`. ``precision`` and ``jit_compile`` set up the model (see
    :func:`~unet_keras.inference.inference_model`). With ``progress`` a tqdm bar over the
    files goes to stderr when that is a terminal (cleared when done; print beside it with
    ``tqdm.write``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    plan = plan_outputs(files, output, relative, overwrite)
    model = inference_model(load_unet(model_path), precision, jit_compile)
    pending: list[tuple[Path, np.ndarray, tuple[Path, Path]]] = []

    def flush() -> Iterator[dict]:
        results = segment_images(model, [image for _, image, _ in pending], threshold, tta,
                                 batch_size, postprocess)
        done = [_write_outputs(f, result, paths)
                for (f, _, paths), result in zip(pending, results, strict=True)]
        pending.clear()
        bar.update(len(done))
        yield from done

    with tqdm(total=len(files), desc="segmenting", unit="file", leave=False,
              disable=None if progress else True) as bar:  # None: only on a terminal
        for f, paths in zip(files, plan, strict=True):
            try:
                pending.append((f, read_image_file(f), paths))
            except Exception:
                yield from flush()
                raise
            if len(pending) == batch_size:
                yield from flush()
        if pending:
            yield from flush()


def _write_outputs(f: Path, result: Segmentation, paths: tuple[Path, Path]) -> dict:
    """Write the mask (0/255) and the overlay of one input; describe them."""
    mask_path, overlay_path = paths
    mask = result.mask
    write_png(mask_path, mask * 255)
    write_png(overlay_path, (overlay(result.x, mask) * 255).round().astype(np.uint8))
    area = int(mask.sum())
    return {"input": str(f), "mask": str(mask_path), "overlay": str(overlay_path),
            "area_px": area, "area_pct": 100.0 * area / mask.size,
            "best_guess": result.best_guess}
