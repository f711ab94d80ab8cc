"""Evaluation numbers against hand-computed values; Table 1 and run aggregation."""

import json

import numpy as np
import pytest

from unet_keras.evaluation import aggregate_runs, score_split, table1_markdown


def masks():
    truth = np.zeros((3, 10, 10), np.uint8)
    pred = np.zeros((3, 10, 10), np.uint8)
    truth[0, :2] = 1              # 20 px
    pred[0, :1] = 1               # 10 px inside: Dice 2*10/30, IoU 10/20
    truth[1, 5:] = 1              # 50 px, prediction empty: Dice 0
    # image 2: both empty -> Dice 1 by the empty-mask rule
    return truth, pred


def test_score_split_per_image_pooled_and_per_patient():
    truth, pred = masks()
    m = score_split(truth, pred, patients=["a", "a", "b"])
    dice = np.array([20 / 30, 0.0, 1.0])
    iou = np.array([0.5, 0.0, 1.0])
    acc = np.array([0.9, 0.5, 1.0])
    assert m["dice"]["mean"] == pytest.approx(dice.mean())
    assert m["dice"]["std"] == pytest.approx(dice.std())
    assert m["iou"]["mean"] == pytest.approx(iou.mean())
    assert m["accuracy"]["mean"] == pytest.approx(acc.mean())
    assert m["dice_global"] == pytest.approx(2 * 10 / (70 + 10))
    assert m["iou_global"] == pytest.approx(10 / 70)
    # patient a pools images 0 and 1: 2*10/(70+10); patient b: empty/empty = 1
    per_patient = np.array([20 / 80, 1.0])
    assert m["dice_per_patient"]["mean"] == pytest.approx(per_patient.mean())
    assert m["dice_per_patient"]["n_patients"] == 2
    assert "dice_per_patient" not in score_split(truth, pred, patients=[None] * 3)


def test_table1_has_paper_columns_and_aggregation_across_runs(tmp_path):
    truth, pred = masks()
    runs = []
    for k, p in enumerate((pred, truth)):  # a weak run and a perfect run
        d = tmp_path / f"run{k}"
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"test": score_split(truth, p)}))
        runs.append(d)
    agg = aggregate_runs(runs)["test"]
    weak = np.mean([20 / 30, 0.0, 1.0])
    assert agg["dice"]["mean"] == pytest.approx((weak + 1.0) / 2)
    assert agg["dice"]["std"] == pytest.approx(abs(1.0 - weak) / 2)
    assert agg["n_runs"] == 2
    table = table1_markdown({"test": score_split(truth, pred)})
    assert "0.897±0.004" in table and f"{weak:.3f}" in table
