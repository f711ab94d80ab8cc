"""Train/val/test splits that keep related slices together, k-fold, and the ``split.json`` file.

Slices of one patient are strongly correlated; a split that puts some in train and some in test
overstates accuracy. Groups are therefore split, never slices:

* ``"patient"``: one group per patient id (the default when every slice has one);
* ``"block"``: runs of consecutive file numbers, ``number // block_size`` (the default for PNG
  folders without patient ids: neighbouring Figshare slices are usually one patient); ids that
  are not numbers are chunked in sorted order;
* ``"image"``: every slice alone, only on request, with a warning about leakage.

Group order is shuffled with ``seed``; groups then fill test, val, and the rest goes to train.

:func:`split_dataset` is the one recipe (a K/N fold or a train/val/test split) that training,
evaluation and the TFRecord export share; :func:`load_split_data` reads a dataset, splits it
(or reuses a run's ``split.json``) and preprocesses each split.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unet_keras.atomic import write_text_atomic
from unet_keras.data.preprocess import load_arrays
from unet_keras.data.readers import SAMPLE_DIR, read_dataset
from unet_keras.data.slices import DataError, Slice, natural_key

SPLITS = ("train", "val", "test")
DEFAULT_BLOCK_SIZE = 10


def _by_patient(slices: Sequence[Slice], block_size: int) -> list[str]:
    missing = [s for s in slices if not s.patient_id]
    if missing:
        raise DataError(
            f"{missing[0].path}: no patient id ({len(missing)} slice(s) without one); "
            "split by block or image instead"
        )
    return [str(s.patient_id) for s in slices]


def _by_block(slices: Sequence[Slice], block_size: int) -> list[str]:
    if block_size < 1:
        raise DataError(f"split: block_size must be >= 1, got {block_size}")
    keys = [""] * len(slices)
    order = sorted(range(len(slices)), key=lambda i: natural_key(slices[i].id))
    for rank, i in enumerate(order):
        number = re.fullmatch(r"\d+", slices[i].id)
        keys[i] = (f"block{int(slices[i].id) // block_size}" if number
                   else f"chunk{rank // block_size}")
    return keys


def _by_image(slices: Sequence[Slice], block_size: int) -> list[str]:
    warnings.warn(
        "splitting by image: slices of one patient leak across train/val/test, so "
        "validation and test scores are optimistic", stacklevel=4,
    )
    return [s.id for s in slices]


@dataclass(frozen=True)
class SplitMode:
    """One way of grouping slices (``--split-by``): ``group_keys(slices, block_size)`` gives
    each slice's group key; ``description`` is its ``--help`` text."""

    group_keys: Callable[[Sequence[Slice], int], list[str]]
    description: str


#: The split modes (``--split-by``); none given: :func:`default_split_by`.
SPLIT_BY: dict[str, SplitMode] = {
    "patient": SplitMode(_by_patient, "one group per patient id (the default when every "
                                      "slice has one)"),
    "block": SplitMode(_by_block, "runs of consecutive file numbers (the default for plain "
                                  "folders)"),
    "image": SplitMode(_by_image, "every slice alone (leaks slices of a patient across "
                                  "splits)"),
}


def default_split_by(slices: Sequence[Slice]) -> str:
    """``"patient"`` when every slice has a patient id, else ``"block"``."""
    return "patient" if slices and all(s.patient_id for s in slices) else "block"


def group_keys(
    slices: Sequence[Slice], by: str | None = None, block_size: int = DEFAULT_BLOCK_SIZE
) -> list[str]:
    """The group of each slice (a key string per slice) for the split mode ``by``
    (:data:`SPLIT_BY`; ``None``: :func:`default_split_by`).

    Raises:
        DataError: ``by="patient"`` but some slice has no patient id; unknown ``by``.
    """
    by = by or default_split_by(slices)
    if by not in SPLIT_BY:
        raise DataError(f"split: unknown split-by {by!r}; expected one of {tuple(SPLIT_BY)}")
    return SPLIT_BY[by].group_keys(slices, block_size)


def _shuffled_groups(keys: Sequence[str], seed: int) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    names = sorted(groups, key=natural_key)
    order = np.random.default_rng(seed).permutation(len(names))
    return [groups[names[j]] for j in order]


def split_records(
    slices: Sequence[Slice],
    by: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> dict[str, list[int]]:
    """Split slice indices into ``{"train", "val", "test"}`` by groups (see module doc).

    Shuffled groups go to test while it holds less than ``test_fraction`` of the slices (a
    group that would overshoot by more than the shortfall goes on), then likewise to val, the
    rest to train; train always gets a group, a split with fraction 0 stays empty.

    Raises:
        DataError: fractions out of range or too few groups for the requested splits.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"split: bad fractions val={val_fraction} test={test_fraction}")
    groups = _shuffled_groups(group_keys(slices, by, block_size), seed)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if len(groups) < needed:
        raise DataError(
            f"split: {len(groups)} group(s) of slices, need at least {needed} for "
            f"train/val/test; use fewer splits, a smaller block size or more data"
        )
    n = len(slices)
    targets = {"test": test_fraction * n, "val": val_fraction * n}
    out: dict[str, list[int]] = {name: [] for name in SPLITS}

    def takes(name: str, group: list[int], groups_after: int, reserve: int) -> bool:
        """Below target, at least ``reserve`` groups left for later splits, and adding the
        group overshoots the target by no more than the current shortfall (or the split is
        empty)."""
        have, target = len(out[name]), targets[name]
        if have >= target or groups_after < reserve:
            return False
        return have == 0 or have + len(group) - target <= target - have

    for gi, g in enumerate(groups):
        after = len(groups) - gi - 1  # groups still to place after this one
        val_waiting = int(bool(targets["val"]) and not out["val"])
        if takes("test", g, after, reserve=val_waiting + 1):
            out["test"].extend(g)
        elif takes("val", g, after, reserve=1):
            out["val"].extend(g)
        else:
            out["train"].extend(g)
    return {name: sorted(idx) for name, idx in out.items()}


def kfold_records(
    slices: Sequence[Slice],
    k: int,
    fold: int,
    by: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> dict[str, list[int]]:
    """Fold ``fold`` (0-based) of a grouped k-fold: its groups are the test split.

    Groups are shuffled with ``seed`` and dealt to the fold with the fewest slices so far, so
    every group is in exactly one fold's test split. From the other groups, ``val_fraction``
    of the slices (whole groups, seeded) form val; the rest train.

    Raises:
        DataError: ``k < 2``, ``fold`` out of range, or fewer groups than ``k``.
    """
    if k < 2 or not 0 <= fold < k:
        raise DataError(f"k-fold: need k >= 2 and 0 <= fold < k, got k={k} fold={fold}")
    groups = _shuffled_groups(group_keys(slices, by, block_size), seed)
    if len(groups) < k:
        raise DataError(f"k-fold: {len(groups)} group(s) of slices cannot make {k} folds")
    folds: list[list[list[int]]] = [[] for _ in range(k)]
    sizes = [0] * k
    for g in sorted(groups, key=len, reverse=True):  # stable: equal sizes keep shuffled order
        j = int(np.argmin(sizes))
        folds[j].append(g)
        sizes[j] += len(g)
    rest = [g for j in range(k) if j != fold for g in folds[j]]
    rest = [rest[j] for j in np.random.default_rng(seed + 1).permutation(len(rest))]
    target = val_fraction * sum(len(g) for g in rest)
    test = [i for g in folds[fold] for i in g]
    out: dict[str, list[int]] = {"train": [], "val": [], "test": test}
    for gi, g in enumerate(rest):
        if len(out["val"]) < target and gi < len(rest) - 1:
            out["val"].extend(g)
        else:
            out["train"].extend(g)
    return {name: sorted(idx) for name, idx in out.items()}


def write_split_json(
    path: str | Path,
    slices: Sequence[Slice],
    split: Mapping[str, Sequence[int]],
    info: Mapping[str, Any] | None = None,
) -> None:
    """Write the manifest: per split, the slice ids, paths and patients, plus counts.

    ``info`` (e.g. ``{"by": "patient", "seed": 42}``) is stored as given.
    """
    doc: dict[str, Any] = {"version": 1, "info": dict(info or {}), "counts": {}, "splits": {}}
    for name, idx in split.items():
        chosen = [slices[i] for i in idx]
        doc["counts"][name] = len(chosen)
        doc["splits"][name] = {
            "ids": [s.id for s in chosen],
            "paths": [s.path for s in chosen],
            "patients": sorted({s.patient_id for s in chosen if s.patient_id}, key=natural_key),
        }
    write_text_atomic(path, json.dumps(doc, indent=1) + "\n")


def read_split_json(path: str | Path, slices: Sequence[Slice]) -> dict[str, list[int]]:
    """Map a ``split.json`` back onto ``slices`` (by id) -> ``{split: [indices]}``.

    Raises:
        DataError: unreadable manifest, or ids it lists that ``slices`` lacks.
    """
    try:
        doc = json.loads(Path(path).read_text())
        listed = {name: list(part["ids"]) for name, part in doc["splits"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        problem = f"{type(e).__name__}: {e}"
        raise DataError(f"{path}: not a readable split manifest ({problem})") from None
    index = {s.id: i for i, s in enumerate(slices)}
    missing = [i for ids in listed.values() for i in ids if i not in index]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} slice id(s) of the manifest are not in the dataset "
            f"(first: {missing[0]!r}); was it written for other data?"
        )
    return {name: sorted(index[i] for i in ids) for name, ids in listed.items()}


def parse_fold(fold: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (fold K of N-fold cross-validation) -> ``(K, N)`` with 1 <= K <= N and N >= 2;
    ``None`` -> ``None``.

    Raises:
        DataError: not of the form ``K/N`` or out of range.
    """
    if fold is None:
        return None
    try:
        k, n = (int(v) for v in str(fold).split("/"))
    except ValueError:
        raise DataError(f"fold must look like 'K/N' (e.g. 2/5), got {fold!r}") from None
    if not 1 <= k <= n or n < 2:
        raise DataError(f"fold K/N needs 1 <= K <= N and N >= 2, got {fold!r}")
    return k, n


def split_dataset(
    slices: Sequence[Slice],
    by: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
    fold: str | None = None,
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """The split recipe of a run: fold ``K/N`` of a grouped k-fold (:func:`kfold_records`) when
    ``fold`` is given, else a train/val/test split (:func:`split_records`).

    Returns ``(split, info)``: indices per split, and the ``info`` that ``split.json`` records
    (``by`` as resolved, ``seed``, ``fold``).
    """
    k_of_n = parse_fold(fold)
    if k_of_n is not None:
        split = kfold_records(slices, k=k_of_n[1], fold=k_of_n[0] - 1, by=by, seed=seed,
                              val_fraction=val_fraction)
    else:
        split = split_records(slices, by=by, val_fraction=val_fraction,
                              test_fraction=test_fraction, seed=seed)
    return split, {"by": by or default_split_by(slices), "seed": seed, "fold": fold}


class SplitSettings(Protocol):
    """What :func:`load_split_data` reads from its settings (a ``TrainConfig`` has them all;
    so does the TFRecord export's parsed command line, which needs no ``channels`` when it
    asks for no arrays)."""

    data: str | None
    format: str
    skip_bad: bool
    split_by: str | None
    val_fraction: float
    test_fraction: float
    seed: int
    fold: str | None
    image_size: int
    channels: int  # read only when arrays are asked for


def load_split_data(
    settings: SplitSettings,
    run_dir: str | Path | None = None,
    fresh: bool = False,
    arrays: bool = True,
) -> tuple[list[Slice], dict[str, list[int]], dict[str, tuple[np.ndarray, np.ndarray]] | None]:
    """Read the dataset (``settings.data``, default the bundled sample), split it with
    :func:`split_dataset` (or reuse ``run_dir/split.json`` unless ``fresh``) and preprocess each
    split at ``settings.image_size`` with ``settings.channels``; a new split is written to
    ``run_dir`` (created then) when one is given.

    Returns ``(slices, split, split_arrays)`` with ``split = {name: [indices]}`` and
    ``split_arrays = {name: (images, masks)}``, float32 ``(N, image_size, image_size,
    channels)`` and ``(N, image_size, image_size, 1)``, for every non-empty split (``None``
    when ``arrays`` is false).
    """
    path = settings.data or str(SAMPLE_DIR)
    slices = read_dataset(path, format=settings.format, skip_bad=settings.skip_bad)
    split_file = Path(run_dir) / "split.json" if run_dir is not None else None
    if split_file is not None and split_file.exists() and not fresh:
        split = read_split_json(split_file, slices)
    else:
        split, info = split_dataset(slices, by=settings.split_by,
                                    val_fraction=settings.val_fraction,
                                    test_fraction=settings.test_fraction, seed=settings.seed,
                                    fold=settings.fold)
        if split_file is not None:
            split_file.parent.mkdir(parents=True, exist_ok=True)
            write_split_json(split_file, slices, split, info=info)
    if not arrays:
        return slices, split, None
    return slices, split, {
        name: load_arrays([slices[i] for i in idx], settings.image_size, settings.channels)
        for name, idx in split.items() if idx
    }
