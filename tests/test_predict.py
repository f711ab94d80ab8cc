"""unet-predict: masks and overlays at each input's own size."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

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
        mask = cv2.imread(str(out / f"{f.name}_mask.png"), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(out / f"{f.name}_overlay.png"))
        assert mask.shape == image.shape and overlay.shape == (*image.shape, 3)
        assert set(np.unique(mask)) <= {0, 255}
    assert proc.stdout.count("tumor px") == 2


def _spread_model(path: Path) -> keras.Model:
    """A tiny size-free U-Net whose probabilities spread over [0, 1] (a fresh head keeps them
    within 0.01 of the threshold, where any rounding flips a pixel, and gives the black
    background, whose features are all 0, exactly 0.5), saved to ``path``."""
    keras.utils.set_random_seed(3)
    model = build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2))
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 60.0, bias - 0.3])
    model.save(path)
    return model


def _slices(shared_data: Path, n: int) -> list[np.ndarray]:
    """Real slices, every other one cropped to 200x120: two sizes, interleaved."""
    src = sorted((shared_data / "figshare-png" / "images").glob("*.png"))[:n]
    return [cv2.imread(str(f), 0)[:200, :120] if i % 2 else cv2.imread(str(f), 0)
            for i, f in enumerate(src)]


def test_segment_images_batches_equal_sizes(tmp_path: Path, shared_data: Path):
    from unet_keras.predict_files import segment_images

    model = _spread_model(tmp_path / "tiny.keras")
    images = _slices(shared_data, 5)
    calls = []
    predict_on_batch = model.predict_on_batch
    model.predict_on_batch = lambda x: calls.append(len(x)) or predict_on_batch(x)
    results = segment_images(model, images, threshold=0.5, batch_size=8)
    assert sorted(calls) == [2, 3]  # one pass per size instead of five
    for image, (x, probs, mask, guessed) in zip(images, results, strict=True):
        want = preprocess_image(image, None, 3)
        np.testing.assert_array_equal(x, want)
        ref = np.asarray(model(want[None], training=False))[0, ..., 0]
        assert probs.shape == image.shape and 0.0 < (ref >= 0.5).mean() < 0.2
        np.testing.assert_allclose(probs, ref, atol=1e-5)
        np.testing.assert_array_equal(mask, (probs >= 0.5).astype(np.uint8))
        assert guessed is False  # no fallback stored


def test_segment_files_writes_in_order_and_what_came_before_a_bad_file(tmp_path: Path,
                                                                       shared_data: Path):
    from unet_keras.data import DataError
    from unet_keras.predict_files import segment_files

    model = _spread_model(tmp_path / "tiny.keras")
    folder = tmp_path / "in"
    folder.mkdir()
    files = []
    for i, image in enumerate(_slices(shared_data, 4)):
        files.append(folder / f"{i}.png")
        cv2.imwrite(str(files[-1]), image)
    out = tmp_path / "out"
    records = list(segment_files(files, out, model_path=str(tmp_path / "tiny.keras"),
                                 batch_size=3))
    assert [r["input"] for r in records] == [str(f) for f in files]
    for f, record in zip(files, records, strict=True):
        x = preprocess_image(cv2.imread(str(f), 0), None, 3)
        ref = np.asarray(model(x[None], training=False))[0, ..., 0]
        mask = cv2.imread(record["mask"], cv2.IMREAD_UNCHANGED) // 255
        decided = np.abs(ref - 0.5) > 1e-4  # pixels rounding cannot flip
        np.testing.assert_array_equal(mask[decided], (ref >= 0.5)[decided])
        assert record["area_px"] == int(mask.sum()) and record["best_guess"] is False

    bad = folder / "2.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="2.png"):
        list(segment_files(files, tmp_path / "out2", model_path=str(tmp_path / "tiny.keras"),
                           batch_size=3))
    written = sorted(p.name for p in (tmp_path / "out2").glob("*_mask.png"))
    assert written == ["0.png_mask.png", "1.png_mask.png"]  # flushed before the error


def test_a_best_guess_is_flagged_in_the_record_and_the_printed_line(tmp_path: Path,
                                                                    shared_data: Path, capsys):
    from unet_keras.cli.predict import main
    from unet_keras.model_meta import ModelMeta, write_model_meta
    from unet_keras.predict_files import segment_files

    arch = ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)
    path = tmp_path / "m.keras"
    build_unet(arch).save(path)
    # a fresh head gives probabilities near 0.5: nothing reaches 0.99, the fallback acts
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), threshold=0.99, fallback=0.1))
    src = sorted((shared_data / "figshare-png" / "images").glob("*.png"))[:2]
    records = list(segment_files(src, tmp_path / "a", model_path=str(path)))
    for record in records:
        mask = cv2.imread(record["mask"], cv2.IMREAD_UNCHANGED)
        assert record["best_guess"] is True and record["area_px"] == (mask > 0).sum() > 0
    plain = list(segment_files(src, tmp_path / "b", model_path=str(path), postprocess=False))
    assert [(r["best_guess"], r["area_px"]) for r in plain] == [(False, 0)] * 2

    assert main([str(src[0]), "--model", str(path), "-o", str(tmp_path / "c"), "--quiet"]) == 0
    assert "a best guess: no pixel reached the threshold" in capsys.readouterr().out
    assert main([str(src[0]), "--model", str(path), "-o", str(tmp_path / "d"), "--quiet",
                 "--no-postprocess"]) == 0
    assert "best guess" not in capsys.readouterr().out
