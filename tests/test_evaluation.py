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
    # the one miss (image 1) has a tumour and an empty prediction
    assert m["misses"] == {"nothing": pytest.approx(1 / 3), "elsewhere": 0.0, "false_alarm": 0.0}


def test_miss_kinds_by_hand():
    from unet_keras.evaluation import miss_kinds

    z = np.zeros((4, 4), np.uint8)
    tumour, other, edge = z.copy(), z.copy(), z.copy()
    tumour[:2, :2] = 1
    other[2:, 2:] = 1
    edge[1, 1] = 1
    edge[2:, 2:] = 1  # touches the tumour with 1 of its 5 pixels: Dice 2/9, not a miss
    truth = [tumour, tumour, tumour, z, z, tumour]
    pred = [tumour, z, other, other, z, edge]
    dice = score_split(truth, pred)
    kinds = miss_kinds(truth, pred, np.array([1.0, 0.0, 0.0, 0.0, 1.0, 2 / 9]))
    assert kinds == {"nothing": pytest.approx(1 / 6), "elsewhere": pytest.approx(1 / 6),
                     "false_alarm": pytest.approx(1 / 6)}
    assert sum(kinds.values()) == pytest.approx(dice["miss_rate"]) == pytest.approx(0.5)
    assert dice["misses"] == kinds


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
    # the scalars every run has: the weak run misses 1 slice of 3, its median Dice is 20/30
    assert agg["miss_rate"]["mean"] == pytest.approx((1 / 3 + 0.0) / 2)
    assert agg["dice_median"]["mean"] == pytest.approx((20 / 30 + 1.0) / 2)
    assert "best_guesses" not in agg  # score_split alone does not count best guesses
    table = table1_markdown({"test": score_split(truth, pred)})
    assert "0.897±0.004" in table and f"{weak:.3f}" in table


def test_aggregation_carries_best_guesses_only_where_every_run_has_them(tmp_path):
    truth, pred = masks()
    runs = []
    for k, guesses in enumerate((1, 4, None)):  # the third run's record predates the count
        d = tmp_path / f"run{k}"
        d.mkdir()
        m = score_split(truth, pred)
        if guesses is not None:
            m["best_guesses"] = guesses
        (d / "metrics.json").write_text(json.dumps({"test": m}))
        runs.append(d)
    assert aggregate_runs(runs[:2])["test"]["best_guesses"] == {"mean": 2.5, "std": 1.5}
    assert "best_guesses" not in aggregate_runs(runs)["test"]


def test_native_resolution_scores_masks_of_different_sizes_by_hand():
    from unet_keras.scoring import per_image_scores

    truth = [np.zeros((4, 6), np.uint8), np.zeros((8, 8), np.uint8)]
    pred = [np.zeros((4, 6), np.uint8), np.zeros((8, 8), np.uint8)]
    truth[0][:2, :3] = 1   # 6 px
    pred[0][:1, :3] = 1    # 3 px inside: Dice 6/9, IoU 3/6, accuracy 21/24
    truth[1][:, :4] = 1    # 32 px; prediction empty: Dice 0, accuracy 32/64
    m = score_split(truth, pred, patients=["p", "p"])
    assert m["dice"]["mean"] == pytest.approx((6 / 9 + 0) / 2)
    assert m["iou"]["mean"] == pytest.approx((0.5 + 0) / 2)
    assert m["accuracy"]["mean"] == pytest.approx((21 / 24 + 0.5) / 2)
    assert m["dice_global"] == pytest.approx(2 * 3 / (38 + 3))
    assert m["iou_global"] == pytest.approx(3 / 38)
    assert m["dice_per_patient"]["mean"] == pytest.approx(2 * 3 / (38 + 3))
    assert m["miss_rate"] == pytest.approx(0.5) and m["dice_median"] == pytest.approx(1 / 3)
    # lists of one size give what the stacked arrays give
    same = per_image_scores([t for t in masks()[0]], [p for p in masks()[1]])
    np.testing.assert_allclose(same["dice"], per_image_scores(*masks())["dice"])


def test_dice_by_size_bins_and_misses():
    from unet_keras.evaluation import dice_by_size

    truth = []
    for pixels in (0, 30, 80, 150, 300, 800):  # of 10000: 0, 0.3%, 0.8%, 1.5%, 3%, 8%
        t = np.zeros((100, 100), np.uint8)
        t.flat[:pixels] = 1
        truth.append(t)
    dice = np.array([1.0, 0.05, 0.5, 0.7, 0.08, 0.9])
    bins = dice_by_size(truth, dice)
    assert list(bins) == ["empty", "<0.5%", "0.5-1%", "1-2%", "2-5%", ">=5%"]
    assert [b["n"] for b in bins.values()] == [1, 1, 1, 1, 1, 1]
    assert bins["<0.5%"] == {"n": 1, "dice": 0.05, "miss_rate": 1.0}
    assert bins["2-5%"]["miss_rate"] == 1.0 and bins[">=5%"]["miss_rate"] == 0.0
    assert dice_by_size(truth[:1], dice[:1])["1-2%"] == {"n": 0, "dice": None, "miss_rate": None}


def test_tumour_contrast_by_hand():
    from unet_keras.evaluation import tumour_contrast

    image = np.zeros((100, 100), np.uint8)  # black background around a head ...
    image[10:90, 10:90] = 100               # ... of grey level 100
    mask = np.zeros((100, 100), np.uint8)
    mask[40:50, 40:50] = 1
    image[40:50, 40:50] = 150               # a bright tumour: 150 / 100
    assert tumour_contrast(image, mask) == pytest.approx(1.5)
    image[40:50, 40:50] = 50                # a dark one: 50 / 100
    assert tumour_contrast(image, mask) == pytest.approx(0.5)
    # at the edge of the head the ring leaves out the black background (3-pixel ring)
    edge = np.zeros((100, 100), np.uint8)
    edge[10:14, 40:50] = 1
    image[10:14, 40:50] = 200
    assert tumour_contrast(image, edge) == pytest.approx(2.0)
    rgb = np.repeat(image[..., None], 3, axis=-1)  # channels are averaged
    assert tumour_contrast(rgb, edge) == pytest.approx(2.0)
    assert tumour_contrast(image, np.zeros_like(mask)) is None


def test_dice_by_contrast_bins():
    from unet_keras.evaluation import dice_by_contrast

    bins = dice_by_contrast([0.5, 0.99, 1.0, 1.3, 2.0, None], np.array([0.0, 0.4, 0.6, 0.8, 0.9,
                                                                        1.0]))
    assert list(bins) == ["no tumour", "unmeasured", "<1.0", "1.0-1.2", "1.2-1.5", ">=1.5"]
    assert bins["<1.0"] == {"n": 2, "dice": pytest.approx(0.2), "miss_rate": 0.5}
    assert bins["1.0-1.2"]["n"] == 1 and bins["1.2-1.5"]["dice"] == 0.8
    assert bins["no tumour"] == {"n": 1, "dice": 1.0, "miss_rate": 0.0}
    assert bins["unmeasured"]["n"] == 0
    # a tumour without a ring (it fills the head) is unmeasured, not "no tumour"; a negative
    # contrast (signed images) still has a bin
    bins = dice_by_contrast([None, None, -0.5], np.array([0.7, 1.0, 0.2]),
                            has_tumour=[True, False, True])
    assert bins["unmeasured"] == {"n": 1, "dice": 0.7, "miss_rate": 0.0}
    assert bins["no tumour"]["n"] == 1 and bins["<1.0"]["n"] == 1
    assert sum(b["n"] for b in bins.values()) == 3


def test_choose_threshold_finds_the_best_cut_and_prefers_0_5_on_ties():
    from unet_keras.scoring import choose_threshold

    truth = np.zeros((8, 8), np.uint8)
    truth[2:6, 2:6] = 1
    probs = np.where(truth == 1, 0.3, 0.1).astype(np.float32)  # tumour at 0.3, rest 0.1
    best, curve = choose_threshold([truth], [probs])
    assert curve["0.50"] == 0.0 and curve["0.30"] == 1.0 and curve["0.10"] == pytest.approx(
        2 * 16 / (16 + 64))
    assert best == pytest.approx(0.3)  # 0.15..0.30 all give 1.0; 0.30 is nearest 0.5
    flat, _ = choose_threshold([truth], [np.where(truth == 1, 0.9, 0.0).astype(np.float32)])
    assert flat == 0.5


def test_tta_is_chosen_only_when_it_scores_higher_on_validation():
    from unet_keras.scoring import choose_threshold_and_tta

    truth = np.zeros((8, 8), np.uint8)
    truth[2:6, 2:6] = 1
    half = np.where(truth == 1, 0.9, 0.0).astype(np.float32)
    half[2:4] = 0.0  # finds the lower half of the tumour: Dice 2*8/(8+16) at any cut
    whole = np.where(truth == 1, 0.4, 0.0).astype(np.float32)  # all of it, below 0.5
    threshold, tta, curves = choose_threshold_and_tta([truth], [half], [whole])
    assert tta and threshold == pytest.approx(0.4)  # 0.10..0.40 give 1.0; 0.40 nearest 0.5
    assert curves[True]["0.40"] == 1.0 and curves[False]["0.40"] == pytest.approx(2 / 3)
    threshold, tta, _ = choose_threshold_and_tta([truth], [whole], [half])
    assert not tta and threshold == pytest.approx(0.4)
    threshold, tta, _ = choose_threshold_and_tta([truth], [half], [half.copy()])
    assert not tta and threshold == 0.5  # a tie keeps one forward pass


def test_postprocessing_is_chosen_only_when_it_scores_higher_and_ties_go_to_the_cautious():
    from unet_keras.postprocess import PostProcess
    from unet_keras.scoring import choose_postprocess

    truth = np.zeros((16, 16), np.uint8)
    truth[2:6, 2:6] = 1
    speck = np.where(truth == 1, 0.9, 0.0).astype(np.float32)
    speck[12, 12] = 0.9  # a false 1-pixel region: keep-largest drops it
    faint = np.where(truth == 1, 0.25, 0.0).astype(np.float32)  # all under the threshold
    rule, curve = choose_postprocess([truth, truth], [speck, faint], threshold=0.5)
    # by hand: plain = (2*16/33 + 0) / 2; largest = (1 + 0) / 2; fallback >= 0.3 misses the
    # faint slice (peak 0.25), fallback 0.1 or 0.2 finds it all: (x + 1) / 2
    assert curve["keep_largest=False, fallback=0.00"] == pytest.approx(16 / 33)
    assert curve["keep_largest=True, fallback=0.00"] == pytest.approx(0.5)
    assert curve["keep_largest=False, fallback=0.30"] == pytest.approx(16 / 33)
    assert curve["keep_largest=True, fallback=0.20"] == pytest.approx(1.0)
    assert "keep_largest=False, fallback=0.50" not in curve  # never acts at threshold 0.5
    # 0.1 and 0.2 tie at 1.0: the higher one acts on fewer slices
    assert rule == PostProcess(threshold=0.5, keep_largest=True, fallback=0.2)
    clean = np.where(truth == 1, 0.9, 0.0).astype(np.float32)
    rule, _ = choose_postprocess([truth], [clean], threshold=0.5)
    assert rule == PostProcess(threshold=0.5)  # nothing to gain: nothing chosen


def test_to_native_resizes_probabilities_back_to_each_slice():
    from unet_keras.data.slices import make_slice
    from unet_keras.scoring import to_native

    slices = [make_slice(np.zeros((64, 48)), np.zeros((64, 48)), "a", None, None, "a"),
              make_slice(np.zeros((32, 32)), np.zeros((32, 32)), "b", None, None, "b")]
    probs = np.zeros((2, 32, 32), np.float32)
    probs[0, :16] = 1.0  # top half
    out = to_native(probs, slices)
    assert out[0].shape == (64, 48) and out[1].shape == (32, 32)
    assert out[0][:30].min() == 1.0 and out[0][34:].max() == 0.0


def test_evaluate_flags_the_slices_whose_mask_is_a_best_guess(sample_dir, tmp_path):
    import csv
    import shutil

    import cv2

    from unet_keras import ArchConfig, build_unet
    from unet_keras.evaluation import evaluate
    from unet_keras.model_meta import ModelMeta, write_model_meta

    data = tmp_path / "data"
    for kind in ("images", "masks"):
        (data / kind).mkdir(parents=True)
        for name in ("1.png", "2.png", "3.png"):
            shutil.copy(sample_dir / kind / name, data / kind / name)
    arch = ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)
    path = tmp_path / "m.keras"
    build_unet(arch).save(path)
    # a fresh head's probabilities are near 0.5: nothing reaches 0.99, the fallback acts
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), image_size=64, threshold=0.99,
                                     fallback=0.1))
    for postprocess, guesses in ((None, 3), (False, 0)):
        out = tmp_path / f"eval-{postprocess}"
        metrics = evaluate(model_path=path, data=str(data), output=out, postprocess=postprocess,
                           log=lambda *_: None)["all"]
        assert metrics["best_guesses"] == guesses
        with open(out / "per_image.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["best_guess"] for r in rows] == [str(int(guesses > 0))] * 3
        # with the guesses no slice is left with nothing predicted; without, all are
        assert metrics["misses"]["nothing"] == (0.0 if guesses else 1.0)
        table = (out / "table1.md").read_text()
        assert ("Best guesses (no pixel reached the threshold): all 3 of 3" in table) is (
            guesses > 0)
    # a cut between the slices' peaks: only those whose peak is under it are guesses
    peaks = {r["id"]: None for r in rows}
    import keras

    from unet_keras.data.preprocess import preprocess_image
    from unet_keras.inference import load_model, predict_any_size

    keras.utils.set_random_seed(3)
    model = build_unet(arch)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 20.0, bias])  # peaks spread apart (about 0.71-0.74)
    model.save(path)
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), image_size=64))  # as evaluated
    model = load_model(path)
    for name in peaks:
        image = cv2.imread(str(data / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        peaks[name] = float(predict_any_size(model, preprocess_image(image, None, 3)).max())
    low, high = sorted(peaks.values())[:2]
    assert high - low > 5e-3  # room for a cut between them
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), image_size=64,
                                     threshold=(low + high) / 2, fallback=0.1))
    out = tmp_path / "eval-mixed"
    metrics = evaluate(model_path=path, data=str(data), output=out, log=lambda *_: None)["all"]
    with open(out / "per_image.csv") as f:
        flags = {r["id"]: r["best_guess"] for r in csv.DictReader(f)}
    assert flags == {k: str(int(v < (low + high) / 2)) for k, v in peaks.items()}
    assert metrics["best_guesses"] == 1
