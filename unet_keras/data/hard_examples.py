"""Hard-example sampling: draw more patches from the training slices a model segments worst.

A model's misses are not spread evenly: the bundled model misses 5% of its own *training*
slices (Dice < 0.1) while it fits the rest at a median 0.90, so uniform sampling spends most
steps on slices it already gets right. A second sitting (``--init-from``) can instead draw a
share ``--hard-fraction`` of its patches from slices weighted by ``1 - Dice`` of a model, read
from the ``per_image.csv`` that ``evaluate.py`` writes for that model's split (columns ``id``
and ``dice``): each patch's slice is, with that probability, drawn by the weights instead of
taken from the uniform, reshuffled order (whose slot it replaces).

The weights are fixed for the run: they record where the starting model failed, and the next
sitting measures them anew with ``evaluate.py``. The run keeps a copy of the file
(``hard_examples.csv`` in its directory), which ``--resume`` reads.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_keras.data.slices import DataError

#: Every slice keeps at least this weight, so a slice the model fits is still drawn sometimes.
MIN_WEIGHT = 0.02


def read_dice(path: str | Path) -> dict[str, float]:
    """``{slice id: Dice}`` from an ``evaluate.py`` ``per_image.csv`` (its ``id`` and ``dice``
    columns; a slice listed in several splits keeps its last row).

    Raises:
        DataError: the file is missing, unreadable, lacks those columns, or holds a Dice that
            is not a number in [0, 1].
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the per-image scores ({exc})") from exc
    if not rows or not {"id", "dice"} <= set(rows[0]):
        raise DataError(f"{path}: not a per_image.csv of evaluate.py (needs 'id' and 'dice' "
                        "columns and at least one row)")
    dice: dict[str, float] = {}
    for line, row in enumerate(rows, start=2):
        try:
            value = float(row["dice"])
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{path}: line {line}: Dice {row['dice']!r} is not a number in "
                            "[0, 1]")
        dice[str(row["id"])] = value
    return dice


@dataclass(frozen=True)
class HardExamples:
    """Sampling probabilities of the training slices and what they were made from."""

    #: float64 ``(n_train,)``, non-negative, summing to 1.
    weights: np.ndarray
    #: The Dice of the training slices the file scores (the others got the mean weight).
    scores: np.ndarray


def hard_example_weights(ids: Sequence[str], dice: Mapping[str, float],
                         source: str | Path = "scores") -> HardExamples:
    """Sampling probabilities of the slices ``ids``: ``max(1 - Dice, MIN_WEIGHT)`` from
    ``dice`` (:func:`read_dice` of ``source``), normalised to sum to 1. A slice without a
    score gets the mean weight of those with one.

    Raises:
        DataError: ``dice`` scores none of ``ids`` (another dataset's file).
    """
    known = np.array([dice.get(str(i), np.nan) for i in ids], dtype=np.float64)
    scored = ~np.isnan(known)
    if not scored.any():
        raise DataError(f"{source}: scores none of the {len(ids)} training slices (ids such "
                        f"as {list(ids[:1])}); pass the per_image.csv evaluate.py wrote for "
                        "this dataset's split")
    weights = np.maximum(1.0 - known, MIN_WEIGHT)  # NaN (no score) stays NaN here
    weights[~scored] = weights[scored].mean()
    return HardExamples(weights / weights.sum(), known[scored])


def check_weights(weights: np.ndarray, n: int) -> np.ndarray:
    """``weights`` as ``n`` float64 probabilities summing to 1.

    Raises:
        ValueError: not ``n`` finite non-negative numbers with a positive sum.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or not np.all(w >= 0) or not w.sum() > 0:
        raise ValueError(f"hard-example weights must be {n} non-negative numbers, not all 0; "
                         f"got shape {w.shape}")
    return w / w.sum()
