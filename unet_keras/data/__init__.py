"""Data: readers (Figshare ``.mat``, Kaggle LGG TIFF, image/mask folders), preprocessing,
grouped splits and ``tf.data`` pipelines.

``SAMPLE_DIR`` is the bundled real sample (``data/sample`` of the repository: Figshare slices
in the ``images/`` + ``masks/`` layout), used when no ``--data`` is given.

The ``tf.data`` pipelines (``augment_pair``, ``make_dataset``, ``make_file_dataset``) are
imported on first use, so the rest of the package imports without TensorFlow (the JAX and
PyTorch backends use :mod:`unet_keras.data.loader`).
"""

from unet_keras.data.preprocess import (
    load_arrays,
    preprocess_image,
    preprocess_mask,
    scale_intensity,
    to_grayscale,
)
from unet_keras.data.readers import (
    DATA_FORMATS,
    FORMATS,
    SAMPLE_DIR,
    detect_format,
    list_files,
    read_dataset,
    read_image_bytes,
    read_image_file,
    read_mask_bytes,
    read_slice,
)
from unet_keras.data.slices import MAX_SIDE, MIN_SIDE, DataError, Slice, binarize_mask, check_image
from unet_keras.data.splits import (
    SPLIT_BY,
    default_split_by,
    kfold_records,
    load_split_data,
    parse_fold,
    read_split_json,
    split_dataset,
    split_records,
    write_split_json,
)

__all__ = [
    "DATA_FORMATS",
    "FORMATS",
    "MAX_SIDE",
    "MIN_SIDE",
    "SAMPLE_DIR",
    "SPLIT_BY",
    "DataError",
    "Slice",
    "augment_pair",
    "binarize_mask",
    "check_image",
    "default_split_by",
    "detect_format",
    "kfold_records",
    "list_files",
    "load_arrays",
    "load_split_data",
    "make_dataset",
    "make_file_dataset",
    "parse_fold",
    "preprocess_image",
    "preprocess_mask",
    "read_dataset",
    "read_image_bytes",
    "read_image_file",
    "read_mask_bytes",
    "read_slice",
    "read_split_json",
    "scale_intensity",
    "split_dataset",
    "split_records",
    "to_grayscale",
    "write_split_json",
]


_PIPELINE = ("augment_pair", "make_dataset", "make_file_dataset")


def __getattr__(name: str):
    """The ``tf.data`` pipeline functions, imported (with TensorFlow) on first use."""
    if name in _PIPELINE:
        from unet_keras.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
