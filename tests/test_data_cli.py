"""``python -m unet_keras.data inspect|preview|export-tfrecord`` (:mod:`unet_keras.cli.data`):
the numbers it prints and one-line errors. The export itself is tested in test_distribute.py."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from unet_keras.cli.data import main, tfrecord_main


def test_inspect_figshare_mat(mat_v73_dir, capsys):
    assert main(["inspect", str(mat_v73_dir)]) == 0
    out = capsys.readouterr().out
    assert "format figshare" in out and "slices: 8 of 8 file(s)" in out
    assert "patients: 4 (slices per patient: min 1, median 2, max 3)" in out
    assert "labels: 1 meningioma: 3, 2 glioma: 3, 3 pituitary: 2" in out
    assert "empty masks: 0 (0.0%)" in out
    assert "image sizes: 512x512: 7, 256x256: 1" in out and "dtypes: int16: 8" in out


def test_inspect_lgg_counts_empty_masks_and_ranges(lgg_dir, capsys):
    import tifffile

    assert main(["inspect", str(lgg_dir)]) == 0
    out = capsys.readouterr().out
    images = [tifffile.imread(p) for p in sorted(lgg_dir.rglob("*.tif")) if "_mask" not in p.name]
    lo, hi = min(int(a.min()) for a in images), max(int(a.max()) for a in images)
    assert f"intensity range: {lo} .. {hi}" in out
    assert "empty masks: 2 (40.0%)" in out and "patients: 2" in out
    assert "image sizes: 256x256x3: 5" in out and "labels: none recorded" in out


def test_inspect_png_tumor_area(sample_dir, capsys):
    assert main(["inspect", str(sample_dir)]) == 0
    out = capsys.readouterr().out
    areas = [np.mean(cv2.imread(str(p), 0) > 0) * 100 for p in (sample_dir / "masks").glob("*")]
    assert f"mean {np.mean(areas):.2f}%" in out and "slices: 40 of 40" in out


def test_preview_writes_a_grid(sample_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["preview", str(sample_dir), "-o", str(out), "-n", "6"]) == 0
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[0] > 200 and grid.shape[1] > 300
    red = (grid[..., 2] > 200) & (grid[..., 1] < 80) & (grid[..., 0] < 80)
    assert red.sum() > 100  # the mask outlines are drawn
    assert "6 slices" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "3.mat").write_bytes(b"MATLAB 7.3 MAT-file" + b"\0" * 600)
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / '3.mat'}: ") and err.count("\n") == 1
    assert main(["inspect", str(tmp_path), "--skip-bad"]) == 2  # nothing readable left
    assert "no readable slices (1 bad file(s))" in capsys.readouterr().err


def test_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unet_keras.data", "preview",
                           str(tmp_path / "nowhere"), "-o", str(tmp_path / "g.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"error: {tmp_path / 'nowhere'}: no such file or directory\n" in proc.stderr


def test_export_tfrecord_help_and_its_older_name(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        main(["export-tfrecord", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: python -m unet_keras.data export-tfrecord" in text
    for flag in ("--image-size", "--shards", "--split-by", "--val-fraction", "--fold"):
        assert flag in text
    missing = tmp_path / "nowhere"
    assert tfrecord_main(["export", str(missing), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such file or directory\n"
    assert not (tmp_path / "out").exists()


def test_tfrecord_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unet_keras.data.tfrecord", "export",
                           str(tmp_path / "nowhere"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.endswith(f"error: {tmp_path / 'nowhere'}: no such file or directory\n")


def test_export_tfrecord_of_a_fold_uses_the_training_split(sample_dir, tmp_path, capsys):
    import json

    from unet_keras.data import read_dataset, split_dataset

    out = tmp_path / "fold2"
    assert main(["export-tfrecord", str(sample_dir), str(out), "--image-size", "16",
                 "--shards", "2", "--fold", "2/5"]) == 0
    assert f"train with: python train.py --data {out} --image-size 16" in capsys.readouterr().out
    slices = read_dataset(sample_dir)
    split, info = split_dataset(slices, fold="2/5")  # what train.py --fold 2/5 trains on
    doc = json.loads((out / "split.json").read_text())
    assert doc["info"] == info and info["fold"] == "2/5" and info["seed"] == 42
    for name, idx in split.items():
        assert doc["splits"][name]["ids"] == [slices[i].id for i in idx]
    assert main(["export-tfrecord", str(tmp_path / "nowhere"), str(tmp_path / "o"),
                 "--fold", "3/2"]) == 2  # the fold is checked before anything is read
    assert capsys.readouterr().err == "error: fold K/N needs 1 <= K <= N and N >= 2, got '3/2'\n"
