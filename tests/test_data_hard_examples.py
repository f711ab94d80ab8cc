"""Hard-example sampling: weights from an evaluate.py per_image.csv, and the share of patches
the tf.data pipeline and the numpy loader draw by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unet_keras.data.hard_examples import (
    MIN_WEIGHT,
    check_weights,
    hard_example_weights,
    read_dice,
)
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
    assert read_dice(path) == {"a": 1.0, "b": 0.0, "c": 0.75, "e": 0.9}
    hard = hard_example_weights(["a", "b", "c", "d", "e"], read_dice(path), path)
    raw = np.array([MIN_WEIGHT, 1.0, 0.25, 0.0, 0.1])
    raw[3] = np.mean([MIN_WEIGHT, 1.0, 0.25, 0.1])  # no score: the mean weight
    np.testing.assert_allclose(hard.weights, raw / raw.sum())
    np.testing.assert_array_equal(hard.scores, [1.0, 0.0, 0.75, 0.9])


def test_weights_must_be_one_probability_per_slice():
    np.testing.assert_allclose(check_weights([1, 3], 2), [0.25, 0.75])
    for bad in ([1, 2, 3], [0, 0], [1, -1], [1, np.nan]):
        with pytest.raises(ValueError, match="2 non-negative numbers"):
            check_weights(bad, 2)


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
        hard_example_weights(["a", "b", "c"], read_dice(path), path)
    assert str(err.value).startswith(str(path)) and words in str(err.value)


def slices() -> tuple[np.ndarray, np.ndarray]:
    """``N`` 32x32 slices: slice ``i`` is ``i`` plus a ramp below 1 that tells each pixel
    apart, so a patch names its slice (its integer part) and its place."""
    ramp = (np.arange(32 * 32, dtype=np.float32).reshape(32, 32, 1) / 2048)
    images = np.stack([i + ramp for i in range(N)])
    return images, np.zeros((N, 32, 32, 1), np.float32)


def slice_of(x) -> np.ndarray:
    return np.floor(np.asarray(x)[:, 0, 0, 0]).astype(int)


def slice_counts(batches) -> np.ndarray:
    counts = np.zeros(N)
    for x, _ in batches:
        counts += np.bincount(slice_of(x), minlength=N)
    return counts / counts.sum()


def one_hard_slice() -> np.ndarray:
    w = np.full(N, 1e-12)
    w[3] = 1.0
    return w


def expected_share(fraction: float) -> np.ndarray:
    share = np.full(N, (1 - fraction) / N)  # the slots kept: the uniform order
    share[3] += fraction  # the replaced ones
    return share


def assert_kept_slots_unchanged(pairs, fraction: float):
    """Examples whose slot was not redrawn (not slice 3) are the very patches drawn without
    hard examples, batch by batch; over the batches some slot is kept unless ``fraction`` is 1
    (checked over all of them: one batch of 16 at 0.8 has every slot redrawn 3% of the time)."""
    kept_any = False
    for plain, hard in pairs:
        kept = slice_of(hard) != 3
        np.testing.assert_array_equal(plain[kept], hard[kept])
        kept_any |= bool(kept.any())
    if fraction < 1:
        assert kept_any


@pytest.mark.parametrize("fraction", [0.25, 0.8, 1.0])
def test_tf_pipeline_draws_the_hard_share_by_the_weights(fraction: float):
    from unet_keras.data.pipeline import make_patch_dataset

    images, masks = slices()

    def stream(**hard):
        return make_patch_dataset(images, masks, 16, 16, augment=False, seed=1, **hard)

    hard = {"hard_weights": one_hard_slice(), "hard_fraction": fraction}
    np.testing.assert_allclose(slice_counts(stream(**hard).take(200)), expected_share(fraction),
                               atol=0.03)
    assert_kept_slots_unchanged(
        [(a.numpy(), b.numpy())
         for (a, _), (b, _) in zip(stream().take(4), stream(**hard).take(4), strict=True)],
        fraction)
    with pytest.raises(ValueError, match="8 non-negative numbers"):
        make_patch_dataset(images, masks, 8, 16, hard_weights=np.ones(5), hard_fraction=0.5)


@pytest.mark.parametrize("fraction", [0.25, 0.8, 1.0])
def test_loader_draws_the_hard_share_and_keeps_the_other_draws(fraction: float):
    images, masks = slices()
    hard = PatchBatches(images, masks, 16, 16, steps=200, augment=False, seed=1,
                        hard_weights=one_hard_slice(), hard_fraction=fraction)
    np.testing.assert_allclose(slice_counts(hard[i] for i in range(len(hard))),
                               expected_share(fraction), atol=0.03)
    plain = PatchBatches(images, masks, 16, 16, steps=4, augment=False, seed=1)
    assert_kept_slots_unchanged([(plain[i][0], hard[i][0]) for i in range(4)], fraction)
    with pytest.raises(ValueError, match="8 non-negative numbers"):
        PatchBatches(images, masks, 16, 16, steps=1, hard_weights=np.zeros(N), hard_fraction=1)
