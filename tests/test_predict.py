"""unet-predict: masks and overlays at each input's own size."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np

from unet_keras import ArchConfig, build_unet
from unet_keras.data.preprocess import preprocess_image

REPO = Path(__file__).resolve().parents[1]


def test_predict_cli_writes_masks_at_input_size(tmp_path: Path, shared_data: Path):
    model_path = tmp_path / "tiny.keras"
    build_unet(ArchConfig(input_shape=(64, 64, 3), base_filters=4, depth=2)).save(model_path)
    src = sorted((shared_data / "figshare-png" / "images").glob("*.png"))[:2]
    odd = tmp_path / "in" / "odd.png"
    odd.parent.mkdir()
    cv2.imwrite(str(odd), cv2.imread(str(src[0]), 0)[:333, :517])
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "unet_keras.cli.predict", str(src[1]),
                           str(odd.parent), "--model", str(model_path), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for f in (src[1], odd):
        image = cv2.imread(str(f), 0)
        mask = cv2.imread(str(out / f"{f.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(out / f"{f.stem}_overlay.png"))
        assert mask.shape == image.shape and overlay.shape == (*image.shape, 3)
        assert set(np.unique(mask)) <= {0, 255}
    assert proc.stdout.count("tumor px") == 2


def test_segment_files_batches_equal_sizes_and_keeps_the_order(tmp_path: Path,
                                                               shared_data: Path):
    from unet_keras.inference import inference_model, load_model, predict_any_size
    from unet_keras.predict import segment_files

    keras.utils.set_random_seed(3)
    model_path = tmp_path / "tiny.keras"
    build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)).save(model_path)
    src = sorted((shared_data / "figshare-png" / "images").glob("*.png"))[:5]
    files = []
    for i, f in enumerate(src):  # sizes 512, 200x120, 512, 200x120, 512: two shape groups
        image = cv2.imread(str(f), 0)
        files.append(tmp_path / "in" / f"{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(files[-1]), image[:200, :120] if i % 2 else image)
    out = tmp_path / "out"
    records = list(segment_files(files, out, model_path=str(model_path), batch_size=3))
    assert [r["input"] for r in records] == [str(f) for f in files]
    reference = inference_model(load_model(model_path))
    for f, record in zip(files, records, strict=True):
        x = preprocess_image(cv2.imread(str(f), 0), None, 3)
        want = (predict_any_size(reference, x) >= 0.5).astype(np.uint8)
        mask = cv2.imread(record["mask"], cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask // 255, want)
        assert record["area_px"] == int(want.sum())
