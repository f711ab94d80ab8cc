"""Post-processing steps on hand-made masks."""

import numpy as np

from unet_keras.postprocess import PostProcess, cumulative_steps


def ring_and_specks() -> np.ndarray:
    probs = np.zeros((40, 40), np.float32)
    probs[5:25, 5:25] = 0.9          # a 20x20 blob ...
    probs[10:15, 10:15] = 0.2        # ... with a 5x5 hole
    probs[30:32, 30:32] = 0.8        # a 4-pixel speck
    probs[35, 2] = 0.7               # a 1-pixel speck
    return probs


def test_threshold_only():
    mask = PostProcess()(ring_and_specks())
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask.sum() == 400 - 25 + 4 + 1


def test_fill_holes_then_drop_small_then_keep_largest():
    probs = ring_and_specks()
    assert PostProcess(fill_holes=True)(probs).sum() == 400 + 4 + 1
    assert PostProcess(fill_holes=True, min_size=2)(probs).sum() == 400 + 4
    assert PostProcess(fill_holes=True, keep_largest=True)(probs).sum() == 400
    assert PostProcess(threshold=0.85)(probs).sum() == 400 - 25


def test_steps_are_cumulative_and_batch_apply():
    probs = np.stack([ring_and_specks(), np.zeros((40, 40), np.float32)])
    sums = [step.apply(probs).sum(axis=(1, 2)).tolist()
            for step in cumulative_steps(min_size=3).values()]
    assert sums == [[380, 0], [405, 0], [404, 0], [400, 0]]
