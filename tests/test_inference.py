"""predict_any_size: the input's own H, W at any size (reflect-pad and crop for ``None``-dim
models, resize for fixed-size ones), grayscale replication, and clear errors on bad shapes;
predict_batch in chunks; inference_model (batch norm folded, bfloat16, XLA) against the model
it copies."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from unet_keras.config import ArchConfig
from unet_keras.inference import inference_model, predict_any_size, predict_batch
from unet_keras.model import build_unet


@pytest.fixture(scope="module")
def flexible_model() -> keras.Model:
    """A tiny size-agnostic U-Net (H, W multiples of 16)."""
    keras.utils.set_random_seed(0)
    return build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=4))


@pytest.fixture(scope="module")
def fixed_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    return build_unet(ArchConfig(input_shape=(64, 64, 3), base_filters=4, depth=2))


def _forward(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Reference forward pass ``(N, H, W, C) -> (N, H, W)`` without predict_any_size."""
    return keras.ops.convert_to_numpy(model(x.astype(np.float32), training=False))[..., 0]


@pytest.mark.parametrize("size", [(33, 51), (333, 517)])
def test_odd_sizes_come_back_at_their_own_size(flexible_model, size):
    h, w = size
    image = np.random.default_rng(2).uniform(0, 1, (h, w, 3)).astype(np.float32)
    probs = predict_any_size(flexible_model, image)
    assert probs.shape == (h, w) and probs.dtype == np.float32
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    # reference: reflect-pad bottom/right to the next multiple of 16, forward, crop top-left
    padded = np.pad(image, ((0, -h % 16), (0, -w % 16), (0, 0)), mode="reflect")
    want = _forward(flexible_model, padded[None])[0, :h, :w]
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-5)


def test_image_smaller_than_the_padding_still_works(flexible_model):
    # 5x7 needs 11x9 of padding, more than reflect can mirror: must still return 5x7
    image = np.random.default_rng(6).uniform(0, 1, (5, 7, 3)).astype(np.float32)
    probs = predict_any_size(flexible_model, image)
    assert probs.shape == (5, 7) and np.all(np.isfinite(probs))
    assert probs.min() >= 0.0 and probs.max() <= 1.0


def test_divisible_input_equals_model_predict(flexible_model):
    x = np.random.default_rng(3).uniform(0, 1, (2, 64, 96, 3)).astype(np.float32)
    probs = predict_any_size(flexible_model, x)
    assert probs.shape == (2, 64, 96)
    want = flexible_model.predict(x, verbose=0)[..., 0]
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-6)
    # single image (H, W, C) -> (H, W), same values
    np.testing.assert_allclose(predict_any_size(flexible_model, x[1]), want[1], rtol=0, atol=1e-6)


def test_grayscale_is_replicated_to_the_models_channels(flexible_model):
    gray = np.random.default_rng(4).uniform(0, 1, (48, 40)).astype(np.float32)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    probs = predict_any_size(flexible_model, gray)
    assert probs.shape == (48, 40)
    np.testing.assert_array_equal(probs, predict_any_size(flexible_model, rgb))
    # an explicit single channel (H, W, 1) is replicated the same way
    np.testing.assert_array_equal(probs, predict_any_size(flexible_model, gray[..., None]))


def test_fixed_size_model_resizes_in_and_out(fixed_model):
    image = np.random.default_rng(5).uniform(0, 1, (100, 80, 3)).astype(np.float32)
    probs = predict_any_size(fixed_model, image)
    assert probs.shape == (100, 80) and probs.dtype == np.float32
    # reference: area-resize to 64x64, forward, linear-resize back (cv2 takes (width, height))
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    out = _forward(fixed_model, small[None])[0]
    want = cv2.resize(out, (80, 100), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-5)
    # at the model's own size nothing is resized
    at_size = image[:64, :64]
    np.testing.assert_allclose(predict_any_size(fixed_model, at_size),
                               _forward(fixed_model, at_size[None])[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(32, 32, 4), (32, 32, 2), (1, 32, 32, 5)])
def test_wrong_channel_count_raises(flexible_model, shape):
    with pytest.raises(ValueError, match="expects 3 channel") as info:
        predict_any_size(flexible_model, np.zeros(shape, np.float32))
    assert str(shape[-1]) in str(info.value)  # says what it got, too


@pytest.mark.parametrize("shape", [(32,), (1, 1, 32, 32, 3), ()])
def test_wrong_rank_raises(flexible_model, shape):
    with pytest.raises(ValueError, match=r"\(H, W\), \(H, W, 3\) or \(N, H, W, 3\)") as info:
        predict_any_size(flexible_model, np.zeros(shape, np.float32))
    assert f"rank {len(shape)}" in str(info.value)


def _with_trained_statistics(model: keras.Model) -> keras.Model:
    """Random BatchNorm moving statistics and affine weights, as after training (a fresh model's
    mean 0 / variance 1 would leave the inference-mode batch norm untested), and a head whose
    probabilities spread over [0, 1] rather than sit near 0.5."""
    rng = np.random.default_rng(7)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 30.0, bias])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.3, c).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
    return model


def test_predict_batch_runs_in_chunks_and_matches_the_forward_pass(flexible_model):
    x = np.random.default_rng(8).uniform(0, 1, (5, 32, 48, 3)).astype(np.float32)
    want = _forward(flexible_model, x)
    for batch_size in (1, 2, 8):
        got = predict_batch(flexible_model, x, batch_size=batch_size)
        assert got.shape == (5, 32, 48) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # TTA: mean of the identity and the two flips, each flipped back
    tta = (want + _forward(flexible_model, x[:, :, ::-1])[:, :, ::-1]
           + _forward(flexible_model, x[:, ::-1])[:, ::-1]) / 3
    np.testing.assert_allclose(predict_batch(flexible_model, x, 2, tta=True), tta, atol=1e-6)


@pytest.fixture(scope="module")
def trained_like() -> keras.Model:
    keras.utils.set_random_seed(2)
    return _with_trained_statistics(
        build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=8, depth=3)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_inference_model_float32_predicts_what_the_model_does(trained_like, jit_compile):
    fast = inference_model(trained_like, "float32", jit_compile=jit_compile)
    assert not any(isinstance(la, keras.layers.BatchNormalization) for la in fast.layers)
    assert type(fast.get_layer("up1_bn2")) is keras.layers.Identity  # folded into up1_conv2
    assert fast.input_shape == trained_like.input_shape
    x = np.random.default_rng(9).uniform(0, 1, (2, 40, 56, 3)).astype(np.float32)
    want = _forward(trained_like, x)
    assert 0.01 < want.mean() < 0.99 and want.std() > 0.1  # spread, not saturated
    np.testing.assert_allclose(predict_any_size(fast, x), want, atol=2e-5)
    assert type(trained_like.get_layer("down1_bn1")) is keras.layers.BatchNormalization


def test_inference_model_bfloat16_is_close_and_keeps_the_callers_policy(trained_like):
    fast = inference_model(trained_like, "bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert fast.get_layer("down1_conv1").compute_dtype == "bfloat16"
    assert fast.get_layer("head").compute_dtype == "float32"
    x = np.random.default_rng(10).uniform(0, 1, (2, 48, 48, 3)).astype(np.float32)
    want, got = _forward(trained_like, x), predict_batch(fast, x)
    assert got.dtype == np.float32
    assert want.std() > 0.1  # probabilities spread over [0, 1]
    assert np.abs(got - want).max() < 0.03  # 8-bit mantissas through 15 conv layers: ~0.014
    assert np.mean((got >= 0.5) == (want >= 0.5)) > 0.995


def test_inference_model_rejects_an_unknown_precision(trained_like):
    with pytest.raises(ValueError, match="precision must be one of"):
        inference_model(trained_like, "float16")


@pytest.mark.parametrize(("batch_size", "n", "message"),
                         [(0, 2, "batch_size must be at least 1"), (2, 0, "empty batch")])
def test_predict_batch_rejects_a_bad_batch(flexible_model, batch_size, n, message):
    with pytest.raises(ValueError, match=message):
        predict_batch(flexible_model, np.zeros((n, 16, 16, 3), np.float32), batch_size)


def test_a_model_file_s_working_size_and_threshold_are_used(tmp_path):
    from unet_keras.inference import decision_threshold, load_model
    from unet_keras.model_meta import ModelMeta, write_model_meta
    from unet_keras.predict_files import segment_images

    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    path = tmp_path / "m.keras"
    build_unet(arch).save(path)
    assert decision_threshold(load_model(path)) == 0.5  # no metadata: 0.5, padded input
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), image_size=32, threshold=0.3))
    model = load_model(path)
    assert decision_threshold(model) == 0.3
    image = np.random.default_rng(0).random((64, 48), dtype=np.float32)
    probs = predict_any_size(model, image)
    small = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA)[None, ..., None]
    expected = cv2.resize(np.asarray(model.predict_on_batch(small))[0, ..., 0], (48, 64),
                          interpolation=cv2.INTER_LINEAR)
    assert probs.shape == (64, 48)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    (_, p, mask, _), = segment_images(model, [image])
    np.testing.assert_array_equal(mask, (p >= 0.3).astype(np.uint8))
    np.testing.assert_allclose(p, expected, atol=1e-5)  # no TTA stored: one forward pass


def test_a_model_file_s_flip_tta_choice_is_used_unless_overridden(tmp_path):
    from unet_keras.data.preprocess import preprocess_image
    from unet_keras.inference import default_tta, load_model
    from unet_keras.model_meta import ModelMeta, write_model_meta
    from unet_keras.predict_files import segment_images

    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    path = tmp_path / "m.keras"
    build_unet(arch).save(path)
    assert default_tta(load_model(path)) is False  # no metadata: no TTA
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), image_size=32, tta=True))
    model = load_model(path)
    assert default_tta(model) is True

    image = np.random.default_rng(1).random((32, 32), dtype=np.float32)
    x = preprocess_image(image, image_size=None, channels=1)[None]  # as segment_images does

    def forward(a):
        return np.asarray(model.predict_on_batch(np.ascontiguousarray(a)))[..., 0]

    # the mean over the slice and its two flips, each flipped back, by hand
    flips = (forward(x) + forward(x[:, :, ::-1])[:, :, ::-1] + forward(x[:, ::-1])[:, ::-1]) / 3
    (_, p, _, _), = segment_images(model, [image])
    np.testing.assert_allclose(p, flips[0], atol=1e-5)
    (_, p, _, _), = segment_images(model, [image], tta=False)
    np.testing.assert_allclose(p, forward(x)[0], atol=1e-5)
    assert np.abs(flips - forward(x)).max() > 1e-4  # the two differ, so the checks can fail


def test_a_model_file_s_postprocessing_is_used_unless_switched_off(tmp_path):
    from scipy import ndimage

    from unet_keras.inference import load_model, mask_rule
    from unet_keras.model_meta import ModelMeta, write_model_meta
    from unet_keras.postprocess import PostProcess
    from unet_keras.predict_files import segment_images

    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    path = tmp_path / "m.keras"
    build_unet(arch).save(path)
    assert mask_rule(load_model(path)) == PostProcess()  # no metadata: a 0.5 threshold
    image = np.random.default_rng(2).random((32, 32), dtype=np.float32)
    (_, probs, _, _), = segment_images(load_model(path), [image])
    # a threshold above every probability, so only the fallback can find something
    high = float(probs.max()) + 1e-3
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), threshold=high, fallback=0.1))
    model = load_model(path)
    (_, p, mask, guessed), = segment_images(model, [image])
    labels, _ = ndimage.label(p >= p.max() / 2, structure=np.ones((3, 3)))
    peak = np.unravel_index(np.argmax(p), p.shape)
    expected = (labels == labels[peak]).astype(np.uint8)
    assert expected.sum() > 0
    np.testing.assert_array_equal(mask, expected)
    assert guessed is True  # and it says the mask is a best guess
    (_, _, plain, guessed), = segment_images(model, [image], postprocess=False)
    assert plain.sum() == 0 and guessed is False  # the threshold alone
    # keep-largest at a threshold that leaves several regions
    t = float(np.quantile(probs, 0.7))
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), threshold=t, keep_largest=True))
    (_, p, mask, guessed), = segment_images(load_model(path), [image])
    assert guessed is False
    labels, n = ndimage.label(p >= t, structure=np.ones((3, 3)))
    assert n > 1
    sizes = np.bincount(labels.ravel())[1:]
    np.testing.assert_array_equal(mask, np.isin(labels, 1 + np.flatnonzero(sizes == sizes.max())))
    # --threshold overrides the stored cut; the stored post-processing stays
    t2 = float(np.quantile(probs, 0.6))
    (_, p, mask, _), = segment_images(load_model(path), [image], threshold=t2)
    labels, n = ndimage.label(p >= t2, structure=np.ones((3, 3)))
    assert n > 1
    sizes = np.bincount(labels.ravel())[1:]
    np.testing.assert_array_equal(mask, np.isin(labels, 1 + np.flatnonzero(sizes == sizes.max())))
