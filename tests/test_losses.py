"""The paper's negative Dice loss and BCE + Dice against numpy, and a 20-step fit that shows the
U-Net and the loss can learn (bright disks on noise)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from unet_keras.config import ArchConfig
from unet_keras.losses import (
    BCEDiceLoss,
    BCEImageDiceLoss,
    BCETumourDiceLoss,
    DiceLoss,
    get_loss,
)
from unet_keras.metrics import dice_coef, dice_coef_per_image
from unet_keras.model import build_unet


def np_dice(t: np.ndarray, p: np.ndarray, s: float = 1.0) -> float:
    t, p = np.asarray(t, np.float64).ravel(), np.asarray(p, np.float64).ravel()
    return (2 * np.sum(t * p) + s) / (t.sum() + p.sum() + s)


def np_bce(t: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy over all pixels (p away from 0 and 1, so no clipping)."""
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


def _value(x) -> float:
    return float(ops.convert_to_numpy(x))


def _random(rng, n=3, h=16, w=16):
    t = (rng.uniform(size=(n, h, w, 1)) < 0.3).astype(np.float32)
    p = rng.uniform(0.02, 0.98, size=(n, h, w, 1)).astype(np.float32)
    return t, p


@pytest.mark.parametrize("smooth", [1.0, 0.1])
def test_dice_loss_is_negative_pooled_dice(smooth):
    t, p = _random(np.random.default_rng(0))
    loss = DiceLoss(smooth=smooth)(t, p)
    assert tuple(loss.shape) == ()
    assert _value(loss) == pytest.approx(-np_dice(t, p, smooth), rel=1e-5)
    assert _value(loss) == pytest.approx(-_value(dice_coef(t, p, smooth)), rel=1e-6)


def test_dice_loss_perfect_and_worst_predictions():
    rng = np.random.default_rng(1)
    t = (rng.uniform(size=(2, 16, 16, 1)) < 0.4).astype(np.float32)
    assert _value(DiceLoss()(t, t)) == pytest.approx(-1.0, abs=1e-7)  # the paper's log: -1.0
    empty = np.zeros_like(t)
    assert _value(DiceLoss()(empty, empty)) == pytest.approx(-1.0, abs=1e-7)
    # disjoint prediction: only the smoothing term is left, -s / (|A| + |B| + s)
    worst = _value(DiceLoss()(t, 1 - t))
    assert worst == pytest.approx(-1.0 / (t.size + 1.0), rel=1e-5)
    assert -1.0 <= worst < 0.0


def test_dice_loss_with_bfloat16_predictions_is_float32():
    t, p = _random(np.random.default_rng(2))
    p16 = ops.cast(p, "bfloat16")
    p_exact = ops.convert_to_numpy(ops.cast(p16, "float32"))
    loss = DiceLoss()(t, p16)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert _value(loss) == pytest.approx(-np_dice(t, p_exact), rel=1e-5)


@pytest.mark.parametrize("smooth", [1.0, 0.5])
def test_bce_dice_loss_against_numpy(smooth):
    t, p = _random(np.random.default_rng(3))
    want = np_bce(t, p) - np_dice(t, p, smooth)
    assert _value(BCEDiceLoss(smooth=smooth)(t, p)) == pytest.approx(want, rel=1e-5)
    # a perfect-ish prediction: BCE ~ 0, Dice ~ 1
    near = np.clip(t, 1e-3, 1 - 1e-3)
    assert _value(BCEDiceLoss()(t, near)) == pytest.approx(np_bce(t, near) - np_dice(t, near),
                                                           rel=1e-4)
    assert _value(BCEDiceLoss()(t, near)) < -0.99


@pytest.mark.parametrize("smooth", [1.0, 0.5])
def test_bce_per_image_dice_loss_against_numpy(smooth):
    t, p = _random(np.random.default_rng(5))
    per_image = [np_dice(ti, pi, smooth) for ti, pi in zip(t, p, strict=True)]
    got = dice_coef_per_image(t, p, smooth)
    np.testing.assert_allclose(ops.convert_to_numpy(got), per_image, rtol=1e-5)
    want = np_bce(t, p) - np.mean(per_image)
    assert _value(BCEImageDiceLoss(smooth=smooth)(t, p)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("smooth", [1.0, 0.5])
def test_bce_tumour_images_dice_loss_against_numpy(smooth):
    """The Dice term averages only the images whose truth shows tumour; the BCE is over all."""
    t, p = _random(np.random.default_rng(6), n=4)
    t[1] = 0  # a patch without tumour
    t[3] = 0
    shown = [np_dice(t[i], p[i], smooth) for i in (0, 2)]
    want = np_bce(t, p) - np.mean(shown)
    assert _value(BCETumourDiceLoss(smooth=smooth)(t, p)) == pytest.approx(want, rel=1e-5)
    # every image shows tumour: the per-image loss
    t2, p2 = _random(np.random.default_rng(7))
    assert _value(BCETumourDiceLoss(smooth=smooth)(t2, p2)) == pytest.approx(
        _value(BCEImageDiceLoss(smooth=smooth)(t2, p2)), rel=1e-6)
    # no image shows tumour: BCE alone
    empty = np.zeros_like(t)
    assert _value(BCETumourDiceLoss(smooth=smooth)(empty, p)) == pytest.approx(
        np_bce(empty, p), rel=1e-5)


def test_tumour_images_loss_ignores_faint_probability_on_a_patch_without_tumour():
    """A faint 0.01 everywhere on a tumour-free patch costs the per-image loss most of a Dice
    point but the tumour-images loss only its cross-entropy."""
    t = np.zeros((2, 16, 16, 1), np.float32)
    t[0, 4:8, 4:8] = 1
    p = np.where(t > 0, 0.99, 0.01).astype(np.float32)
    per_image = _value(BCEImageDiceLoss()(t, p))
    tumour = _value(BCETumourDiceLoss()(t, p))
    empty_dice = 1.0 / (0.01 * 256 + 1.0)  # s / (|B| + s) of the tumour-free patch
    assert per_image - tumour == pytest.approx((np_dice(t[0], p[0]) - empty_dice) / 2, rel=1e-4)
    assert tumour == pytest.approx(np_bce(t, p) - np_dice(t[0], p[0]), rel=1e-5)


def test_per_image_dice_weighs_a_small_tumour_like_a_large_one():
    """One image with a 4-pixel tumour, one with a 128-pixel tumour, each found and missed in
    turn: the pooled Dice barely notices the small one, the per-image Dice halves."""
    t = np.zeros((2, 16, 16, 1), np.float32)
    t[0, :2, :2] = 1  # small
    t[1, 8:] = 1  # large
    miss_small = t.copy()
    miss_small[0] = 0
    miss_large = t.copy()
    miss_large[1] = 0
    small, large = (_value(ops.mean(dice_coef_per_image(t, p, 1.0)))
                    for p in (miss_small, miss_large))
    assert small == pytest.approx((1 / 5 + 1.0) / 2) and large == pytest.approx((1.0 + 1 / 129) / 2)
    pooled_small = _value(dice_coef(t, miss_small))
    assert pooled_small == pytest.approx((2 * 128 + 1) / (132 + 128 + 1))
    assert pooled_small > 0.98 and small < 0.61


def test_get_loss():
    dice = get_loss("dice", smooth=0.5)
    assert isinstance(dice, DiceLoss) and dice.smooth == 0.5
    bce = get_loss("bce_dice")
    assert isinstance(bce, BCEDiceLoss) and bce.smooth == 1.0
    assert isinstance(get_loss("bce_dice_per_image", smooth=0.5), BCEImageDiceLoss)
    tumour = get_loss("bce_dice_tumour_images", smooth=0.5)
    assert isinstance(tumour, BCETumourDiceLoss) and tumour.smooth == 0.5
    with pytest.raises(ValueError, match="bce_dice"):
        get_loss("focal")


def test_dice_loss_gradient_points_towards_the_truth():
    import tensorflow as tf

    t, p = _random(np.random.default_rng(4))
    var = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = DiceLoss()(t, var)
    grad = tape.gradient(loss, var).numpy()
    # raising p on tumor pixels lowers the loss; on background pixels it raises it
    assert np.all(grad[t == 1] < 0) and np.all(grad[t == 0] > 0)


def _disks(rng: np.random.Generator, n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` bright disks (radius 12..22 px) on Gaussian noise: images (n, size, size, 3) in
    [0, 1] and binary masks (n, size, size, 1)."""
    yy, xx = np.mgrid[:size, :size]
    x = rng.normal(0.25, 0.08, (n, size, size, 3))
    y = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        r = rng.uniform(12, 22)
        cy, cx = rng.uniform(r, size - r, 2)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        y[i, disk, 0] = 1.0
        x[i, disk] += 0.5
    return np.clip(x, 0, 1).astype(np.float32), y


def test_twenty_steps_of_dice_loss_learn_disks():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch, steps = 4, 20
    x, y = _disks(rng, batch * steps)
    # bn_momentum 0.5 so that 20 steps are enough for the moving statistics used at inference
    model = build_unet(ArchConfig(input_shape=(64, 64, 3), base_filters=8, bn_momentum=0.5))
    model.compile(keras.optimizers.Adam(3e-2), DiceLoss(), jit_compile=False)
    before = _value(DiceLoss()(y[:16], model(x[:16], training=False)))
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == steps
    # judged on unseen disks, in inference mode
    x_new, y_new = _disks(rng, 16)
    after = _value(DiceLoss()(y_new, model(x_new, training=False)))
    assert before > -0.6
    assert after < -0.8, f"Dice loss after {steps} steps: {after:.3f} (before: {before:.3f})"
