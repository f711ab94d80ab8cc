"""Sharded TFRecord exports of a split dataset (:mod:`.writer`) and the ``tf.data`` pipeline
that reads them back (:mod:`.reader`).

A dataset too large to re-read and re-preprocess on every host is exported once::

    python -m unet_keras.data export-tfrecord DATA OUT --image-size 256 --shards 16

(the command line is :mod:`unet_keras.cli.data`). ``OUT`` then holds, per split,
``<split>-<k>-of-<n>.tfrecord`` shards (slices dealt round-robin in split order, so shards
differ in size by at most one), ``split.json`` (the same manifest a run directory keeps, see
:func:`unet_keras.data.write_split_json`) and ``tfrecord.json`` (image size, counts, shard
names, source; written last, so an export that has it is complete).

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

from unet_keras.data.tfrecord.reader import (
    MANIFEST,
    MAX_OPEN_SHARDS,
    VERSION,
    TFRecordExport,
    is_export,
    make_tfrecord_dataset,
    open_export,
)
from unet_keras.data.tfrecord.writer import export_dataset, write_export

__all__ = [
    "MANIFEST",
    "MAX_OPEN_SHARDS",
    "VERSION",
    "TFRecordExport",
    "export_dataset",
    "is_export",
    "make_tfrecord_dataset",
    "open_export",
    "write_export",
]
