"""Figures: they are real PNGs, and the example figure says when a mask is empty or full."""

from __future__ import annotations

import cv2
import numpy as np

from unet_keras import viz


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and cv2.imread(str(path)) is not None


def test_mask_note_names_empty_and_full_masks_only():
    empty, full, some = np.zeros((8, 8)), np.ones((8, 8)), np.zeros((8, 8))
    some[:2] = 1
    assert viz._mask_note(empty) == "empty"
    assert viz._mask_note(full) == "all tumour (100%)"
    assert viz._mask_note(some) is None


def test_figures_are_written(tmp_path):
    images = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    truths = np.zeros((2, 16, 16), np.uint8)
    truths[:, 4:8, 4:8] = 1
    preds = np.stack([np.zeros((16, 16), np.uint8), np.ones((16, 16), np.uint8)])
    viz.plot_examples(images, truths, preds, ["a", "b"], tmp_path / "ex.png")
    by_size = {"empty": {"n": 0, "dice": None, "miss_rate": None},
               "<0.5%": {"n": 3, "dice": 0.4, "miss_rate": 0.33}}
    viz.plot_dice_by_size(by_size, tmp_path / "size.png")
    viz.plot_val_dice_vs_minutes(
        {"run": [{"minutes": 1.0, "val_dice_coef": 0.2}, {"minutes": 2.0, "val_dice_coef": 0.5}],
         "old": [{"epoch": 0, "val_dice_coef": 0.3}]}, tmp_path / "minutes.png")
    for name in ("ex.png", "size.png", "minutes.png"):
        assert _is_png(tmp_path / name), name
