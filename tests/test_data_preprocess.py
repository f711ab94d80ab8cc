"""Preprocessing: grayscale, per-image min-max scaling (any dtype), area/nearest resize."""

from __future__ import annotations

import numpy as np
import pytest

from unet_keras.data import (
    binarize_mask,
    load_arrays,
    preprocess_image,
    preprocess_mask,
    read_dataset,
    read_image_file,
)


def test_int16_and_uint16_scale_to_unit_range():
    rng = np.random.default_rng(0)
    raw = rng.integers(-300, 4000, size=(32, 32)).astype(np.int16)
    out = preprocess_image(raw, None, 1)
    ref = (raw.astype(np.float64) - raw.min()) / (raw.max() - raw.min())
    assert out.shape == (32, 32, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], ref, atol=1e-6)
    big = rng.integers(0, 65535, size=(16, 16)).astype(np.uint16)
    big[0, 0], big[0, 1] = 0, 65535
    np.testing.assert_allclose(preprocess_image(big, None, 1)[..., 0], big / 65535.0, atol=1e-6)
    assert (preprocess_image(np.full((8, 8), 7, np.int16), None, 3) == 0).all()


def test_mat_and_png_give_the_same_model_input(mat_v73_dir, shared_data):
    """An int16 .mat slice with another value range and its uint8 PNG: equal after scaling."""
    png = read_image_file(shared_data / "figshare-png" / "images" / "2001.png")
    mat = read_image_file(mat_v73_dir / "2001.mat")
    raw = mat.astype(np.int32) * 7 - 120  # a scanner-like range, still int16
    a = preprocess_image(png, 256, 3)
    b = preprocess_image(raw.astype(np.int16), 256, 3)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_rgb_to_luma_and_channel_replication():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    rgb[0, 0] = 0  # so min-max has a range: min 0, max the luma of (100, 50, 200)
    out = preprocess_image(rgb, None, 3)
    assert out.shape == (4, 4, 3)
    assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == pytest.approx(1.0)


def test_area_resize_averages_blocks():
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    out = preprocess_image(x, 4, 1)[..., 0]
    scaled = x / 63.0
    ref = scaled.reshape(4, 2, 4, 2).mean(axis=(1, 3))  # 2x2 block means = area interpolation
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("scale", [1, 255])
def test_masks_stay_binary_after_nearest_resize(scale):
    m = np.zeros((512, 512), np.uint8)
    m[100:300, 50:250] = scale
    out = preprocess_mask(m, 256)
    assert out.shape == (256, 256, 1) and out.dtype == np.float32
    assert set(np.unique(out)) == {0.0, 1.0}
    assert out.sum() == 100 * 100  # exact: the square halves in each direction
    np.testing.assert_array_equal(out[..., 0], m[::2, ::2] > 0)


def test_binarize_mask_encodings():
    np.testing.assert_array_equal(binarize_mask(np.array([[0, 255], [3, 250]], np.uint8)),
                                  [[0, 1], [0, 1]])  # 0/255 with JPEG-like noise
    np.testing.assert_array_equal(binarize_mask(np.array([[0, 1], [1, 0]], np.uint16)),
                                  [[0, 1], [1, 0]])
    np.testing.assert_array_equal(binarize_mask(np.array([[0, 2], [3, 0]])), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(binarize_mask(np.array([[True, False]])), [[1, 0]])


def test_load_arrays_on_the_sample(sample_dir):
    slices = read_dataset(sample_dir)[:6]
    images, masks = load_arrays(slices, 128, 3)
    assert images.shape == (6, 128, 128, 3) and masks.shape == (6, 128, 128, 1)
    assert images.dtype == masks.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.9
    assert set(np.unique(masks)) == {0.0, 1.0}
    for k, s in enumerate(slices):  # the mask's area fraction survives the resize
        assert masks[k].mean() == pytest.approx(s.mask.mean(), rel=0.15, abs=2e-4)
    with pytest.raises(ValueError, match="differ in size"):
        load_arrays([slices[0], type(slices[0])(slices[0].image[:256, :256],
                     slices[0].mask[:256, :256], "x", None, None, "x")], None, 1)
