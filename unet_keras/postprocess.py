"""Post-processing of predicted probabilities with ``scipy.ndimage``.

Steps, applied in this order (each optional except the threshold):

1. ``threshold``: probabilities ``>= threshold`` become tumor. With ``fallback`` (a
   probability, 0 = off), a slice where no pixel reaches the threshold but the most probable
   one reaches ``fallback`` gets the model's best guess instead of an empty mask: the
   connected region of probabilities ``>= max / 2`` around that pixel. For data where every
   slice shows a tumour (Figshare); on data with tumour-free slices it turns some correct
   empty masks into false alarms, so it is chosen on a validation split (see
   :func:`unet_keras.scoring.choose_postprocess`).
2. ``fill_holes``: ``ndimage.binary_fill_holes``.
3. ``min_size``: connected components (8-connectivity) under ``min_size`` pixels are dropped.
4. ``keep_largest``: only the largest component is kept (all of the largest size, when
   several tie).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class PostProcess:
    """A post-processing recipe; ``PostProcess()`` is a plain 0.5 threshold."""

    threshold: float = 0.5
    fill_holes: bool = False
    min_size: int = 0
    keep_largest: bool = False
    fallback: float = 0.0

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """``(H, W)`` probabilities -> ``(H, W)`` uint8 0/1 mask."""
        return self.mask_and_guess(probs)[0]

    def best_guess(self, probs: np.ndarray) -> bool:
        """Whether this rule's mask of ``(H, W)`` ``probs`` is the fallback's best guess: no
        pixel reaches the threshold, the most probable one reaches ``fallback``, and the mask
        is not empty."""
        return self.mask_and_guess(probs)[1]

    def mask_and_guess(self, probs: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(mask, best_guess)``: :meth:`__call__`'s mask and :meth:`best_guess`'s answer,
        from one pass."""
        probs = np.asarray(probs)
        mask = probs >= self.threshold
        guessed = bool(self.fallback > 0 and probs.size and not mask.any()
                       and probs.max() >= self.fallback)
        if guessed:
            labels, _ = ndimage.label(probs >= probs.max() / 2, structure=EIGHT)
            mask = labels == labels.flat[int(np.argmax(probs))]
        if self.fill_holes:
            mask = ndimage.binary_fill_holes(mask)
        if self.min_size > 0 or self.keep_largest:
            labels, n = ndimage.label(mask, structure=EIGHT)
            if n:
                sizes = np.bincount(labels.ravel())[1:]
                keep = sizes >= self.min_size
                if self.keep_largest:
                    keep &= sizes == sizes.max()
                mask = np.isin(labels, np.flatnonzero(keep) + 1)
        return mask.astype(np.uint8), guessed and bool(mask.any())

    def describe(self) -> str:
        """The steps beyond the threshold in words, e.g. ``"largest region kept"``."""
        steps = (["holes filled"] * self.fill_holes
                 + [f"regions under {self.min_size} px dropped"] * (self.min_size > 0)
                 + ["largest region kept"] * self.keep_largest
                 + [f"a best guess where nothing reaches the threshold (if a pixel reaches "
                    f"{self.fallback:.2f})"] * (self.fallback > 0))
        return ", ".join(steps) or "no post-processing"

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Batch version: ``(N, H, W)`` -> ``(N, H, W)`` uint8."""
        return np.stack([self(p) for p in probs]) if len(probs) else np.zeros_like(probs, np.uint8)


def cumulative_steps(min_size: int = 64) -> dict[str, PostProcess]:
    """The steps in order, each adding one refinement, for showing each step's effect."""
    return {
        "threshold": PostProcess(),
        "+fill_holes": PostProcess(fill_holes=True),
        f"+min_size_{min_size}": PostProcess(fill_holes=True, min_size=min_size),
        "+keep_largest": PostProcess(fill_holes=True, min_size=min_size, keep_largest=True),
    }
