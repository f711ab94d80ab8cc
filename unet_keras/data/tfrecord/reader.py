"""Reading a TFRecord export: its ``tfrecord.json`` manifest (:func:`open_export`) and the
``tf.data`` pipeline over a split's shards (:func:`make_tfrecord_dataset`). The format is
described in :mod:`unet_keras.data.tfrecord`; :mod:`.writer` writes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from unet_keras.data.pipeline import AUTOTUNE, batch_examples
from unet_keras.data.records import DataError

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
