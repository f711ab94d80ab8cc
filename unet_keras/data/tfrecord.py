"""Sharded TFRecord exports of a split dataset, and the ``tf.data`` pipeline that reads them.

A dataset too large to re-read and re-preprocess on every host is exported once::

    python -m unet_keras.data.tfrecord export DATA OUT --image-size 256 --shards 16

``OUT`` then holds, per split, ``<split>-<k>-of-<n>.tfrecord`` shards (slices dealt round-robin
in split order, so shards differ in size by at most one), ``split.json`` (the same manifest a
run directory keeps, see :func:`unet_keras.data.write_split_json`) and ``tfrecord.json`` (image
size, counts, shard names, source; written last, so an export that has it is complete).

Each record is a ``tf.train.Example`` of one preprocessed slice (as :func:`load_arrays` makes
it, before the grayscale channel is replicated):

* ``image``: raw little-endian float32 bytes of the ``(S, S)`` grayscale image in [0, 1];
* ``mask``: raw uint8 bytes of the ``(S, S)`` 0/1 mask;
* ``size``: ``S``; ``index``: position in the split; ``id``, ``patient_id`` (empty when
  unknown): bytes; ``label``: int (-1 when unknown).

:func:`make_tfrecord_dataset` reads a split back. Its source is the list of shard files, so
under ``MultiWorkerMirroredStrategy`` TensorFlow's auto-sharding
(:class:`tf.data.experimental.AutoShardPolicy`) gives every worker its own shards (``FILE``;
``AUTO`` falls back to ``DATA``, every worker reading everything and keeping its part, when a
split has fewer shards than there are workers). Export at least as many shards as workers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from unet_keras.cli.common import cli_errors
from unet_keras.data.pipeline import AUTOTUNE, batch_examples
from unet_keras.data.preprocess import preprocess_image, preprocess_mask
from unet_keras.data.readers import FORMATS, read_dataset
from unet_keras.data.records import DataError, Slice
from unet_keras.data.splits import (
    SPLIT_BY,
    default_split_by,
    kfold_records,
    split_records,
    write_split_json,
)

MANIFEST = "tfrecord.json"
VERSION = 1
MAX_OPEN_SHARDS = 16  # shards read at once (interleaved) by one pipeline

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "mask": tf.io.FixedLenFeature([], tf.string),
}


@dataclass(frozen=True)
class TFRecordExport:
    """An export directory, as described by its ``tfrecord.json``.

    Attributes:
        root: the export directory.
        image_size: ``S`` of the stored ``(S, S)`` slices.
        counts: slices per split (``train``, ``val``, ``test``; 0 for an empty split).
        shards: shard files per split, in shard order.
        source: the dataset the export was made from.
    """

    root: Path
    image_size: int
    counts: dict[str, int]
    shards: dict[str, list[Path]]
    source: str

    def split_ids(self) -> dict[str, list[str]]:
        """Slice ids per split, in split order, from the export's ``split.json``."""
        path = self.root / "split.json"
        try:
            doc = json.loads(path.read_text())
            return {name: list(part["ids"]) for name, part in doc["splits"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a readable split manifest ({exc})") from None


def is_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a TFRecord export (its ``tfrecord.json``)."""
    return (Path(path) / MANIFEST).is_file()


def open_export(path: str | os.PathLike) -> TFRecordExport:
    """Read and check an export's ``tfrecord.json``.

    Raises:
        DataError: no or unreadable manifest, another format version, or a missing shard.
    """
    root = Path(path)
    manifest = root / MANIFEST
    try:
        doc = json.loads(manifest.read_text())
        version, size, splits = doc["version"], int(doc["image_size"]), doc["splits"]
        counts = {name: int(part["count"]) for name, part in splits.items()}
        shards = {name: [root / f for f in part["shards"]] for name, part in splits.items()}
    except FileNotFoundError:
        raise DataError(f"{manifest}: no such file; not a TFRecord export") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{manifest}: not a readable export manifest ({exc})") from None
    if version != VERSION:
        raise DataError(f"{manifest}: export format version {version}, this code reads {VERSION}")
    for files in shards.values():
        for f in files:
            if not f.is_file():
                raise DataError(f"{f}: shard listed in {manifest} is missing")
    return TFRecordExport(root, size, counts, shards, str(doc.get("source", "")))


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


def make_tfrecord_dataset(
    export: TFRecordExport,
    split: str,
    batch_size: int,
    channels: int,
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 1024,
    shard_policy: tf.data.experimental.AutoShardPolicy = tf.data.experimental.AutoShardPolicy.AUTO,
) -> tf.data.Dataset:
    """Batches of ``(image, mask)`` read from a split's shards.

    Shards are interleaved one record at a time, so an unshuffled read of a split with at most
    :data:`MAX_OPEN_SHARDS` shards returns the slices in split order.

    Args:
        export: from :func:`open_export`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        channels: the stored grayscale image is replicated to this many channels.
        shuffle_buffer: examples held for shuffling.
        repeat: repeat forever (then pass ``steps_per_epoch`` to ``fit``). Without, the read
            is one pass over the whole split and declares its length, so it must not be
            auto-sharded (multi-worker training repeats).
        shard_policy: how a multi-worker strategy splits the input between workers.
        Other arguments as in :func:`unet_keras.data.make_dataset`.

    Returns:
        A dataset of float32 ``((B, S, S, channels), (B, S, S, 1))`` batches, equal to what
        :func:`unet_keras.data.make_dataset` makes from :func:`load_arrays` of the same slices.

    Raises:
        DataError: the split is unknown or empty.
    """
    files = export.shards.get(split)
    if not files:
        raise DataError(f"{export.root}: the export has no {split!r} slices")
    size = export.image_size

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        example = tf.io.parse_single_example(record, _FEATURES)
        image = tf.reshape(tf.io.decode_raw(example["image"], tf.float32), (size, size, 1))
        mask = tf.reshape(tf.io.decode_raw(example["mask"], tf.uint8), (size, size, 1))
        return tf.tile(image, (1, 1, channels)), tf.cast(mask, tf.float32)

    ds = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), MAX_OPEN_SHARDS),
                       block_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    if not repeat:  # one pass over the whole split: let Keras know the number of batches
        ds = ds.apply(tf.data.experimental.assert_cardinality(export.counts[split]))
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, export.counts[split]), seed=seed,
                        reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy
    batches = batch_examples(ds, batch_size, augment, seed, repeat, drop_remainder)
    return batches.with_options(options)


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
    fold: tuple[int, int] | None = None,
    shards: int = 8,
) -> TFRecordExport:
    """Read a dataset, split it as ``train.py`` would with the same options, and export it.

    ``fold=(K, N)`` exports fold K (1-based) of N-fold cross-validation by group instead of a
    train/val/test split. Returns the opened export.
    """
    slices = read_dataset(data, format=format, skip_bad=skip_bad)
    if fold is not None:
        split = kfold_records(slices, k=fold[1], fold=fold[0] - 1, by=split_by, seed=seed,
                              val_fraction=val_fraction)
    else:
        split = split_records(slices, by=split_by, val_fraction=val_fraction,
                              test_fraction=test_fraction, seed=seed)
    fold_text = None if fold is None else f"{fold[0]}/{fold[1]}"
    info = {"by": split_by or default_split_by(slices), "seed": seed, "fold": fold_text}
    return write_export(slices, split, output, image_size, shards=shards,
                        source=str(Path(data).resolve()), info=info)


def _parser() -> argparse.ArgumentParser:
    from unet_keras.config import TrainConfig

    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m unet_keras.data.tfrecord",
                                description="Sharded TFRecord exports for multi-worker training.")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("export", help="split a dataset and write it as sharded TFRecords",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("data", help="dataset folder (Figshare .mat, LGG kaggle_3m, images/+masks/)")
    q.add_argument("output", help="export directory (new or empty)")
    q.add_argument("--image-size", type=int, default=defaults.image_size,
                   help="slices are stored preprocessed at this size (train with the same)")
    q.add_argument("--shards", type=int, default=8,
                   help="shards per split; at least the number of workers that will read them")
    q.add_argument("--format", choices=FORMATS, default="auto")
    q.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning")
    q.add_argument("--split-by", choices=SPLIT_BY, default=defaults.split_by,
                   help="groups kept together (default: patient when ids exist, else block)")
    q.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    q.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    q.add_argument("--seed", type=int, default=defaults.seed)
    q.add_argument("--fold", help="K/N: export fold K of N-fold cross-validation")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """``python -m unet_keras.data.tfrecord export DATA OUT [options]``; bad input ends with
    one line on stderr and exit code 2."""
    from unet_keras.config import TrainConfig

    args = _parser().parse_args(argv)
    fold = TrainConfig(fold=args.fold).fold_index()
    export = export_dataset(args.data, args.output, args.image_size, format=args.format,
                            skip_bad=args.skip_bad, split_by=args.split_by,
                            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                            seed=args.seed, fold=fold, shards=args.shards)
    for name, count in export.counts.items():
        print(f"{name}: {count} slices in {len(export.shards[name])} shard(s)")
    print(f"wrote {export.root / MANIFEST} ({export.image_size}x{export.image_size}); train "
          f"with: python train.py --data {export.root} --image-size {export.image_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
