"""Backend-portable input pipelines: ``keras.utils.PyDataset`` batches built in numpy/OpenCV.

The TensorFlow backend trains from ``tf.data`` (:mod:`unet_keras.data.pipeline`); the JAX and
PyTorch backends have no ``tf.data``, so they train from these loaders, which give the same
batches in distribution (not bit for bit):

* :class:`SliceBatches` is :func:`~unet_keras.data.pipeline.make_dataset`: whole preprocessed
  slices, reshuffled every epoch, optionally with paired augmentation.
* :class:`PatchBatches` is :func:`~unet_keras.data.pipeline.make_patch_dataset`: random patches
  with foreground oversampling (:func:`sample_patch`), then paired augmentation.

Every example's random numbers come from ``numpy.random.default_rng((seed, epoch, index))``,
so a batch depends only on the seed, the epoch and its position: the same whatever the number
of workers or the order in which they run. :func:`augment_pair` is the numpy twin of the
``tf.data`` augmentation: horizontal/vertical flips and a rotation by up to ``max_rotation``
degrees applied to image and mask together (bilinear, zero fill; the mask re-binarised at 0.5),
contrast/brightness jitter, and optional gamma and Gaussian noise on the image only.
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np

from unet_keras.data.hard_examples import check_weights


def augment_pair(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    max_rotation: float = 15.0,
    intensity: float = 0.1,
    gamma: float = 0.0,
    noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One random paired flip/rotation, and intensity jitter of the image.

    Args:
        image: float32 ``(H, W, C)`` in [0, 1].
        mask: float32 ``(H, W, 1)`` of 0/1.
        rng: the example's random stream.
        max_rotation, intensity, gamma, noise: as in
            :func:`unet_keras.data.pipeline.augment_pair` (0 disables each).

    Returns:
        float32 ``(image, mask)`` of the input shapes; the mask still 0/1.
    """
    u = rng.random(5)
    channels = image.shape[-1]
    both = np.concatenate([image, mask], axis=-1)
    if u[0] < 0.5:
        both = both[:, ::-1]
    if u[1] < 0.5:
        both = both[::-1]
    if max_rotation:
        angle = (2.0 * u[2] - 1.0) * max_rotation
        both = _rotate(np.ascontiguousarray(both), angle)
    image = np.ascontiguousarray(both[..., :channels], dtype=np.float32)
    mask = (both[..., channels:] >= 0.5).astype(np.float32)
    if intensity:
        contrast = 1.0 + (2.0 * u[3] - 1.0) * intensity
        shift = (u[4] - 0.5) * intensity
        image = np.clip(image * contrast + shift, 0.0, 1.0)
    v = rng.random(2)
    if gamma:
        image = np.power(image, math.exp((2.0 * v[0] - 1.0) * gamma))
    if noise:
        sigma = v[1] * noise
        image = np.clip(image + sigma * rng.standard_normal(image.shape), 0.0, 1.0)
    return image.astype(np.float32, copy=False), mask


def _rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate ``(H, W, C)`` about its centre by ``degrees`` (bilinear, zeros outside)."""
    h, w = x.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    channels = [cv2.warpAffine(x[..., c], matrix, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
                for c in range(x.shape[-1])]
    return np.stack(channels, axis=-1)


def sample_patch(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    patch_size: int,
    foreground_fraction: float = 0.33,
    scale: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A random square patch of a slice, containing a tumour pixel with probability
    ``foreground_fraction`` (when the mask has one); the numpy twin of
    :func:`unet_keras.data.pipeline.sample_patch` (same rule, same ``scale`` zoom).

    Args:
        image: float32 ``(H, W, C)``; ``H, W >= patch_size``.
        mask: float32 ``(H, W, 1)`` of 0/1.

    Returns:
        ``(image, mask)`` of shapes ``(P, P, C)`` and ``(P, P, 1)``, ``P = patch_size``.
    """
    u = rng.random(5)
    h, w = image.shape[:2]
    side = patch_size
    if scale:
        side = int(round(patch_size * math.exp((2.0 * u[4] - 1.0) * math.log1p(scale))))
    side = int(min(max(side, 1), h, w))
    free = np.array([h - side + 1, w - side + 1])
    corner = (u[2:4] * free).astype(int)
    if u[0] < foreground_fraction:
        coords = np.argwhere(mask[..., 0] >= 0.5)
        if len(coords):
            centre = coords[min(int(u[1] * len(coords)), len(coords) - 1)]
            offset = np.minimum((u[2:4] * side).astype(int), side - 1)
            corner = centre - offset
    corner = np.clip(corner, 0, free - 1)
    both = np.concatenate([image, mask], axis=-1)[corner[0]:corner[0] + side,
                                                  corner[1]:corner[1] + side]
    if side != patch_size:
        both = cv2.resize(both, (patch_size, patch_size), interpolation=cv2.INTER_LINEAR)
        if both.ndim == 2:
            both = both[..., None]
    channels = image.shape[-1]
    return (np.ascontiguousarray(both[..., :channels], dtype=np.float32),
            (both[..., channels:] >= 0.5).astype(np.float32))


def _check_arrays(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks, dtype=np.float32)
    if images.ndim != 4 or masks.shape != images.shape[:3] + (1,):
        raise ValueError(f"expected images (N, H, W, C) and masks (N, H, W, 1); "
                         f"got {images.shape} and {masks.shape}")
    return images, masks


#: The stream key of an epoch's order of the slices (examples use ``(index, k)``).
_ORDER = 2**32 - 1
#: The stream key, after ``(index, k)``, of an example's hard-example draw.
_HARD = 1


class _SeededBatches(keras.utils.PyDataset):
    """Batches whose randomness is a function of ``(seed, epoch, index)`` only."""

    def __init__(self, seed: int, workers: int = 1, **kwargs) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, **kwargs)
        self.seed = int(seed)
        self.epoch = 0

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, *key))


class SliceBatches(_SeededBatches):
    """Batches of whole preprocessed slices: :func:`unet_keras.data.pipeline.make_dataset` for
    every backend.

    Args:
        images: float32 ``(N, H, W, C)`` in [0, 1].
        masks: float32 ``(N, H, W, 1)`` of 0/1.
        batch_size: examples per batch.
        shuffle: a new order every epoch (seeded).
        augment: paired augmentation (:func:`augment_pair`) with ``gamma`` and ``noise``.
        drop_remainder: drop a last, smaller batch.
        workers: threads that build batches (OpenCV and numpy release the GIL).

    Yields float32 ``((B, H, W, C), (B, H, W, 1))`` batches.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, batch_size: int,
                 shuffle: bool = True, augment: bool = False, seed: int = 0,
                 drop_remainder: bool = False, gamma: float = 0.0, noise: float = 0.0,
                 workers: int = 1) -> None:
        super().__init__(seed, workers)
        self.images, self.masks = _check_arrays(images, masks)
        self.batch_size = int(batch_size)
        self.shuffle, self.augment = shuffle, augment
        self.drop_remainder = drop_remainder
        self.gamma, self.noise = gamma, noise

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def order(self) -> np.ndarray:
        """This epoch's order of the slices."""
        n = len(self.images)
        return self._rng(_ORDER).permutation(n) if self.shuffle else np.arange(n)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        picks = self.order()[index * self.batch_size:(index + 1) * self.batch_size]
        if not self.augment:
            return self.images[picks], self.masks[picks]
        pairs = [augment_pair(self.images[i], self.masks[i], self._rng(index, k),
                              gamma=self.gamma, noise=self.noise)
                 for k, i in enumerate(picks)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


class PatchBatches(_SeededBatches):
    """Batches of random patches with foreground oversampling:
    :func:`unet_keras.data.pipeline.make_patch_dataset` for every backend.

    An epoch is ``steps`` batches; slices are visited in an order reshuffled every epoch (and
    wrapping around), each visit drawing a new patch (:func:`sample_patch`) and, with
    ``augment``, a new paired augmentation. Batches are always full. With ``hard_weights``,
    each example's slice is, with probability ``hard_fraction``, drawn by those weights
    instead of the one in its slot of the order (:mod:`unet_keras.data.hard_examples`).

    Yields float32 ``((B, P, P, C), (B, P, P, 1))`` batches, ``P = patch_size``.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, batch_size: int, patch_size: int,
                 steps: int, foreground_fraction: float = 0.33, augment: bool = True,
                 scale: float = 0.0, gamma: float = 0.0, noise: float = 0.0, seed: int = 0,
                 workers: int = 1, hard_weights: np.ndarray | None = None,
                 hard_fraction: float = 0.0) -> None:
        super().__init__(seed, workers)
        self.images, self.masks = _check_arrays(images, masks)
        self.hard_weights, self.hard_fraction = None, float(hard_fraction)
        if hard_weights is not None and hard_fraction > 0:
            self.hard_weights = check_weights(hard_weights, len(self.images))
        if min(self.images.shape[1:3]) < patch_size:
            raise ValueError(f"patch size {patch_size} is larger than the slices "
                             f"({self.images.shape[1]}x{self.images.shape[2]})")
        self.batch_size, self.patch_size, self.steps = int(batch_size), int(patch_size), steps
        self.foreground_fraction, self.augment = foreground_fraction, augment
        self.scale, self.gamma, self.noise = scale, gamma, noise

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.images)
        order = self._rng(_ORDER).permutation(n)
        start = index * self.batch_size
        images, masks = [], []
        for k in range(self.batch_size):
            i = order[(start + k) % n]
            if self.hard_weights is not None:  # its own stream: the patch draws stay the same
                pick = self._rng(index, k, _HARD)
                if pick.random() < self.hard_fraction:
                    i = pick.choice(n, p=self.hard_weights)
            rng = self._rng(index, k)
            image, mask = sample_patch(self.images[i], self.masks[i], rng, self.patch_size,
                                       self.foreground_fraction, self.scale)
            if self.augment:
                image, mask = augment_pair(image, mask, rng, gamma=self.gamma, noise=self.noise)
            images.append(image)
            masks.append(mask)
        return np.stack(images), np.stack(masks)
