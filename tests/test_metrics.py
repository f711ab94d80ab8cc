"""Dice / IoU / pixel accuracy against numpy formulas and hand-computed values: the pooled Keras
functions, the stateful metrics across batches, and the numpy per-image scores (empty rule)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from unet_keras.metrics import (
    METRICS,
    DiceCoefficient,
    DicePerImage,
    IoUCoefficient,
    PixelAccuracy,
    accuracy_per_image,
    dice_coef,
    dice_per_image,
    iou_coef,
    iou_per_image,
    pixel_accuracy,
    segmentation_metrics,
)


def np_dice(t: np.ndarray, p: np.ndarray, s: float = 1.0) -> float:
    """Reference: ``(2|A∩B| + s) / (|A| + |B| + s)`` over everything, in float64."""
    t, p = np.asarray(t, np.float64).ravel(), np.asarray(p, np.float64).ravel()
    return (2 * np.sum(t * p) + s) / (t.sum() + p.sum() + s)


def np_iou(t: np.ndarray, p: np.ndarray, s: float = 1.0) -> float:
    """Reference: ``(|A∩B| + s) / (|A| + |B| - |A∩B| + s)`` over everything, in float64."""
    t, p = np.asarray(t, np.float64).ravel(), np.asarray(p, np.float64).ravel()
    inter = np.sum(t * p)
    return (inter + s) / (t.sum() + p.sum() - inter + s)


def _value(x) -> float:
    return float(ops.convert_to_numpy(x))


def _bf16_roundtrip(p: np.ndarray) -> tuple[object, np.ndarray]:
    """``p`` as a bfloat16 tensor, and the exact float64 values that tensor holds."""
    p16 = ops.cast(p, "bfloat16")
    return p16, ops.convert_to_numpy(ops.cast(p16, "float32")).astype(np.float64)


# --- hand-made 8x8 masks (1, 8, 8, 1): |A| = |B| = 32 for the halves --------------------------

_EMPTY = np.zeros((1, 8, 8, 1), np.float32)
_FULL = np.ones((1, 8, 8, 1), np.float32)
_LEFT = np.zeros((1, 8, 8, 1), np.float32)
_LEFT[:, :, :4] = 1
_RIGHT = 1 - _LEFT
_TOP = np.zeros((1, 8, 8, 1), np.float32)
_TOP[:, :4] = 1

# (truth, prediction, dice s=1, iou s=1, dice s=0, iou s=0, accuracy), all by hand
HAND_CASES = {
    "all-empty": (_EMPTY, _EMPTY, 1.0, 1.0, None, None, 1.0),
    "all-full": (_FULL, _FULL, 129 / 129, 65 / 65, 1.0, 1.0, 1.0),
    "disjoint": (_LEFT, _RIGHT, 1 / 65, 1 / 65, 0.0, 0.0, 0.0),
    "identical": (_TOP, _TOP, 65 / 65, 33 / 33, 1.0, 1.0, 1.0),
    # left half vs top half: |A∩B| = 16, |A∪B| = 48, 32 of 64 pixels agree
    "half-overlap": (_LEFT, _TOP, 33 / 65, 17 / 49, 0.5, 1 / 3, 0.5),
}


@pytest.mark.parametrize("case", list(HAND_CASES))
def test_pooled_dice_iou_on_hand_made_masks(case):
    t, p, dice1, iou1, dice0, iou0, _ = HAND_CASES[case]
    assert _value(dice_coef(t, p)) == pytest.approx(dice1, abs=1e-7)
    assert _value(iou_coef(t, p)) == pytest.approx(iou1, abs=1e-7)
    assert dice1 == pytest.approx(np_dice(t, p)) and iou1 == pytest.approx(np_iou(t, p))
    if dice0 is not None:  # smooth = 0 is configurable (undefined for all-empty)
        assert _value(dice_coef(t, p, smooth=0.0)) == pytest.approx(dice0, abs=1e-7)
        assert _value(iou_coef(t, p, smooth=0.0)) == pytest.approx(iou0, abs=1e-7)


@pytest.mark.parametrize("case", list(HAND_CASES))
def test_keras_accuracy_on_hand_made_masks(case):
    t, p, *_, acc = HAND_CASES[case]
    metric = pixel_accuracy()
    metric.update_state(t, p)
    assert _value(metric.result()) == pytest.approx(acc)
    assert float(accuracy_per_image(t, p)[0]) == pytest.approx(acc)


def _random_batch(rng, n=4, h=16, w=16, frac=0.3):
    t = (rng.uniform(size=(n, h, w, 1)) < frac).astype(np.float32)
    p = rng.uniform(size=(n, h, w, 1)).astype(np.float32)
    return t, p


@pytest.mark.parametrize("smooth", [1.0, 0.5, 1e-6])
def test_pooled_dice_iou_random_float32(smooth):
    rng = np.random.default_rng(0)
    t, p = _random_batch(rng)
    assert _value(dice_coef(t, p, smooth)) == pytest.approx(np_dice(t, p, smooth), rel=1e-5)
    assert _value(iou_coef(t, p, smooth)) == pytest.approx(np_iou(t, p, smooth), rel=1e-5)


def test_dice_coef_pools_the_batch_instead_of_averaging_images():
    # image 1 perfect (32 px), image 2 empty truth with 32 false-positive pixels:
    # pooled 2*32 / (32 + 64) = 2/3, whereas the mean of the two images would be 1/2
    t = np.concatenate([_TOP, _EMPTY])
    p = np.concatenate([_TOP, _TOP])
    assert _value(dice_coef(t, p, smooth=0.0)) == pytest.approx(2 / 3)
    assert _value(iou_coef(t, p, smooth=0.0)) == pytest.approx(1 / 2)  # 32 / 64


def test_pooled_dice_iou_bfloat16_predictions():
    rng = np.random.default_rng(1)
    t, p = _random_batch(rng, n=3, h=32, w=32)
    p16, p16_exact = _bf16_roundtrip(p)
    assert not np.allclose(p16_exact, p, rtol=1e-5, atol=0)  # bfloat16 really rounds
    d, i = dice_coef(t, p16), iou_coef(t, p16)
    assert keras.backend.standardize_dtype(d.dtype) == "float32"
    assert _value(d) == pytest.approx(np_dice(t, p16_exact), rel=1e-5)
    assert _value(i) == pytest.approx(np_iou(t, p16_exact), rel=1e-5)
    # bfloat16 binary truth too
    assert _value(dice_coef(ops.cast(t, "bfloat16"), p16)) == pytest.approx(
        np_dice(t, p16_exact), rel=1e-5)


def _batches(rng):
    """Three batches of different sizes and tumor burden (so pooled != mean of batches)."""
    sizes, fracs = (2, 3, 1), (0.02, 0.4, 0.7)
    return [_random_batch(rng, n=n, frac=f) for n, f in zip(sizes, fracs, strict=True)]


@pytest.mark.parametrize(("cls", "ref"), [(DiceCoefficient, np_dice), (IoUCoefficient, np_iou)])
def test_stateful_metric_accumulates_pooled_value(cls, ref):
    rng = np.random.default_rng(2)
    batches = _batches(rng)
    metric = cls(smooth=0.5)
    assert _value(metric.result()) == pytest.approx(1.0)  # nothing seen: s / s
    for t, p in batches:
        metric.update_state(t, p)
    t_all = np.concatenate([b[0] for b in batches])
    p_all = np.concatenate([b[1] for b in batches])
    pooled = ref(t_all, p_all, 0.5)
    assert _value(metric.result()) == pytest.approx(pooled, rel=1e-5)
    assert pooled != pytest.approx(np.mean([ref(t, p, 0.5) for t, p in batches]), rel=1e-3)
    metric.reset_state()
    metric.update_state(*batches[0])
    assert _value(metric.result()) == pytest.approx(ref(*batches[0], 0.5), rel=1e-5)


def test_segmentation_metrics_over_batches_match_numpy():
    rng = np.random.default_rng(3)
    batches = _batches(rng)
    metrics = segmentation_metrics(smooth=1.0)
    assert [m.name for m in metrics] == ["accuracy", "iou_coef", "dice_coef", "dice_per_image"]
    assert isinstance(metrics[0], PixelAccuracy)
    for t, p in batches:
        for m in metrics:
            m.update_state(t, p)
    t_all = np.concatenate([b[0] for b in batches])
    p_all = np.concatenate([b[1] for b in batches])
    acc = np.mean((p_all >= 0.5) == (t_all > 0.5))
    got = [_value(m.result()) for m in metrics]
    assert got[0] == pytest.approx(acc, rel=1e-6)
    assert got[1] == pytest.approx(np_iou(t_all, p_all), rel=1e-5)
    assert got[2] == pytest.approx(np_dice(t_all, p_all), rel=1e-5)
    assert got[3] == pytest.approx(float(np.mean(dice_per_image(t_all, p_all))), rel=1e-5)
    assert segmentation_metrics(smooth=0.25)[2].smooth == 0.25


def test_metrics_under_mixed_bfloat16_policy(mixed_bfloat16):
    rng = np.random.default_rng(4)
    batches = _batches(rng)
    metrics = segmentation_metrics()
    for m in metrics[1:]:  # sums accumulate in float32 even under the mixed policy
        assert all(v.dtype == "float32" for v in m.variables)
    exact = []
    for t, p in batches:
        p16, p_exact = _bf16_roundtrip(p)
        exact.append((t, p_exact))
        for m in metrics:
            m.update_state(t, p16)
    t_all = np.concatenate([e[0] for e in exact])
    p_all = np.concatenate([e[1] for e in exact])
    got = [_value(m.result()) for m in metrics]
    assert got[0] == pytest.approx(np.mean((p_all >= 0.5) == (t_all > 0.5)), rel=1e-6)
    assert got[1] == pytest.approx(np_iou(t_all, p_all), rel=1e-5)
    assert got[2] == pytest.approx(np_dice(t_all, p_all), rel=1e-5)
    assert got[3] == pytest.approx(float(np.mean(dice_per_image(t_all, p_all))), rel=1e-5)


def test_keras_and_numpy_accuracy_agree_at_the_threshold():
    t = np.ones((1, 4, 4, 1), np.float32)
    p = np.full((1, 4, 4, 1), 0.5, np.float32)  # exactly 0.5 (common in bfloat16)
    metric = pixel_accuracy()
    metric.update_state(t, p)
    assert _value(metric.result()) == pytest.approx(float(accuracy_per_image(t, p)[0]))


# --- numpy per-image scores --------------------------------------------------------------------

def _mask(h=4, w=4, pixels=()):
    m = np.zeros((h, w), np.uint8)
    for r, c in pixels:
        m[r, c] = 1
    return m


def test_per_image_hand_computed_values():
    truth = _mask(pixels=[(0, 0), (0, 1), (1, 0), (1, 1)])  # 2x2 block, |A| = 4
    pred = _mask(pixels=[(0, 1), (0, 2), (1, 1), (1, 2)])  # shifted right: |A∩B| = 2
    assert dice_per_image(truth, pred).tolist() == [pytest.approx(0.5)]  # 2*2 / (4+4)
    assert iou_per_image(truth, pred).tolist() == [pytest.approx(1 / 3)]  # 2 / 6
    assert accuracy_per_image(truth, pred).tolist() == [pytest.approx(12 / 16)]


def test_per_image_empty_mask_rule():
    empty, one = _mask(), _mask(pixels=[(2, 3)])
    truth = np.stack([empty, empty, one, one])
    pred = np.stack([empty, one, empty, one])
    # both empty = 1; exactly one empty = 0 (no smoothing); identical = 1
    np.testing.assert_array_equal(dice_per_image(truth, pred), [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(iou_per_image(truth, pred), [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(accuracy_per_image(truth, pred), [1.0, 15 / 16, 15 / 16, 1.0])


def test_per_image_thresholds_probabilities_and_accepts_255_masks():
    truth = (_mask(pixels=[(0, 0), (3, 3)]) * 255)[None, ..., None]  # (1, 4, 4, 1) 0/255
    probs = np.zeros((1, 4, 4, 1), np.float32)
    probs[0, 0, 0, 0] = 0.5  # >= 0.5 counts as tumor
    probs[0, 3, 3, 0] = 0.49  # below
    assert dice_per_image(truth, probs).tolist() == [pytest.approx(2 / 3)]  # 2*1 / (2+1)
    assert dice_per_image(truth, probs, threshold=0.4).tolist() == [pytest.approx(1.0)]
    assert dice_per_image(truth, probs, threshold=0.6).tolist() == [0.0]


def test_per_image_random_against_loop():
    rng = np.random.default_rng(5)
    t, p = _random_batch(rng, n=6, frac=0.2)
    t[0] = 0  # include an empty truth
    pb = (p >= 0.5).astype(np.float64)
    want_dice, want_iou = [], []
    for ti, pi in zip(t, pb, strict=True):
        inter, a, b = (ti * pi).sum(), ti.sum(), pi.sum()
        want_dice.append(1.0 if a + b == 0 else 2 * inter / (a + b))
        want_iou.append(1.0 if a + b - inter == 0 else inter / (a + b - inter))
    assert want_dice[0] == 0.0  # the prediction is not empty there
    np.testing.assert_allclose(dice_per_image(t, p), want_dice, rtol=1e-12)
    np.testing.assert_allclose(iou_per_image(t, p), want_iou, rtol=1e-12)
    np.testing.assert_allclose(accuracy_per_image(t, p),
                               ((pb == t).reshape(6, -1)).mean(1), rtol=1e-12)
    # (N, H, W) and (N, H, W, 1) agree
    np.testing.assert_array_equal(dice_per_image(t[..., 0], p[..., 0]), dice_per_image(t, p))


@pytest.mark.parametrize(
    ("truth", "pred", "message"),
    [
        (np.zeros((2, 4, 4, 2)), np.zeros((2, 4, 4, 2)), "one channel"),
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), "differ"),
        (np.zeros(16), np.zeros(16), "shape"),
    ],
)
def test_per_image_bad_shapes_raise(truth, pred, message):
    with pytest.raises(ValueError, match=message):
        dice_per_image(truth, pred)


# --- the stateful per-image Dice (the training log's view of the number users judge) ----------

def test_dice_per_image_metric_hand_computed_and_empty_rule():
    empty = np.zeros((8, 8, 1), np.float32)
    left, top = _LEFT[0], _TOP[0]
    truth = np.stack([left, empty, empty, left])
    probs = np.stack([top * 0.9, empty, left * 0.7, empty + 0.2])  # 0.2 < 0.5: predicts nothing
    metric = DicePerImage()
    assert _value(metric.result()) == 0.0  # nothing seen yet
    metric.update_state(truth, probs)
    # half overlap 2*16/64 = 0.5; both empty = 1; exactly one empty = 0 (twice)
    assert _value(metric.result()) == pytest.approx((0.5 + 1.0 + 0.0 + 0.0) / 4)
    # a second batch of one perfect image: the mean is over images, not over batches
    metric.update_state(left[None], left[None])
    assert _value(metric.result()) == pytest.approx(2.5 / 5)
    metric.reset_state()
    metric.update_state(left[None], top[None])
    assert _value(metric.result()) == pytest.approx(0.5)


def test_dice_per_image_metric_over_batches_matches_numpy_and_differs_from_pooled():
    rng = np.random.default_rng(6)
    batches = _batches(rng)
    metric = DicePerImage(threshold=0.4)
    for t, p in batches:
        metric.update_state(t, p)
    t_all = np.concatenate([b[0] for b in batches])
    p_all = np.concatenate([b[1] for b in batches])
    want = float(np.mean(dice_per_image(t_all, p_all, threshold=0.4)))
    assert _value(metric.result()) == pytest.approx(want, rel=1e-5)
    pooled = np_dice(t_all, p_all >= 0.4, s=0.0)
    assert want != pytest.approx(pooled, rel=1e-3)  # the images' tumour burdens differ
    restored = DicePerImage.from_config(metric.get_config())
    assert restored.threshold == 0.4 and restored.name == "dice_per_image"
    assert METRICS["dice_per_image"] is DicePerImage
