"""The backend-portable loaders (numpy/OpenCV ``PyDataset``) against hand-built references."""

import numpy as np
import pytest

from unet_keras.data.loader import PatchBatches, SliceBatches, augment_pair, sample_patch


def _pair(h=64, w=48, c=3, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, c), dtype=np.float32)
    mask = np.zeros((h, w, 1), np.float32)
    mask[10:20, 5:15] = 1.0
    return image, mask


def test_augment_without_rotation_or_jitter_is_one_of_the_four_flips():
    image, mask = _pair()
    seen = set()
    for k in range(40):
        out_image, out_mask = augment_pair(image, mask, np.random.default_rng(k),
                                           max_rotation=0, intensity=0)
        flips = {(fx, fy): (image[::fy, ::fx], mask[::fy, ::fx])
                 for fx in (1, -1) for fy in (1, -1)}
        match = [key for key, (i, m) in flips.items()
                 if np.array_equal(i, out_image) and np.array_equal(m, out_mask)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 4  # each flip occurs


def test_rotation_keeps_shapes_binary_mask_and_roughly_the_tumour_area():
    image, mask = _pair(64, 64)
    for k in range(10):
        out_image, out_mask = augment_pair(image, mask, np.random.default_rng(k),
                                           max_rotation=15, gamma=0.3, noise=0.05)
        assert out_image.shape == image.shape and out_mask.shape == mask.shape
        assert out_image.dtype == np.float32 and out_mask.dtype == np.float32
        assert set(np.unique(out_mask)) <= {0.0, 1.0}
        assert 0.0 <= out_image.min() and out_image.max() <= 1.0
        # a 10x10 square rotated by <= 15 degrees (bilinear, re-binarised) keeps ~100 pixels
        assert 80 <= out_mask.sum() <= 120


def test_rotation_by_zero_degrees_is_the_identity_and_90_degrees_a_transpose():
    from unet_keras.data.loader import _rotate

    x = np.random.default_rng(1).random((9, 9, 2), dtype=np.float32)
    np.testing.assert_allclose(_rotate(x, 0.0), x, atol=1e-6)
    np.testing.assert_allclose(_rotate(x, 90.0), np.rot90(x, 1, axes=(0, 1)), atol=1e-5)


def test_foreground_patches_contain_tumour_and_uniform_ones_mostly_do_not():
    image = np.zeros((256, 256, 1), np.float32)
    mask = np.zeros((256, 256, 1), np.float32)
    mask[200:204, 30:34] = 1.0  # 16 pixels: a uniform 64x64 patch hits it ~1 time in 20
    hits_fg = [sample_patch(image, mask, np.random.default_rng(k), 64, 1.0)[1].sum() > 0
               for k in range(100)]
    hits_uniform = [sample_patch(image, mask, np.random.default_rng(k), 64, 0.0)[1].sum() > 0
                    for k in range(200)]
    assert all(hits_fg)
    assert np.mean(hits_uniform) < 0.2


def test_patch_is_the_crop_of_the_slice_at_some_corner():
    image, mask = _pair(64, 64, 1)
    patch, patch_mask = sample_patch(image, mask, np.random.default_rng(3), 32, 0.5)
    corners = [(r, c) for r in range(33) for c in range(33)
               if np.array_equal(image[r:r + 32, c:c + 32], patch)]
    assert len(corners) == 1
    r, c = corners[0]
    np.testing.assert_array_equal(mask[r:r + 32, c:c + 32], patch_mask)


def test_patch_scale_zooms_and_still_returns_the_patch_size():
    image, mask = _pair(96, 96)
    for k in range(5):
        patch, patch_mask = sample_patch(image, mask, np.random.default_rng(k), 32, 0.5,
                                         scale=0.3)
        assert patch.shape == (32, 32, 3) and patch_mask.shape == (32, 32, 1)
        assert set(np.unique(patch_mask)) <= {0.0, 1.0}


def test_slice_batches_cover_every_slice_once_per_epoch_and_reshuffle():
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones((1, 4, 4, 1))
    masks = np.zeros((10, 4, 4, 1), np.float32)
    loader = SliceBatches(images, masks, batch_size=3, shuffle=True, seed=5)
    assert len(loader) == 4
    first = np.concatenate([loader[i][0][:, 0, 0, 0] for i in range(len(loader))])
    assert sorted(first) == list(range(10))
    loader.on_epoch_end()
    second = np.concatenate([loader[i][0][:, 0, 0, 0] for i in range(len(loader))])
    assert sorted(second) == list(range(10)) and not np.array_equal(first, second)
    assert len(SliceBatches(images, masks, 3, drop_remainder=True)) == 3


def test_batches_depend_only_on_seed_epoch_and_index():
    images = np.random.default_rng(0).random((6, 40, 40, 1), dtype=np.float32)
    masks = (images > 0.8).astype(np.float32)
    a = PatchBatches(images, masks, 4, 32, steps=3, foreground_fraction=0.5, seed=1,
                     gamma=0.2, noise=0.02)
    b = PatchBatches(images, masks, 4, 32, steps=3, foreground_fraction=0.5, seed=1,
                     gamma=0.2, noise=0.02, workers=2)
    for i in (2, 0, 1):  # any order
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    assert a[0][0].shape == (4, 32, 32, 1) and a[0][1].shape == (4, 32, 32, 1)
    before = a[0][0]
    a.on_epoch_end()
    assert not np.array_equal(before, a[0][0])
    c = PatchBatches(images, masks, 4, 32, steps=3, seed=2)
    assert not np.array_equal(c[0][0], b[0][0])


def test_loaders_refuse_mismatched_arrays_and_oversized_patches():
    images = np.zeros((2, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="expected images"):
        SliceBatches(images, np.zeros((2, 16, 16), np.float32), 1)
    with pytest.raises(ValueError, match="larger than the slices"):
        PatchBatches(images, np.zeros((2, 16, 16, 1), np.float32), 1, 32, steps=1)


def test_a_keras_model_fits_from_the_loader():
    import keras

    images = np.random.default_rng(0).random((8, 32, 32, 1), dtype=np.float32)
    masks = (images > 0.5).astype(np.float32)
    model = keras.Sequential([keras.Input((None, None, 1)),
                              keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    history = model.fit(PatchBatches(images, masks, 4, 16, steps=5, seed=0), epochs=2,
                        verbose=0)
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))
