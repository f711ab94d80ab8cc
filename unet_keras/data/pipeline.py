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

from unet_keras.data.hard_examples import check_weights
from unet_keras.data.preprocess import preprocess_image, preprocess_mask
from unet_keras.data.readers import read_slice

AUTOTUNE = tf.data.AUTOTUNE


def augment_pair(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    max_rotation: float = 15.0,
    intensity: float = 0.1,
    gamma: float = 0.0,
    noise: float = 0.0,
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
        gamma: image ``** exp(U(-gamma, gamma))`` (0 disables it).
        noise: Gaussian noise of standard deviation ``U(0, noise)`` added to the image, then
            clipped to [0, 1] (0 disables it).

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
    if gamma or noise:  # a second stream, so the draws above do not depend on these options
        extra_seed = tf.cast(seed, tf.int64) + tf.constant([0, 1], tf.int64)
        v = tf.random.stateless_uniform([2], seed=extra_seed, dtype=tf.float32)
        if gamma:
            image = tf.pow(image, tf.exp((2.0 * v[0] - 1.0) * gamma))
        if noise:
            sigma = v[1] * noise
            image = image + sigma * tf.random.stateless_normal(
                tf.shape(image), seed=extra_seed + 1, dtype=tf.float32)
            image = tf.clip_by_value(image, 0.0, 1.0)
    return image, mask


def sample_patch(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    patch_size: int,
    foreground_fraction: float = 0.33,
    scale: float = 0.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random square patch of a slice, centred near tumour with some probability.

    With probability ``foreground_fraction`` (and when the mask has a tumour pixel) the patch
    contains a tumour pixel drawn uniformly from the mask, at a uniformly random position in
    the patch (nnU-Net's foreground oversampling); otherwise the patch is uniformly placed.
    With ``scale`` > 0 the cropped side is ``patch_size * exp(U(-log(1 + scale),
    log(1 + scale)))`` (at most the slice), resized to ``patch_size`` (bilinear; the mask is
    re-binarised at 0.5): zoom in and out by up to ``1 + scale``.

    Args:
        image: float32 ``(H, W, C)``; ``H, W >= patch_size``.
        mask: float32 ``(H, W, 1)`` of 0/1.
        seed: int64 ``(2,)`` stateless seed.

    Returns:
        ``(image, mask)`` of shapes ``(patch_size, patch_size, C)`` and ``(patch_size,
        patch_size, 1)``.
    """
    u = tf.random.stateless_uniform([5], seed=seed, dtype=tf.float32)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.constant(patch_size, tf.int32)
    if scale:
        factor = tf.exp((2.0 * u[4] - 1.0) * math.log1p(scale))
        side = tf.cast(tf.round(patch_size * factor), tf.int32)
    side = tf.clip_by_value(side, 1, tf.minimum(h, w))
    coords = tf.cast(tf.where(mask[..., 0] >= 0.5), tf.int32)
    n_fg = tf.shape(coords)[0]
    pick = tf.minimum(tf.cast(u[1] * tf.cast(n_fg, tf.float32), tf.int32),
                      tf.maximum(n_fg - 1, 0))
    centre = tf.concat([coords, tf.zeros([1, 2], tf.int32)], axis=0)[pick]
    offset = tf.cast(u[2:4] * tf.cast(side, tf.float32), tf.int32)
    fg_corner = centre - tf.minimum(offset, side - 1)
    free = tf.stack([h - side + 1, w - side + 1])
    uniform_corner = tf.cast(u[2:4] * tf.cast(free, tf.float32), tf.int32)
    use_fg = tf.logical_and(u[0] < foreground_fraction, n_fg > 0)
    corner = tf.where(use_fg, fg_corner, uniform_corner)
    corner = tf.clip_by_value(corner, 0, free - 1)
    both = tf.concat([image, mask], axis=-1)[corner[0]:corner[0] + side,
                                             corner[1]:corner[1] + side]
    if scale:
        both = tf.image.resize(both, [patch_size, patch_size], method="bilinear")
    channels = tf.shape(image)[-1]
    image_out = tf.ensure_shape(both[..., :channels], [patch_size, patch_size, image.shape[-1]])
    mask_out = tf.cast(both[..., channels:] >= 0.5, tf.float32)
    return image_out, tf.ensure_shape(mask_out, [patch_size, patch_size, 1])


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


def make_patch_dataset(
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    patch_size: int,
    foreground_fraction: float = 0.33,
    augment: bool = True,
    scale: float = 0.0,
    gamma: float = 0.0,
    noise: float = 0.0,
    seed: int = 0,
    hard_weights: np.ndarray | None = None,
    hard_fraction: float = 0.0,
) -> tf.data.Dataset:
    """An endless stream of batches of random patches (:func:`sample_patch`) of the slices.

    Slices are visited in a reshuffled order each pass; every visit draws a new patch and, with
    ``augment``, a new paired augmentation (:func:`augment_pair`, with ``gamma`` and ``noise``)
    of it. Batches are always full. Pass ``steps_per_epoch`` to ``fit``.

    With ``hard_weights`` (one per slice, e.g. from
    :func:`unet_keras.data.hard_examples.hard_example_weights`), each patch's slice is, with
    probability ``hard_fraction``, drawn by those weights instead of the one in its slot of
    the shuffled order.

    Returns:
        float32 ``((B, P, P, C), (B, P, P, 1))`` batches, ``P = patch_size``.
    """
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks, dtype=np.float32)
    if images.ndim != 4 or masks.shape != images.shape[:3] + (1,):
        raise ValueError(f"expected images (N, H, W, C) and masks (N, H, W, 1); "
                         f"got {images.shape} and {masks.shape}")
    if min(images.shape[1:3]) < patch_size:
        raise ValueError(f"patch size {patch_size} is larger than the slices "
                         f"({images.shape[1]}x{images.shape[2]})")
    x, y = tf.constant(images), tf.constant(masks)
    ds = tf.data.Dataset.range(len(images)).shuffle(max(len(images), 1), seed=seed,
                                                    reshuffle_each_iteration=True).repeat()
    if hard_weights is not None and hard_fraction > 0:
        ds = _mix_hard_examples(ds, hard_weights, hard_fraction, len(images), seed)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)

    def example(i, s):
        image, mask = sample_patch(tf.gather(x, i), tf.gather(y, i), s[:2], patch_size,
                                   foreground_fraction, scale)
        if augment:
            image, mask = augment_pair(image, mask, s[2:], gamma=gamma, noise=noise)
        return image, mask

    ds = tf.data.Dataset.zip((ds, seeds)).map(example, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def _mix_hard_examples(ds: tf.data.Dataset, weights: np.ndarray, fraction: float, n: int,
                       seed: int) -> tf.data.Dataset:
    """``ds`` (slice indices) with each element replaced, with probability ``fraction``, by an
    index drawn with probabilities ``weights`` (as :class:`unet_keras.data.loader.PatchBatches`
    does)."""
    logits = tf.constant(np.log(np.maximum(check_weights(weights, n), 1e-30))[None],
                         tf.float32)
    draws = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(3)

    def pick(i: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        hard = tf.random.stateless_categorical(logits, 1, seed=s[:2], dtype=tf.int64)[0, 0]
        coin = tf.random.stateless_uniform([], seed=tf.stack([s[2], s[0]]))
        return tf.where(coin < fraction, hard, i)

    return tf.data.Dataset.zip((ds, draws)).map(pick)


def make_file_dataset(
    files: Sequence[str],
    image_size: int,
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
        image_size, channels: model input size and channels (see :func:`preprocess_image`).
        format: the files' format (``"auto"``: by suffix/location, see ``read_slice``).
        cache: ``""`` caches the preprocessed examples in memory, a path prefix caches them in
            files on disk (reused by later runs), ``None`` re-reads every epoch.
        shuffle_buffer: examples held for shuffling (after the cache).
        Other arguments as in :func:`make_dataset`.

    Returns:
        A dataset of float32 ``((B, image_size, image_size, channels), (B, image_size,
        image_size, 1))`` batches. A bad file stops iteration with a TensorFlow error whose
        message holds the ``DataError``.
    """
    def load(path: bytes) -> tuple[np.ndarray, np.ndarray]:
        s = read_slice(path.decode(), format)
        return (preprocess_image(s.image, image_size, channels),
                preprocess_mask(s.mask, image_size))

    def load_tf(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = tf.numpy_function(load, [path], (tf.float32, tf.float32), stateful=False)
        image.set_shape((image_size, image_size, channels))
        mask.set_shape((image_size, image_size, 1))
        return image, mask

    ds = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    ds = ds.map(load_tf, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache is not None:
        ds = ds.cache(cache)
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, max(len(files), 1)), seed=seed,
                        reshuffle_each_iteration=True)
    return batch_examples(ds, batch_size, augment, seed, repeat, drop_remainder)
