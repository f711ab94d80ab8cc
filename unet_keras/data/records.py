"""Former name of :mod:`unet_keras.data.slices` (the :class:`Slice` record every reader
yields), kept only while ``data/tfrecord/reader.py`` and ``writer.py`` still import it; new
code imports :mod:`unet_keras.data.slices` ("records" elsewhere means TFRecords)."""

from unet_keras.data.slices import (  # noqa: F401
    MAX_SIDE,
    MIN_SIDE,
    DataError,
    Slice,
    binarize_mask,
    check_image,
    check_shape,
    check_side,
    make_slice,
    natural_key,
)
