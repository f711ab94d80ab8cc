"""``tf.data`` input pipelines: paired augmentation in the graph, shuffle, batch, prefetch.

* :func:`make_dataset` streams preprocessed in-memory arrays (from
  :func:`unet_keras.data.preprocess.load_arrays`); only indices are shuffled, so no second
  copy of the data is held in a shuffle buffer.
* :func:`make_file_dataset` decodes the slice files (``.mat``, image/mask pairs) in parallel,
  preprocesses them and caches the result in memory (``cache=""``) or in an on-disk cache file
  (``cache="/path/prefix"``), so epoch 2+ reads no file.

Augmentation (:func:`augment_pair`) draws one set of random numbers per example from a seeded
stream that differs every epoch, and applies the same geometric transform to image and mask:
horizontal/vertical flips and a rotation by up to ``max_rotation`` degrees (bilinear, zero
fill); the rotated mask is re-binarised at 0.5. Mild contrast/brightness jitter changes the
image only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from unet_keras.data.preprocess import preprocess_image, preprocess_mask
from unet_keras.data.readers import read_slice

AUTOTUNE = tf.data.AUTOTUNE


def augment_pair(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    max_rotation: float = 15.0,
    intensity: float = 0.1,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply one random flip/rotation to both tensors and intensity jitter to the image.

    Args:
        image: float32 ``(H, W, C)`` in [0, 1].
        mask: float32 ``(H, W, 1)`` of 0/1.
        seed: int64 ``(2,)`` stateless seed; equal seeds give equal results.
        max_rotation: rotation angle drawn uniformly from ``[-max_rotation, max_rotation]``
            degrees (0 disables rotation).
        intensity: contrast factor ``1 + U(-intensity, intensity)`` and brightness shift
            ``U(-intensity/2, intensity/2)``, clipped to [0, 1] (0 disables jitter).

    Returns:
        ``(image, mask)`` of the input shapes; the mask still 0/1.
    """
    u = tf.random.stateless_uniform([5], seed=seed, dtype=tf.float32)
    channels = tf.shape(image)[-1]
    both = tf.concat([image, mask], axis=-1)
    both = tf.where(u[0] < 0.5, tf.reverse(both, axis=[1]), both)
    both = tf.where(u[1] < 0.5, tf.reverse(both, axis=[0]), both)
    if max_rotation:
        angle = (2.0 * u[2] - 1.0) * (max_rotation * math.pi / 180.0)
        both = _rotate(both, angle)
    image, mask = both[..., :channels], both[..., channels:]
    mask = tf.cast(mask >= 0.5, tf.float32)
    if intensity:
        contrast = 1.0 + (2.0 * u[3] - 1.0) * intensity
        shift = (u[4] - 0.5) * intensity
        image = tf.clip_by_value(image * contrast + shift, 0.0, 1.0)
    return image, mask


def _rotate(x: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
    """Rotate ``(H, W, C)`` about its centre (bilinear, zeros outside)."""
    h = tf.cast(tf.shape(x)[0], tf.float32)
    w = tf.cast(tf.shape(x)[1], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output pixel (x, y) samples the input at the inverse rotation about the centre.
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    transform = tf.stack([cos, -sin, x_off, sin, cos, y_off, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None], transforms=transform, output_shape=tf.shape(x)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    return out[0]


def batch_examples(
    ds: tf.data.Dataset, batch_size: int, augment: bool, seed: int, repeat: bool,
    drop_remainder: bool,
) -> tf.data.Dataset:
    """The tail every input pipeline shares (arrays, files, TFRecords):
    ``(image, mask)`` examples -> [repeat] -> [paired augment] -> batch -> prefetch."""
    if repeat:
        ds = ds.repeat()
    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: augment_pair(pair[0], pair[1], s), num_parallel_calls=AUTOTUNE
        )
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def make_dataset(
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(image, mask)`` from preprocessed arrays.

    Args:
        images: float32 ``(N, H, W, C)`` in [0, 1].
        masks: float32 ``(N, H, W, 1)`` of 0/1.
        batch_size: examples per batch.
        shuffle: reshuffle the order every epoch (seeded).
        augment: paired random flips/rotation + image intensity jitter (:func:`augment_pair`).
        seed: seed of the shuffle and the augmentation stream.
        repeat: repeat forever (then pass ``steps_per_epoch`` to ``fit``).
        drop_remainder: drop a last, smaller batch.

    Returns:
        A dataset of float32 ``((B, H, W, C), (B, H, W, 1))`` batches.
    """
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks, dtype=np.float32)
    if images.ndim != 4 or masks.shape != images.shape[:3] + (1,):
        raise ValueError(f"expected images (N, H, W, C) and masks (N, H, W, 1); "
                         f"got {images.shape} and {masks.shape}")
    x, y = tf.constant(images), tf.constant(masks)
    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(max(len(images), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
    return batch_examples(ds, batch_size, augment, seed, repeat, drop_remainder)


def make_file_dataset(
    files: Sequence[str],
    size: int,
    channels: int,
    batch_size: int,
    format: str = "auto",
    cache: str | None = "",
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """Batches of ``(image, mask)`` decoded from slice files in parallel.

    Args:
        files: one file per slice, as from :func:`unet_keras.data.list_files` (``.mat`` files,
            or image files whose masks are found by the format's rule).
        size, channels: model input size and channels (see :func:`preprocess_image`).
        format: the files' format (``"auto"``: by suffix/location, see ``read_slice``).
        cache: ``""`` caches the preprocessed examples in memory, a path prefix caches them in
            files on disk (reused by later runs), ``None`` re-reads every epoch.
        shuffle_buffer: examples held for shuffling (after the cache).
        Other arguments as in :func:`make_dataset`.

    Returns:
        A dataset of float32 ``((B, size, size, channels), (B, size, size, 1))`` batches. A bad
        file stops iteration with a TensorFlow error whose message holds the ``DataError``.
    """
    def load(path: bytes) -> tuple[np.ndarray, np.ndarray]:
        s = read_slice(path.decode(), format)
        return preprocess_image(s.image, size, channels), preprocess_mask(s.mask, size)

    def load_tf(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = tf.numpy_function(load, [path], (tf.float32, tf.float32), stateful=False)
        image.set_shape((size, size, channels))
        mask.set_shape((size, size, 1))
        return image, mask

    ds = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    ds = ds.map(load_tf, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache is not None:
        ds = ds.cache(cache)
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, max(len(files), 1)), seed=seed,
                        reshuffle_each_iteration=True)
    return batch_examples(ds, batch_size, augment, seed, repeat, drop_remainder)
