"""Writing a TFRecord export: :func:`write_export` stores already split slices as shards plus
their manifests; :func:`export_dataset` reads, splits (as ``train.py`` does) and writes a
dataset in one call. The format is described in :mod:`unet_keras.data.tfrecord`;
:mod:`.reader` reads it back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from unet_keras.data.preprocess import preprocess_image, preprocess_mask
from unet_keras.data.readers import read_dataset
from unet_keras.data.records import DataError, Slice
from unet_keras.data.splits import parse_fold, split_dataset, write_split_json
from unet_keras.data.tfrecord.reader import (
    MANIFEST,
    VERSION,
    TFRecordExport,
    is_export,
    open_export,
)


def _example(s: Slice, index: int, size: int) -> bytes:
    image = preprocess_image(s.image, size, 1)[..., 0].astype("<f4")
    mask = preprocess_mask(s.mask, size)[..., 0].astype(np.uint8)

    def raw(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def integer(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {
        "image": raw(image.tobytes()), "mask": raw(mask.tobytes()), "size": integer(size),
        "index": integer(index), "id": raw(s.id.encode()),
        "patient_id": raw((s.patient_id or "").encode()),
        "label": integer(-1 if s.label is None else int(s.label)),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_export(
    slices: Sequence[Slice],
    split: Mapping[str, Sequence[int]],
    output: str | os.PathLike,
    image_size: int,
    shards: int = 8,
    source: str = "",
    info: Mapping | None = None,
) -> TFRecordExport:
    """Write ``slices`` as a sharded TFRecord export of ``split`` (``{name: [indices]}``).

    Args:
        slices: the dataset, as :func:`unet_keras.data.read_dataset` returns it.
        split: indices of ``slices`` per split (as :func:`unet_keras.data.split_records`).
        output: export directory; created, or an existing one without an export in it.
        image_size: ``S``: slices are preprocessed to ``(S, S)`` (see the module doc).
        shards: shards per split (fewer when a split has fewer slices).
        source: where the slices came from (recorded in the manifest).
        info: how the split was made (recorded in ``split.json``).

    Raises:
        DataError: ``output`` already holds an export, or ``shards``/``image_size`` < 1.
    """
    root = Path(output)
    if shards < 1 or image_size < 1:
        raise DataError(f"{root}: shards and image size must be >= 1, got {shards}, {image_size}")
    if is_export(root):
        raise DataError(f"{root}: already holds a TFRecord export; choose another output")
    root.mkdir(parents=True, exist_ok=True)
    write_split_json(root / "split.json", slices, split, info=info)
    entries = {}
    for name, idx in split.items():
        n = min(shards, len(idx))
        files = [f"{name}-{k:05d}-of-{n:05d}.tfrecord" for k in range(n)]
        for k, filename in enumerate(files):
            tmp = root / f".tmp-{filename}"
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for position in range(k, len(idx), n):
                    writer.write(_example(slices[idx[position]], position, image_size))
            os.replace(tmp, root / filename)
        entries[name] = {"count": len(idx), "shards": files}
    manifest = {"version": VERSION, "image_size": image_size, "source": source,
                "splits": entries}
    tmp = root / f".tmp-{MANIFEST}"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, root / MANIFEST)
    return open_export(root)


def export_dataset(
    data: str | os.PathLike,
    output: str | os.PathLike,
    image_size: int,
    format: str = "auto",
    skip_bad: bool = False,
    split_by: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
    fold: str | None = None,
    shards: int = 8,
) -> TFRecordExport:
    """Read a dataset, split it as ``train.py`` would with the same options (the one recipe,
    :func:`unet_keras.data.split_dataset`), and export it.

    ``fold="K/N"`` exports fold K (1-based) of N-fold cross-validation by group instead of a
    train/val/test split. Returns the opened export.

    Raises:
        DataError: ``fold`` is not ``K/N`` (checked before reading), unreadable data, or as
            :func:`write_export`.
    """
    parse_fold(fold)
    slices = read_dataset(data, format=format, skip_bad=skip_bad)
    split, info = split_dataset(slices, by=split_by, val_fraction=val_fraction,
                                test_fraction=test_fraction, seed=seed, fold=fold)
    return write_export(slices, split, output, image_size, shards=shards,
                        source=str(Path(data).resolve()), info=info)
