"""The batch-norm variants: FusedBatchNormalization against the numpy formulas and Keras' own
layer, the U-Net built with it (same names, parameters, predictions and training step), and
the folded U-Net (batch norm folded into the convolutions) against the numpy fold and Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet_keras.batchnorm import FusedBatchNormalization, fold_batchnorm
from unet_keras.config import ArchConfig
from unet_keras.losses import DiceLoss
from unet_keras.model import build_unet

MOMENTUM, EPSILON = 0.9, 1e-3


@pytest.fixture
def policy(request):
    """Run a test under the dtype policy given by its parameter, then restore float32."""
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def _layers(x_shape, cls_a, cls_b, epsilon=EPSILON):
    rng = np.random.default_rng(3)
    gamma = rng.normal(1.0, 0.2, x_shape[-1]).astype(np.float32)
    beta = rng.normal(0.0, 0.2, x_shape[-1]).astype(np.float32)
    out = []
    for cls in (cls_a, cls_b):
        layer = cls(momentum=MOMENTUM, epsilon=epsilon)
        layer.build(x_shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        out.append(layer)
    return out, gamma, beta


def _run(layer, x: np.ndarray, training: bool):
    """Output (float32 numpy) and gradients of sum(y * r) w.r.t. x, gamma, beta, with a fixed
    random ``r`` (a plain sum would give x a gradient of zero, all cancellation)."""
    xt = tf.constant(x)
    r = tf.constant(np.random.default_rng(9).normal(size=x.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.cast(layer(tf.cast(xt, layer.compute_dtype), training=training), tf.float32)
        loss = tf.reduce_sum(y * r)
    grads = tape.gradient(loss, [xt, *layer.trainable_variables])
    return y.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"], indirect=True)
def test_training_step_matches_the_numpy_formulas_and_keras(policy):
    x = np.random.default_rng(0).normal(2.0, 3.0, (3, 8, 8, 5)).astype(np.float32)
    (keras_bn, fused), gamma, beta = _layers(x.shape, keras.layers.BatchNormalization,
                                            FusedBatchNormalization)
    y_fused, g_fused = _run(fused, x, training=True)
    y_keras, g_keras = _run(keras_bn, x, training=True)

    xin = x.astype(np.float32)
    if policy == "mixed_bfloat16":  # the layer receives bfloat16 inputs
        xin = tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy()
    mean, var = xin.mean(axis=(0, 1, 2)), xin.var(axis=(0, 1, 2))  # biased variance
    expected = (xin - mean) / np.sqrt(var + EPSILON) * gamma + beta
    tol = 1e-5 if policy == "float32" else 4e-2  # bfloat16 output: 8 mantissa bits
    np.testing.assert_allclose(y_fused, expected, atol=tol * 4, rtol=tol)
    np.testing.assert_allclose(y_fused, y_keras, atol=tol * 4, rtol=tol)
    for a, b in zip(g_fused, g_keras, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4 if policy == "float32" else 5e-2,
                                   atol=(1e-5 if policy == "float32" else 1e-2) * np.abs(b).max())
    # Moving averages: momentum * old (0 and 1) + (1 - momentum) * batch mean / biased var.
    np.testing.assert_allclose(fused.moving_mean.numpy(), (1 - MOMENTUM) * mean, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), MOMENTUM + (1 - MOMENTUM) * var,
                               rtol=1e-5)
    np.testing.assert_allclose(fused.moving_variance.numpy(), keras_bn.moving_variance.numpy(),
                               rtol=1e-6)
    assert fused.compute_dtype == keras_bn.compute_dtype
    assert fused.moving_mean.dtype == "float32" and fused.gamma.dtype == "float32"


def test_inference_uses_the_moving_statistics():
    x = np.random.default_rng(1).normal(1.0, 2.0, (2, 4, 4, 3)).astype(np.float32)
    (_, fused), gamma, beta = _layers(x.shape, keras.layers.BatchNormalization,
                                      FusedBatchNormalization)
    mean, var = np.array([0.5, -1.0, 2.0], np.float32), np.array([4.0, 0.25, 1.0], np.float32)
    fused.moving_mean.assign(mean)
    fused.moving_variance.assign(var)
    y = fused(x, training=False).numpy()
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + EPSILON) * gamma + beta, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), mean)  # not updated


def test_an_epsilon_below_cudnns_minimum_falls_back_to_keras(monkeypatch):
    x = np.random.default_rng(2).normal(0.0, 1.0, (2, 4, 4, 3)).astype(np.float32)
    (keras_bn, fused), _, _ = _layers(x.shape, keras.layers.BatchNormalization,
                                      FusedBatchNormalization, epsilon=1e-7)

    def no_fused_kernel(*args, **kwargs):
        raise AssertionError("the fused kernel ran with an epsilon cuDNN rejects")

    monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", no_fused_kernel)
    np.testing.assert_allclose(fused(x, training=True).numpy(),
                               keras_bn(x, training=True).numpy(), atol=1e-6)


def test_the_fused_unet_is_the_same_network():
    cfg = ArchConfig(input_shape=(32, 32, 3), base_filters=4, depth=2, dropout=0.0)
    keras.utils.set_random_seed(0)
    plain = build_unet(cfg)
    fused = build_unet(cfg, batchnorm="fused")
    assert [la.name for la in fused.layers] == [la.name for la in plain.layers]
    assert fused.count_params() == plain.count_params()
    bns = [la for la in fused.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(type(la) is FusedBatchNormalization for la in bns)
    fused.set_weights(plain.get_weights())

    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    y = (rng.random((4, 32, 32, 1)) > 0.7).astype(np.float32)
    np.testing.assert_allclose(fused.predict_on_batch(x), plain.predict_on_batch(x), atol=1e-5)
    for model in (plain, fused):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=DiceLoss())
    loss_plain = plain.train_on_batch(x, y)
    loss_fused = fused.train_on_batch(x, y)
    assert loss_fused == pytest.approx(loss_plain, abs=1e-5)
    for a, b in zip(fused.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_a_model_holding_the_fused_layer_reloads_in_safe_mode(tmp_path):
    cfg = ArchConfig(input_shape=(16, 16, 1), base_filters=2, depth=1)
    model = build_unet(cfg, batchnorm="fused")
    model.save(tmp_path / "fused.keras")
    again = keras.models.load_model(tmp_path / "fused.keras", safe_mode=True)
    assert type(again.get_layer("down1_bn1")) is FusedBatchNormalization
    x = np.random.default_rng(0).random((1, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(again.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def _trained_statistics(model: keras.Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.3, 2.0, c)])


def test_folding_gives_the_numpy_fold_and_the_same_predictions():
    cfg = ArchConfig(input_shape=(32, 32, 3), base_filters=4, depth=2, attention=True)
    keras.utils.set_random_seed(1)
    plain = build_unet(cfg)
    _trained_statistics(plain)
    folded = build_unet(cfg, batchnorm="folded")
    assert [la.name for la in folded.layers] == [la.name for la in plain.layers]
    assert not any(isinstance(la, keras.layers.BatchNormalization) for la in folded.layers)
    fold_batchnorm(plain, folded)

    kernel, bias = plain.get_layer("up1_conv2").get_weights()
    gamma, beta, mean, var = plain.get_layer("up1_bn2").get_weights()
    scale = gamma / np.sqrt(var + plain.get_layer("up1_bn2").epsilon)
    got_kernel, got_bias = folded.get_layer("up1_conv2").get_weights()
    np.testing.assert_allclose(got_kernel, kernel * scale, rtol=1e-6)
    np.testing.assert_allclose(got_bias, (bias - mean) * scale + beta, rtol=1e-6, atol=1e-7)
    for name in ("up1_transpose", "up1_att_psi", "head"):  # not followed by a batch norm
        for a, b in zip(folded.get_layer(name).get_weights(), plain.get_layer(name).get_weights(),
                        strict=True):
            np.testing.assert_array_equal(a, b)

    x = np.random.default_rng(2).random((3, 32, 32, 3), dtype=np.float32)
    want = plain.predict_on_batch(x)
    assert 0.01 < want.mean() < 0.99 and want.std() > 0.01  # not saturated
    np.testing.assert_allclose(folded.predict_on_batch(x), want, atol=2e-6)


def test_folding_refuses_a_target_that_still_has_batch_norms():
    cfg = ArchConfig(input_shape=(16, 16, 1), base_filters=2, depth=1)
    with pytest.raises(ValueError, match="batchnorm='folded'"):
        fold_batchnorm(build_unet(cfg), build_unet(cfg))
    gated = cfg.replace(attention=True)  # attention-gate weights the target has no place for
    with pytest.raises(ValueError, match="no layer for the weights of up1_att_phi"):
        fold_batchnorm(build_unet(gated), build_unet(cfg, batchnorm="folded"))


def test_an_unknown_batchnorm_kind_is_refused():
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        build_unet(ArchConfig(input_shape=(16, 16, 1), base_filters=2, depth=1), "fast")
