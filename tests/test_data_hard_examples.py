"""Hard-example sampling: weights from an evaluate.py per_image.csv, and the share of patches
the tf.data pipeline and the numpy loader draw by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unet_keras.data.hard_examples import MIN_WEIGHT, hard_example_weights, read_dice
from unet_keras.data.loader import PatchBatches
from unet_keras.data.slices import DataError

N = 8


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["split,id,patient_id,dice,iou,accuracy,tumour_share"]
    lines += [f"{split},{i},,{d},0.5,0.99,0.01" for split, i, d in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_weights_are_one_minus_dice_floored_and_normalised(tmp_path: Path):
    path = write_csv(tmp_path / "per_image.csv",
                     [("train", "a", "1.0"), ("train", "b", "0.0"), ("val", "c", "0.75"),
                      ("train", "e", "0.2"), ("train", "e", "0.9")])  # e: the last row counts
    w = hard_example_weights(["a", "b", "c", "d", "e"], path)
    raw = np.array([MIN_WEIGHT, 1.0, 0.25, 0.0, 0.1])
    raw[3] = np.mean([MIN_WEIGHT, 1.0, 0.25, 0.1])  # no score: the mean weight
    np.testing.assert_allclose(w, raw / raw.sum())
    assert read_dice(path) == {"a": 1.0, "b": 0.0, "c": 0.75, "e": 0.9}


@pytest.mark.parametrize("content, words", [
    (None, "cannot read"),
    ("split,id,score\ntrain,a,0.5\n", "needs 'id' and 'dice'"),
    ("split,id,dice\n", "needs 'id' and 'dice'"),
    ("split,id,dice\ntrain,a,0.5\ntrain,b,1.5\n", "line 3: Dice '1.5'"),
    ("split,id,dice\ntrain,a,nan\n", "line 2: Dice 'nan'"),
    ("split,id,dice\ntrain,z,0.5\n", "scores none of the 3 training slices"),
])
def test_a_bad_scores_file_is_refused_naming_it(tmp_path: Path, content: str | None,
                                               words: str):
    path = tmp_path / "per_image.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as err:
        hard_example_weights(["a", "b", "c"], path)
    assert str(err.value).startswith(str(path)) and words in str(err.value)


def slices() -> tuple[np.ndarray, np.ndarray]:
    """``N`` 32x32 slices whose pixels all equal ``i / 10``: a patch names its slice."""
    images = np.stack([np.full((32, 32, 1), i / 10, np.float32) for i in range(N)])
    return images, np.zeros((N, 32, 32, 1), np.float32)


def slice_counts(batches) -> np.ndarray:
    counts = np.zeros(N)
    for x, _ in batches:
        counts += np.bincount(np.rint(np.asarray(x)[:, 0, 0, 0] * 10).astype(int), minlength=N)
    return counts / counts.sum()


def one_hard_slice() -> np.ndarray:
    w = np.full(N, 1e-12)
    w[3] = 1.0
    return w


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_tf_pipeline_draws_the_hard_share_by_the_weights(fraction: float):
    from unet_keras.data.pipeline import make_patch_dataset

    images, masks = slices()
    ds = make_patch_dataset(images, masks, 16, 16, augment=False, seed=1,
                            hard_weights=one_hard_slice(), hard_fraction=fraction)
    share = slice_counts(ds.take(200))  # 3200 patches
    expected = np.full(N, (1 - fraction) / N)
    expected[3] += fraction  # the uniform part also visits slice 3
    np.testing.assert_allclose(share, expected, atol=0.03)


def test_tf_pipeline_without_a_hard_share_is_the_uniform_order():
    from unet_keras.data.pipeline import make_patch_dataset

    images, masks = slices()
    plain = make_patch_dataset(images, masks, 8, 16, augment=False, seed=1)
    zero = make_patch_dataset(images, masks, 8, 16, augment=False, seed=1,
                              hard_weights=one_hard_slice(), hard_fraction=0.0)
    for (a, _), (b, _) in zip(plain.take(3), zero.take(3), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="8 non-negative numbers"):
        make_patch_dataset(images, masks, 8, 16, hard_weights=np.ones(5), hard_fraction=0.5)


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_loader_draws_the_hard_share_and_keeps_the_other_draws(fraction: float):
    images, masks = slices()
    hard = PatchBatches(images, masks, 16, 16, steps=200, augment=False, seed=1,
                        hard_weights=one_hard_slice(), hard_fraction=fraction)
    share = slice_counts(hard[i] for i in range(len(hard)))
    expected = np.full(N, (1 - fraction) / N)
    expected[3] += fraction
    np.testing.assert_allclose(share, expected, atol=0.03)
    # an example not redrawn is the very patch it is without hard examples
    plain = PatchBatches(images, masks, 16, 16, steps=1, augment=False, seed=1)
    a, b = np.asarray(plain[0][0])[:, 0, 0, 0], np.asarray(hard[0][0])[:, 0, 0, 0]
    kept = ~np.isclose(b, 0.3)
    np.testing.assert_array_equal(a[kept], b[kept])
    assert kept.any() == (fraction < 1)
    with pytest.raises(ValueError, match="8 non-negative numbers"):
        PatchBatches(images, masks, 16, 16, steps=1, hard_weights=np.zeros(N), hard_fraction=1)
