"""Overlap metrics: the paper's formulas, as Keras metrics and as numpy per-image scores.

Notation: ``A`` = ground truth mask, ``B`` = predicted mask (probabilities in training, binary
at evaluation), ``s`` = ``smooth``.

* Dice: ``(2|A∩B| + s) / (|A| + |B| + s)``
* IoU (Jaccard): ``(|A∩B| + s) / (|A| + |B| - |A∩B| + s)``
* Pixel accuracy: fraction of pixels where ``(B >= 0.5) == A``.

Keras side (training): :func:`dice_coef` / :func:`iou_coef` pool the whole batch (flattened),
as training logs report it. The stateful :class:`DiceCoefficient` / :class:`IoUCoefficient`
accumulate ``|A∩B|``, ``|A|``, ``|B|`` over every batch of an epoch and compute the ratio in
``result()``, which gives the dataset-global ("pooled") value and stays exact under
``tf.distribute`` (sums reduce across replicas; batch averages would not).

Numpy side (evaluation): :func:`dice_per_image`, :func:`iou_per_image`,
:func:`accuracy_per_image` score each image separately on binary masks with **no smoothing**
and the **empty-mask rule**: if truth and prediction are both empty the score is 1.0; if exactly
one of them is empty the score is 0.0. Evaluation uses these everywhere.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

PACKAGE = "unet_keras"


def _sums(y_true, y_pred):
    """Flatten the batch and return ``(|A∩B|, |A|, |B|)`` in float32."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    return ops.sum(y_true * y_pred), ops.sum(y_true), ops.sum(y_pred)


def _dice_from_sums(inter, sum_true, sum_pred, smooth):
    return (2.0 * inter + smooth) / (sum_true + sum_pred + smooth)


def _iou_from_sums(inter, sum_true, sum_pred, smooth):
    return (inter + smooth) / (sum_true + sum_pred - inter + smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
def dice_coef(y_true, y_pred, smooth: float = 1.0):
    """Dice over the flattened batch: ``(2|A∩B| + s) / (|A| + |B| + s)``; a scalar."""
    return _dice_from_sums(*_sums(y_true, y_pred), smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
def dice_coef_per_image(y_true, y_pred, smooth: float = 1.0):
    """Soft Dice of each image, ``(2|A∩B| + s) / (|A| + |B| + s)`` over its own pixels; shape
    ``(B,)``. Unlike :func:`dice_coef`, a small tumour counts as much as a large one."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    flat = (ops.shape(y_true)[0], -1)
    y_true, y_pred = ops.reshape(y_true, flat), ops.reshape(y_pred, flat)
    return _dice_from_sums(ops.sum(y_true * y_pred, axis=1), ops.sum(y_true, axis=1),
                           ops.sum(y_pred, axis=1), smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
def iou_coef(y_true, y_pred, smooth: float = 1.0):
    """IoU over the flattened batch: ``(|A∩B| + s) / (|A| + |B| - |A∩B| + s)``; a scalar."""
    return _iou_from_sums(*_sums(y_true, y_pred), smooth)


class _OverlapMetric(keras.metrics.Metric):
    """Accumulates ``|A∩B|``, ``|A|``, ``|B|`` (float32) across batches."""

    def __init__(self, name: str, smooth: float = 1.0, **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)
        self.intersection = self.add_variable(shape=(), initializer="zeros", name="intersection")
        self.sum_true = self.add_variable(shape=(), initializer="zeros", name="sum_true")
        self.sum_pred = self.add_variable(shape=(), initializer="zeros", name="sum_pred")

    def update_state(self, y_true, y_pred, sample_weight=None):
        inter, sum_true, sum_pred = _sums(y_true, y_pred)
        self.intersection.assign_add(inter)
        self.sum_true.assign_add(sum_true)
        self.sum_pred.assign_add(sum_pred)

    def reset_state(self):
        for v in (self.intersection, self.sum_true, self.sum_pred):
            v.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiceCoefficient(_OverlapMetric):
    """Stateful pooled Dice (logged as ``dice_coef``)."""

    description = "Dice of all pixels pooled (the paper's)"

    def __init__(self, name: str = "dice_coef", smooth: float = 1.0, **kwargs):
        super().__init__(name=name, smooth=smooth, **kwargs)

    def result(self):
        return _dice_from_sums(self.intersection, self.sum_true, self.sum_pred, self.smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
class IoUCoefficient(_OverlapMetric):
    """Stateful pooled IoU (logged as ``iou_coef``)."""

    description = "IoU of all pixels pooled"

    def __init__(self, name: str = "iou_coef", smooth: float = 1.0, **kwargs):
        super().__init__(name=name, smooth=smooth, **kwargs)

    def result(self):
        return _iou_from_sums(self.intersection, self.sum_true, self.sum_pred, self.smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DicePerImage(keras.metrics.Metric):
    """Mean per-image Dice of the masks at ``p >= threshold`` (logged as ``dice_per_image``):
    the number users judge a model by, the same rule as :func:`dice_per_image` (both masks
    empty = 1, exactly one empty = 0). The state is the sum of the images' Dice and their
    count, so the mean stays right under ``tf.distribute``."""

    description = "mean Dice of the images, each at threshold 0.5"

    def __init__(self, name: str = "dice_per_image", threshold: float = 0.5, **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = float(threshold)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        flat = (ops.shape(y_true)[0], -1)
        truth = ops.reshape(ops.cast(ops.cast(y_true, "float32") >= 0.5, "float32"), flat)
        pred = ops.reshape(ops.cast(ops.cast(y_pred, "float32") >= self.threshold, "float32"),
                           flat)
        inter = ops.sum(truth * pred, axis=1)
        total = ops.sum(truth, axis=1) + ops.sum(pred, axis=1)
        dice = ops.where(total > 0, 2.0 * inter / ops.maximum(total, 1.0), 1.0)
        self.total.assign_add(ops.sum(dice))
        self.count.assign_add(ops.cast(ops.shape(dice)[0], "float32"))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        for v in (self.total, self.count):
            v.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package=PACKAGE)
def pixel_accuracy_per_sample(y_true, y_pred, threshold: float = 0.5):
    """Fraction of pixels with ``(p >= threshold) == (y >= 0.5)``, one value per sample."""
    y_true = ops.cast(y_true, "float32") >= 0.5
    y_pred = ops.cast(y_pred, "float32") >= threshold
    hits = ops.cast(ops.equal(y_true, y_pred), "float32")
    return ops.mean(ops.reshape(hits, (ops.shape(hits)[0], -1)), axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelAccuracy(keras.metrics.MeanMetricWrapper):
    """Pixel accuracy at ``p >= threshold`` (logged as ``accuracy``), the same rule as the numpy
    evaluation functions (Keras' ``BinaryAccuracy`` uses ``p > threshold``)."""

    description = "share of pixels right"

    def __init__(self, name: str = "accuracy", threshold: float = 0.5, dtype=None):
        super().__init__(pixel_accuracy_per_sample, name=name, dtype=dtype,
                         threshold=threshold)
        self.threshold = float(threshold)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "threshold": self.threshold}


def pixel_accuracy() -> keras.metrics.Metric:
    """Pixel accuracy at threshold 0.5, logged as ``accuracy``."""
    return PixelAccuracy()


#: The training metrics by the name Keras logs them under, in logging order: the paper's
#: accuracy, IoU and Dice (pooled, stateful), then the mean per-image Dice. Each class takes
#: ``smooth`` when it has one. ``--monitor`` picks the best epoch on one of them.
METRICS: dict[str, type[keras.metrics.Metric]] = {
    "accuracy": PixelAccuracy,
    "iou_coef": IoUCoefficient,
    "dice_coef": DiceCoefficient,
    "dice_per_image": DicePerImage,
}


def segmentation_metrics(smooth: float = 1.0) -> list[keras.metrics.Metric]:
    """One of each of :data:`METRICS`, the overlap metrics with smoothing ``smooth``."""
    return [cls(smooth=smooth) if issubclass(cls, _OverlapMetric) else cls()
            for cls in METRICS.values()]


# --- numpy, per image (evaluation) -------------------------------------------------------------

def _binary_stack(masks: np.ndarray, threshold: float) -> np.ndarray:
    """``(N, H, W[, 1])`` or ``(H, W)`` -> boolean ``(N, H*W)``."""
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 4:
        if m.shape[-1] != 1:
            raise ValueError(f"masks must have one channel, got shape {m.shape}")
        m = m[..., 0]
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W[, 1]) or (H, W), got shape {m.shape}")
    return (m >= threshold).reshape(len(m), -1)


def _per_image_counts(y_true, y_pred, threshold):
    t = _binary_stack(y_true, 0.5)
    p = _binary_stack(y_pred, threshold)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction shapes differ: {t.shape} vs {p.shape}")
    inter = np.logical_and(t, p).sum(1).astype(np.float64)
    return inter, t.sum(1).astype(np.float64), p.sum(1).astype(np.float64), t, p


def dice_per_image(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Dice per image, shape ``(N,)``; binary masks, no smoothing, both empty = 1.0."""
    inter, st, sp, _, _ = _per_image_counts(y_true, y_pred, threshold)
    denom = st + sp
    return np.where(denom == 0, 1.0, 2 * inter / np.maximum(denom, 1))


def iou_per_image(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """IoU per image, shape ``(N,)``; binary masks, no smoothing, both empty = 1.0."""
    inter, st, sp, _, _ = _per_image_counts(y_true, y_pred, threshold)
    union = st + sp - inter
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def accuracy_per_image(y_true: np.ndarray, y_pred: np.ndarray,
                       threshold: float = 0.5) -> np.ndarray:
    """Pixel accuracy per image, shape ``(N,)``."""
    _, _, _, t, p = _per_image_counts(y_true, y_pred, threshold)
    return (t == p).mean(1)


def dice_global(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5,
                smooth: float = 0.0) -> float:
    """Dice pooled over all images (the dataset-global value, as Keras logs it).

    Binary masks; with ``smooth=0`` the empty-mask rule applies (all empty = 1.0).
    """
    inter, st, sp, _, _ = _per_image_counts(y_true, y_pred, threshold)
    denom = st.sum() + sp.sum() + smooth
    return 1.0 if denom == 0 else float((2 * inter.sum() + smooth) / denom)


def iou_global(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5,
               smooth: float = 0.0) -> float:
    """IoU pooled over all images (all empty = 1.0 with ``smooth=0``)."""
    inter, st, sp, _, _ = _per_image_counts(y_true, y_pred, threshold)
    i = inter.sum()
    denom = st.sum() + sp.sum() - i + smooth
    return 1.0 if denom == 0 else float((i + smooth) / denom)
