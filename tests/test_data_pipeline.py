"""tf.data pipelines: batches, paired augmentation (alignment on a phantom), file decoding with a
cache that makes epoch 2+ read no file, and the phantom generator."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from unet_keras.data import (
    augment_pair,
    list_files,
    load_arrays,
    make_dataset,
    make_file_dataset,
    read_dataset,
)
from unet_keras.data.synthetic import make_phantom

THRESHOLD = 0.6


def _threshold_pair(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    image, _ = make_phantom(size, seed)
    return image[..., None], (image > THRESHOLD).astype(np.float32)[..., None]


def test_phantom_is_seeded_and_sized():
    a, ma = make_phantom(80, 3)
    b, mb = make_phantom(80, 3)
    c, _ = make_phantom(80, 4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(a, c)
    assert a.shape == (80, 80) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert ma.dtype == np.uint8 and ma.sum() > 0
    assert a[ma == 1].mean() > a[(ma == 0) & (a > 0.3) & (a < 0.7)].mean() + 0.15  # brighter
    assert make_phantom(300, 0)[0].shape == (300, 300)


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_image_and_mask_aligned(seed):
    image, mask = _threshold_pair(seed)
    out_img, out_mask = augment_pair(tf.constant(image), tf.constant(mask),
                                     tf.constant([seed, 11], tf.int64), intensity=0.0)
    out_img, out_mask = out_img.numpy()[..., 0], out_mask.numpy()[..., 0]
    assert set(np.unique(out_mask)) <= {0.0, 1.0}
    assert not np.allclose(out_img, image[..., 0])  # something was done
    expected = out_img > THRESHOLD
    edge = ndimage.binary_dilation(expected, iterations=1) ^ ndimage.binary_erosion(
        expected, iterations=1)
    wrong = (out_mask == 1) != expected
    assert not (wrong & ~edge).any()  # disagreements only on interpolation edges
    assert wrong.sum() <= 0.25 * edge.sum()
    assert out_mask.sum() == pytest.approx(mask.sum(), rel=0.15)  # rotation keeps the area


def test_augmentation_jitters_image_only_and_varies():
    image, mask = _threshold_pair(0)
    results = [augment_pair(tf.constant(image), tf.constant(mask), tf.constant([s, 0], tf.int64))
               for s in range(8)]
    for img, m in results:
        assert 0.0 <= float(tf.reduce_min(img)) and float(tf.reduce_max(img)) <= 1.0
        assert set(np.unique(m.numpy())) <= {0.0, 1.0}
    assert len({r[1].numpy().tobytes() for r in results}) > 4  # different draws per seed
    no_geometry = augment_pair(tf.constant(image), tf.constant(mask),
                               tf.constant([5, 5], tf.int64), max_rotation=0.0)
    flipped = [np.flip(mask[..., 0], axis) for axis in ((), 0, 1, (0, 1))]
    assert any(np.array_equal(no_geometry[1].numpy()[..., 0], f) for f in flipped)


def test_make_dataset_batches_and_reshuffles(sample_dir):
    images, masks = load_arrays(read_dataset(sample_dir)[:10], 32, 3)
    ds = make_dataset(images, masks, batch_size=4, shuffle=True, seed=1)
    epochs = [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(2)]
    assert [b[0].shape for b in epochs[0]] == [(4, 32, 32, 3), (4, 32, 32, 3), (2, 32, 32, 3)]
    assert epochs[0][0][1].shape == (4, 32, 32, 1) and epochs[0][0][0].dtype == np.float32
    order = [np.concatenate([b[0] for b in e]) for e in epochs]
    assert not np.array_equal(order[0], order[1])  # a new order each epoch
    key = lambda a: sorted(x.tobytes() for x in a)  # noqa: E731
    assert key(order[0]) == key(images)  # ...of the same examples
    plain = np.concatenate([x.numpy() for x, _ in make_dataset(images, masks, 3, shuffle=False)])
    np.testing.assert_array_equal(plain, images)
    aug = make_dataset(images, masks, 10, shuffle=False, augment=True, seed=0)
    first, second = (next(iter(aug))[1].numpy() for _ in range(2))
    assert not np.array_equal(first, second)  # new augmentation every epoch
    with pytest.raises(ValueError, match="masks"):
        make_dataset(images, masks[..., 0], 2)


@pytest.mark.parametrize("on_disk", [False, True])
def test_file_dataset_caches_so_epoch_two_reads_no_mat(mat_v73_dir, tmp_path, on_disk):
    import shutil

    root = tmp_path / "mats"
    shutil.copytree(mat_v73_dir, root)
    fmt, files = list_files(root)
    cache = str(tmp_path / "cache" / "train") if on_disk else ""
    if on_disk:
        (tmp_path / "cache").mkdir()
    ds = make_file_dataset(files, 64, 3, batch_size=3, format=fmt, cache=cache, shuffle=False)
    first = np.concatenate([x.numpy() for x, _ in ds])
    ref_images, ref_masks = load_arrays(read_dataset(root), 64, 3)
    np.testing.assert_allclose(first, ref_images, atol=1e-6)
    for f in files:  # epoch 2 must not need the files any more
        (root / f).unlink()
    second = [(x.numpy(), y.numpy()) for x, y in ds]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in second]), first)
    np.testing.assert_array_equal(np.concatenate([y for _, y in second]), ref_masks)
    if on_disk:
        assert list((tmp_path / "cache").glob("train*"))


def test_file_dataset_without_cache_rereads(mat_v73_dir, tmp_path):
    import shutil

    root = tmp_path / "mats"
    shutil.copytree(mat_v73_dir, root)
    fmt, files = list_files(root)
    ds = make_file_dataset(files, 32, 1, batch_size=8, format=fmt, cache=None, augment=True)
    x, y = next(iter(ds))
    assert x.shape == (8, 32, 32, 1) and set(np.unique(y.numpy())) <= {0.0, 1.0}
    (root / "1.mat").unlink()
    with pytest.raises(tf.errors.OpError, match=r"1\.mat: cannot read"):
        for _ in ds:
            pass


def _find_crop(image: np.ndarray, patch: np.ndarray) -> tuple[int, int] | None:
    p = patch.shape[0]
    for top in range(image.shape[0] - p + 1):
        for left in range(image.shape[1] - p + 1):
            if np.array_equal(image[top:top + p, left:left + p], patch):
                return top, left
    return None


def test_sample_patch_is_an_aligned_crop_that_holds_tumour_when_asked():
    from unet_keras.data.pipeline import sample_patch

    rng = np.random.default_rng(0)
    image = rng.random((48, 40, 2)).astype(np.float32)
    mask = np.zeros((48, 40, 1), np.float32)
    mask[30:33, 5:8] = 1  # a 3x3 tumour near a corner
    for s in range(20):
        im, mk = sample_patch(tf.constant(image), tf.constant(mask),
                              tf.constant([s, 7], tf.int64), 16, foreground_fraction=1.0)
        im, mk = im.numpy(), mk.numpy()
        assert im.shape == (16, 16, 2) and mk.shape == (16, 16, 1)
        top, left = _find_crop(image, im)
        np.testing.assert_array_equal(mk, mask[top:top + 16, left:left + 16])  # aligned
        assert mk.sum() > 0  # always holds a tumour pixel
    never = [sample_patch(tf.constant(image), tf.constant(mask), tf.constant([s, 1], tf.int64),
                          16, foreground_fraction=0.0)[1].numpy().sum() > 0 for s in range(60)]
    # uniform placement: P(patch holds the tumour) is small (about 12/25 * 14/33 ~ 0.2)
    assert 0 < sum(never) < 30
    # an empty mask with foreground_fraction 1 falls back to uniform placement
    im, mk = sample_patch(tf.constant(image), tf.constant(np.zeros_like(mask)),
                          tf.constant([3, 3], tf.int64), 16, foreground_fraction=1.0)
    assert _find_crop(image, im.numpy()) is not None and mk.numpy().sum() == 0


def test_sample_patch_scale_zooms_and_keeps_the_mask_binary():
    from unet_keras.data.pipeline import sample_patch

    image, mask = _threshold_pair(5, 96)
    for s in range(10):
        im, mk = sample_patch(tf.constant(image), tf.constant(mask),
                              tf.constant([s, 2], tf.int64), 32, 0.5, scale=0.3)
        assert im.shape == (32, 32, 1) and set(np.unique(mk.numpy())) <= {0.0, 1.0}
        # the phantom rule (tumour = intensity > THRESHOLD) survives the zoom, up to edges
        agree = np.mean((im.numpy() > THRESHOLD) == (mk.numpy() > 0.5))
        assert agree > 0.9


def test_patch_dataset_batches_full_augmented_patches_with_the_asked_foreground_share():
    from unet_keras.data.pipeline import make_patch_dataset

    images = np.random.default_rng(1).random((8, 64, 64, 1)).astype(np.float32)
    masks = np.zeros((8, 64, 64, 1), np.float32)
    masks[:, 50:54, 10:14] = 1
    def share(fraction: float) -> float:
        ds = make_patch_dataset(images, masks, 4, 16, fraction, augment=True, gamma=0.3,
                                noise=0.05, seed=3)
        found = [yb.numpy().reshape(4, -1).max(1) for _, yb in ds.take(40)]
        for xb, _ in ds.take(2):
            assert xb.shape == (4, 16, 16, 1) and 0 <= xb.numpy().min() <= xb.numpy().max() <= 1
        return float(np.mean(found))
    assert share(1.0) > 0.97  # every patch holds tumour (rotation may clip a corner pixel)
    low = share(0.0)
    assert low < 0.25 and share(0.5) > low + 0.25
    with pytest.raises(ValueError, match="larger than the slices"):
        make_patch_dataset(images, masks, 4, 128)
