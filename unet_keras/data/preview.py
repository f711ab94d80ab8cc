"""A grid of slices with their tumor outlines (``python -m unet_keras.data preview``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)
import numpy as np  # noqa: E402

from unet_keras.data.preprocess import scale_intensity, to_grayscale  # noqa: E402
from unet_keras.data.slices import Slice  # noqa: E402


def pick_evenly(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them if ``n >= n_total``)."""
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, n)})


def save_preview(slices: Sequence[Slice], out: str | Path, cols: int | None = None,
                 tile_inches: float = 2.2) -> Path:
    """Draw ``slices`` as a grid (grayscale, min-max scaled) with the mask outline in red and
    the id / patient / label as title; write a PNG to ``out``."""
    n = len(slices)
    if n == 0:
        raise ValueError("preview: no slices to draw")
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * tile_inches, rows * tile_inches),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, s in zip(axes.ravel(), slices, strict=False):
        ax.imshow(scale_intensity(to_grayscale(s.image)), cmap="gray", vmin=0, vmax=1)
        if s.mask.any():
            ax.contour(s.mask, levels=[0.5], colors="red", linewidths=0.8)
        title = s.id + (f" · {s.patient_id}" if s.patient_id else "")
        title += f" · label {s.label}" if s.label is not None else ""
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
