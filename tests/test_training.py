"""Training: the CLI end to end on the bundled sample, resume after SIGKILL, seeded runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from unet_keras.config import ArchConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
TINY = ["--base-filters", "4", "--depth", "2", "--image-size", "32", "--batch-size", "4"]


def run_cli(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


def history_epochs(path: Path) -> list[int]:
    with path.open() as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and cv2.imread(str(path)) is not None


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A 3-epoch tiny run on the bundled sample through ``train.py`` (no --data)."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    proc = run_cli("train.py", "--epochs", "3", *TINY, "--output", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bundled sample" in proc.stdout
    return run


def test_train_cli_writes_a_complete_run_dir(trained_run: Path):
    for name in ("model.keras", "last.keras", "config.json", "split.json", "history.csv",
                 "summary.md"):
        assert (trained_run / name).is_file(), name
    assert is_png(trained_run / "curves.png")
    assert any((trained_run / "logs").rglob("events.out.tfevents.*"))
    assert history_epochs(trained_run / "history.csv") == [0, 1, 2]
    record = json.loads((trained_run / "config.json").read_text())
    assert record["train"]["epochs"] == 3 and record["arch"]["base_filters"] == 4
    assert not (trained_run / "backup").exists()  # removed once the run has finished
    # Trained with the fused batch norm, exported with Keras' own layer (loads in plain Keras).
    for name in ("model.keras", "last.keras"):
        with zipfile.ZipFile(trained_run / name) as archive:
            saved = archive.read("config.json").decode()
        assert '"BatchNormalization"' in saved and "FusedBatchNormalization" not in saved
    split = json.loads((trained_run / "split.json").read_text())
    ids = [set(part["ids"]) for part in split["splits"].values()]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:])


def test_best_checkpoint_is_the_best_validation_epoch(trained_run: Path):
    import keras

    import unet_keras  # noqa: F401  (registers the custom objects)
    from unet_keras.data.splits import load_split_data

    with (trained_run / "history.csv").open() as f:
        best = max(float(r["val_dice_coef"]) for r in csv.DictReader(f))
    cfg = TrainConfig.from_dict(json.loads((trained_run / "config.json").read_text())["train"])
    _, _, arrays = load_split_data(cfg, trained_run)
    model = keras.models.load_model(trained_run / "model.keras")
    assert model.dtype_policy.name == "float32"
    images, masks = arrays["val"]
    probs = model.predict(images, verbose=0)
    inter, total = float((probs * masks).sum()), float(probs.sum() + masks.sum())
    np.testing.assert_allclose((2 * inter + 1) / (total + 1), best, rtol=2e-3)


def test_monitor_picks_the_best_epoch_on_per_image_dice(tmp_path: Path):
    """``--monitor dice_per_image`` (with the per-image loss): ``model.keras`` is the epoch
    with the highest ``val_dice_per_image``, which numpy recomputes from its predictions."""
    import keras

    from unet_keras.data.splits import load_split_data
    from unet_keras.metrics import dice_per_image

    run = tmp_path / "per-image"
    proc = run_cli("train.py", "--epochs", "3", *TINY, "--loss", "bce_dice_per_image",
                   "--monitor", "dice_per_image", "--output", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["val_dice_per_image"]))
    assert f"best epoch {int(best['epoch']) + 1}: val_dice_per_image" in proc.stdout
    assert "(on val_dice_per_image)" in (run / "summary.md").read_text()
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["train"])
    assert cfg.monitor == "dice_per_image" and cfg.loss == "bce_dice_per_image"
    _, _, arrays = load_split_data(cfg, run)
    images, masks = arrays["val"]
    probs = keras.models.load_model(run / "model.keras").predict(images, verbose=0)
    assert float(np.mean(dice_per_image(masks, probs))) == pytest.approx(
        float(best["val_dice_per_image"]), abs=5e-3)


def test_evaluate_cli_outputs_recompute_from_saved_masks(trained_run: Path):
    proc = run_cli("evaluate.py", str(trained_run), "--save-masks")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| test" in proc.stdout
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics) == {"train", "val", "test"}
    for split in metrics:
        assert is_png(trained_run / f"examples_{split}.png")
        assert is_png(trained_run / f"dice_hist_{split}.png")
    # Recompute test Dice from the saved mask PNGs and the truth, by hand.
    from unet_keras.data import read_dataset

    slices = {s.id: s for s in read_dataset(REPO / "data" / "sample")}
    dices = []
    test_ids = json.loads((trained_run / "split.json").read_text())["splits"]["test"]["ids"]
    for sid in test_ids:
        pred = cv2.imread(str(trained_run / "masks" / "test" / f"{sid}.png"), 0) > 127
        truth = slices[sid].mask > 0  # scored at the slice's own size by default
        assert pred.shape == truth.shape
        denom = pred.sum() + truth.sum()
        dices.append(1.0 if denom == 0 else 2 * (pred & truth).sum() / denom)
    assert metrics["test"]["n_images"] == len(test_ids)
    np.testing.assert_allclose(metrics["test"]["dice"]["mean"], np.mean(dices), atol=1e-9)
    np.testing.assert_allclose(metrics["test"]["dice"]["std"], np.std(dices), atol=1e-9)
    table = (trained_run / "table1.md").read_text()
    assert "Paper Dice" in table and "native resolution" in table and "tumour size" in table
    assert "tumour contrast" in table
    from unet_keras.evaluation import tumour_contrast

    with (trained_run / "per_image.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["split"] == "test")
    contrast = tumour_contrast(slices[row["id"]].image, slices[row["id"]].mask)
    assert row["tumour_contrast"] == ("" if contrast is None else f"{contrast:.4f}")
    assert f"wrote {trained_run}" in proc.stdout
    for split in metrics:
        assert is_png(trained_run / f"dice_by_size_{split}.png")
    # the threshold chosen on the validation split at the end of training is the one used
    chosen = json.loads((trained_run / "threshold.json").read_text())
    assert metrics["test"]["threshold"] == chosen["threshold"]
    # ... and so is the choice of flip TTA: on when it scored higher there
    best = {tta: max(chosen[key].values()) for tta, key in
            ((False, "val_dice_by_threshold"), (True, "val_dice_by_threshold_tta"))}
    assert chosen["tta"] == (best[True] > best[False])
    assert metrics["test"]["tta"] == chosen["tta"]
    # ... and so is the post-processing: the best on the validation split, ties to the
    # cautious (no keep-largest, no fallback, a higher fallback)
    curve = chosen["val_dice_by_postprocess"]
    key = f"keep_largest={chosen['keep_largest']}, fallback={chosen['fallback']:.2f}"
    assert curve[key] == max(curve.values())
    assert curve[key] > curve["keep_largest=False, fallback=0.00"] or (
        not chosen["keep_largest"] and chosen["fallback"] == 0.0)
    assert (metrics["test"]["keep_largest"], metrics["test"]["fallback"]) == (
        chosen["keep_largest"], chosen["fallback"])
    # --resolution model scores at the model's 32x32 working size
    out = trained_run / "at-model-size"
    flag = "--no-tta" if chosen["tta"] else "--tta"  # the other way round from the stored one
    proc = run_cli("evaluate.py", str(trained_run), "--resolution", "model", "--save-masks",
                   "--threshold", "0.5", flag, "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cv2.imread(str(out / "masks" / "test" / f"{test_ids[0]}.png"), 0).shape == (32, 32)
    at_model = json.loads((out / "metrics.json").read_text())["test"]
    assert at_model["resolution"] == "model" and at_model["tta"] == (not chosen["tta"])


def _kill_after_two_epochs(run: Path, epochs: int = 6) -> None:
    """Start a tiny training of ``epochs`` epochs and SIGKILL it once two have finished."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [sys.executable, str(REPO / "train.py"), "--epochs", str(epochs), *TINY,
            "--image-size", "64", "--batch-size", "2", "--output", str(run)]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    meta = run / "backup" / "training_metadata.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(meta.read_text())["epoch"] >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)


def test_resume_after_sigkill_continues_without_gaps_or_duplicates(tmp_path: Path):
    run = tmp_path / "killed"
    _kill_after_two_epochs(run, epochs=4)
    done_before = len(history_epochs(run / "history.csv"))
    assert 2 <= done_before < 4
    # No --epochs: every setting comes from the run's config.json (4 epochs, not the default)
    resumed = run_cli("train.py", "--resume", "--output", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert history_epochs(run / "history.csv") == [0, 1, 2, 3]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 4
    assert (run / "model.keras").is_file() and not (run / "backup").exists()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    again = run_cli("train.py", "--resume", "--output", str(run), "--epochs", "6")
    assert again.returncode == 2 and "nothing to resume" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    # a refused resume changes no file
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_a_corrupt_backup_is_named_and_history_is_kept(tmp_path: Path):
    run = tmp_path / "corrupt"
    _kill_after_two_epochs(run)
    history = (run / "history.csv").read_bytes()
    assert history.count(b"\n") >= 3
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = run / "backup" / name
        if path.exists():
            path.write_text(path.read_text()[:5])  # truncated
    proc = run_cli("train.py", "--resume", "--output", str(run))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "training_metadata.json" in lines[0] and "--output" in lines[0]
    assert (run / "history.csv").read_bytes() == history  # nothing truncated
    # the same for the weights
    run2 = tmp_path / "corrupt-weights"
    _kill_after_two_epochs(run2)
    for name in ("latest.weights.h5", "latest.weights.h5.bkp"):
        path = run2 / "backup" / name
        if path.exists():
            path.write_bytes(path.read_bytes()[:100])
    proc = run_cli("train.py", "--resume", "--output", str(run2))
    assert proc.returncode == 2 and "latest.weights.h5" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("flags", "message"), [
    (["--lr", "-1"], "--lr"),
    (["--image-size", "0"], "--image-size"),
    (["--image-size", "-16"], "--image-size"),
    (["--image-size", "42"], "multiple of 2**depth"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--data", "/nonexistent/dataset"], "/nonexistent/dataset"),
    (["--init-from", "/nonexistent/model.keras"], "/nonexistent/model.keras"),
])
def test_refused_starts_name_the_flag_and_leave_no_run_directory(tmp_path, flags, message):
    run = tmp_path / "refused"
    proc = run_cli("train.py", "--epochs", "1", *TINY[:-4], *flags, "--output", str(run))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not run.exists()


def test_same_seed_gives_identical_histories(tmp_path: Path):
    from unet_keras.training import train

    def run(name: str) -> list[dict]:
        cfg = TrainConfig(epochs=2, arch=ArchConfig(base_filters=4, depth=2), image_size=32,
                          batch_size=4, seed=7, deterministic=True, output=str(tmp_path / name))
        return train(cfg, log=lambda *_: None).history

    first, second = run("a"), run("b")
    assert first == second
    third = train(TrainConfig(epochs=2, arch=ArchConfig(base_filters=4, depth=2), image_size=32,
                              batch_size=4, seed=8, output=str(tmp_path / "c")),
                  log=lambda *_: None).history
    assert third != first


def test_config_file_and_flags_resolve_in_order(tmp_path: Path):
    from unet_keras.cli.train import resolve_config

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"epochs": 7, "base_filters": 8, "loss": "bce_dice"}))
    cfg = resolve_config(["--config", str(path), "--epochs", "3", "--no-augment",
                          "--output", "x"])
    assert (cfg.epochs, cfg.arch.base_filters, cfg.loss, cfg.augment) == (3, 8, "bce_dice", False)
    with pytest.raises(ValueError, match="unknown training options"):
        path.write_text(json.dumps({"epochz": 3}))
        resolve_config(["--config", str(path)])


def test_patch_training_with_a_step_budget_stores_size_threshold_and_lineage(
        tmp_path: Path, trained_run: Path):
    from unet_keras.model_meta import read_model_meta

    run = tmp_path / "patches"
    proc = run_cli("train.py", "--epochs", "50", *TINY, "--patch-size", "16", "--steps", "9",
                   "--schedule", "cosine", "--loss", "bce_dice", "--augment-scale", "0.1",
                   "--augment-gamma", "0.2", "--augment-noise", "0.02", "--mixed-precision",
                   "auto", "--output", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "precision auto:" in proc.stdout
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    # 23 training slices / batch 4 -> 6 steps an epoch; the budget of 9 ends epoch 2 early
    assert [float(r["steps"]) for r in rows] == [6.0, 9.0]
    assert float(rows[-1]["lr"]) < 0.1 * 1e-3  # the cosine has decayed to near 0
    meta = read_model_meta(run / "model.keras")
    chosen = json.loads((run / "threshold.json").read_text())
    assert meta.image_size == 32 and meta.threshold == chosen["threshold"]
    assert meta.tta == chosen["tta"] and "validation" in meta.tta_source
    assert (meta.keep_largest, meta.fallback) == (chosen["keep_largest"], chosen["fallback"])
    assert "validation" in meta.postprocess_source
    assert meta.arch["input_shape"] == [None, None, 3]  # size-free: trained on patches
    import keras

    assert keras.models.load_model(run / "model.keras").input_shape == (None, None, None, 3)
    # a second sitting starts from those weights and records where it came from
    again = tmp_path / "again"
    proc = run_cli("train.py", "--epochs", "1", *TINY, "--patch-size", "16",
                   "--init-from", str(run / "model.keras"), "--output", str(again))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lineage = json.loads((again / "config.json").read_text())["lineage"]
    assert lineage[0]["run"] == str(run) and lineage[-1]["init_from"] == str(run / "model.keras")
    # ... but only into the same network
    proc = run_cli("train.py", "--epochs", "1", *TINY, "--base-filters", "8",
                   "--init-from", str(trained_run / "model.keras"),
                   "--output", str(tmp_path / "other"))
    assert proc.returncode == 2 and "base_filters" in proc.stderr
    assert not (tmp_path / "other").exists()


def test_init_from_refuses_to_validate_on_the_slices_the_model_trained_on(
        tmp_path: Path, trained_run: Path):
    """A model whose run trained on every slice of the sample (its split.json says so), taken
    as the start of a second sitting on the sample: its validation slices would be ones the
    weights already fit, so the start is refused with one line and no run directory left. The
    fixture's own split (what a second sitting with the same split flags gets) is accepted by
    the lineage test above."""
    import shutil

    source = tmp_path / "all-trained"
    source.mkdir()
    shutil.copy(trained_run / "model.keras", source / "model.keras")
    record = json.loads((trained_run / "split.json").read_text())
    everything = [p for part in record["splits"].values() for p in part["paths"]]
    record["splits"] = {"train": {"ids": [], "paths": everything, "patients": []}}
    (source / "split.json").write_text(json.dumps(record))
    run = tmp_path / "leaky"
    proc = run_cli("train.py", "--epochs", "1", *TINY, "--init-from", str(source / "model.keras"),
                   "--output", str(run))
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert str(source / "model.keras") in line and "val slices" in line
    assert line.split("e.g. ")[1].split(";")[0] in {"/".join(Path(p).parts[-3:])
                                                    for p in everything}
    assert "Traceback" not in proc.stderr and not run.exists()


def test_hard_examples_weight_the_patches_by_a_scores_file_and_refuse_a_bad_one(
        tmp_path: Path):
    """``--hard-examples`` reads an evaluate.py per_image.csv: the log counts the training
    slices it scores and their misses (checked against the run's own split), config.json
    records it; a malformed file is one line naming it, exit 2, and no run directory."""
    from unet_keras.data import SAMPLE_DIR, read_dataset

    ids = [s.id for s in read_dataset(str(SAMPLE_DIR))]
    scores = {i: (0.05 if k % 3 == 0 else 0.8)
              for k, i in enumerate(ids) if k % 5 != 1}  # every fifth slice unscored
    table = tmp_path / "per_image.csv"
    table.write_text("split,id,dice\n" + "".join(f"train,{i},{d}\n" for i, d in scores.items()))
    run = tmp_path / "hard"
    proc = run_cli("train.py", "--epochs", "1", *TINY, "--patch-size", "16", "--steps", "2",
                   "--hard-examples", str(table), "--hard-fraction", "0.75",
                   "--output", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    train_ids = json.loads((run / "split.json").read_text())["splits"]["train"]["ids"]
    known = [scores[i] for i in train_ids if i in scores]
    assert 0 < len(known) < len(train_ids)
    assert (f"hard examples: 75% of the patches from training slices weighted by 1 - Dice in "
            f"{table} ({len(known)} of {len(train_ids)} scored, "
            f"{sum(d < 0.1 for d in known)} of them misses") in proc.stdout
    record = json.loads((run / "config.json").read_text())["train"]
    assert record["hard_examples"] == str(table) and record["hard_fraction"] == 0.75
    assert (run / "hard_examples.csv").read_text() == table.read_text()  # what it sampled by

    table.write_text("split,id,dice\n" + f"train,{ids[0]},2.0\n")
    bad = tmp_path / "bad"
    proc = run_cli("train.py", "--epochs", "1", *TINY, "--patch-size", "16", "--steps", "2",
                   "--hard-examples", str(table), "--output", str(bad))
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert str(table) in line and "Dice '2.0'" in line and "Traceback" not in proc.stderr
    assert not bad.exists()


@pytest.mark.parametrize("portable", [False, True])
def test_training_batches_come_from_the_hard_slices(portable: bool):
    """The weights reach the training batches (tf.data, and the loaders of JAX and PyTorch):
    with all the weight on one slice and a hard share of 1, every patch is cut from it."""
    from unet_keras.training import _portable_datasets, build_datasets

    images = np.stack([np.full((32, 32, 3), i, np.float32) for i in range(6)])
    masks = np.zeros((6, 32, 32, 1), np.float32)
    arrays = {"train": (images, masks), "val": (images[:2], masks[:2])}
    weights = np.zeros(6)
    weights[4] = 1.0
    cfg = TrainConfig.from_dict({"image_size": 32, "patch_size": 16, "base_filters": 4,
                                 "depth": 2, "batch_size": 8, "augment": False,
                                 "hard_examples": "scores.csv", "hard_fraction": 1.0})
    train_ds, _, _ = (_portable_datasets(cfg, arrays, weights) if portable
                      else build_datasets(cfg, None, arrays, 1, weights))
    batches = [train_ds[i] for i in range(3)] if portable else list(train_ds.take(3))
    assert {float(v) for x, _ in batches for v in np.asarray(x)[:, 0, 0, 0]} == {4.0}
