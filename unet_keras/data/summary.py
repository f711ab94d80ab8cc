"""Dataset summary for ``python -m unet_keras.data inspect``: streams the files once (tqdm bar)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unet_keras.data.readers import list_files, read_slice
from unet_keras.data.slices import DataError, Slice

LABEL_NAMES = {1: "meningioma", 2: "glioma", 3: "pituitary"}


@dataclass
class DatasetSummary:
    """Counts and ranges over a dataset's slices (``mask_area``: tumor fraction of the slice)."""

    path: str
    format: str
    files: int = 0
    slices: int = 0
    bad: list[str] = field(default_factory=list)
    patients: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    empty_masks: int = 0
    sizes: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    intensity_min: float = float("inf")
    intensity_max: float = float("-inf")
    mask_areas: list[float] = field(default_factory=list)

    def add(self, s: Slice) -> None:
        """Count one slice."""
        self.slices += 1
        if s.patient_id:
            self.patients[s.patient_id] += 1
        if s.label is not None:
            self.labels[s.label] += 1
        area = float(s.mask.mean())
        if area == 0.0:
            self.empty_masks += 1
        else:
            self.mask_areas.append(area)
        self.sizes[s.image.shape] += 1
        self.dtypes[str(s.image.dtype)] += 1
        self.intensity_min = min(self.intensity_min, float(s.image.min()))
        self.intensity_max = max(self.intensity_max, float(s.image.max()))

    def lines(self) -> list[str]:
        """Human-readable report, one fact per line."""
        out = [f"dataset: {self.path} (format {self.format})",
               f"slices: {self.slices} of {self.files} file(s)"
               + (f", {len(self.bad)} bad (skipped)" if self.bad else "")]
        if self.patients:
            per = sorted(self.patients.values())
            out.append(f"patients: {len(self.patients)} (slices per patient: min {per[0]}, "
                       f"median {per[len(per) // 2]}, max {per[-1]})")
        else:
            out.append("patients: none recorded (split by block of file numbers)")
        if self.labels:
            out.append("labels: " + ", ".join(
                f"{k} {LABEL_NAMES.get(k, '?')}: {v}" for k, v in sorted(self.labels.items())))
        else:
            out.append("labels: none recorded")
        pct = 100.0 * self.empty_masks / max(self.slices, 1)
        out.append(f"empty masks: {self.empty_masks} ({pct:.1f}%)")
        out.append("image sizes: " + ", ".join(
            f"{'x'.join(map(str, s))}: {n}" for s, n in self.sizes.most_common()))
        out.append("dtypes: " + ", ".join(f"{d}: {n}" for d, n in self.dtypes.most_common()))
        if self.slices:
            out.append(f"intensity range: {self.intensity_min:g} .. {self.intensity_max:g}")
        if self.mask_areas:
            a = 100.0 * np.asarray(self.mask_areas)
            out.append(f"tumor area (non-empty masks): min {a.min():.2f}%, mean {a.mean():.2f}%, "
                       f"max {a.max():.2f}%")
        out.extend(f"bad: {b}" for b in self.bad[:10])
        return out


def summarize_dataset(path: str | Path, format: str = "auto", skip_bad: bool = False,
                      progress: bool = True) -> DatasetSummary:
    """Read every slice once (without keeping them) and collect a :class:`DatasetSummary`.

    Raises:
        DataError: the first bad file, unless ``skip_bad``.
    """
    fmt, files = list_files(path, format)
    summary = DatasetSummary(path=str(path), format=fmt, files=len(files))
    # The bar goes to stderr on a terminal only and is cleared when done (or on an error).
    with tqdm(files, desc="inspecting", unit="slice", leave=False,
              disable=None if progress else True) as bar:
        for f in bar:
            try:
                s = read_slice(f, fmt)
            except DataError as e:
                if not skip_bad:
                    raise
                summary.bad.append(str(e))
                continue
            summary.add(s)
    if not summary.slices:
        raise DataError(f"{path}: no readable slices ({len(summary.bad)} bad file(s))")
    return summary
