"""The GPU paper run (benchmarks/gpu/), rehearsed on this CPU: packing the slices, the weight
shards, and the whole device script with a tiny network under the JAX backend."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.gpu import pack as packing

REPO = Path(__file__).resolve().parents[1]


def _read(folder: Path, kind: str, name: str) -> np.ndarray:
    image = cv2.imread(str(folder / kind / name), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


@pytest.mark.parametrize("codec", ["png", "webp"])
def test_lossless_packing_gives_back_every_pixel_and_name(sample_dir, tmp_path, codec):
    info = packing.pack(sample_dir, tmp_path / "s.npz", codec)
    assert info["slices"] == 40 and info["mean_abs_error"] == 0.0
    assert packing.unpack(tmp_path / "s.npz", tmp_path / "out") == 40
    for path in sorted((sample_dir / "images").iterdir())[:10]:
        np.testing.assert_array_equal(_read(tmp_path / "out", "images", path.name),
                                      _read(sample_dir, "images", path.name))
        np.testing.assert_array_equal(_read(tmp_path / "out", "masks", path.name) > 127,
                                      _read(sample_dir, "masks", path.name) > 127)


def test_jpeg_packing_is_smaller_close_and_keeps_masks_exact(sample_dir, tmp_path):
    lossless = packing.pack(sample_dir, tmp_path / "png.npz", "png")
    lossy = packing.pack(sample_dir, tmp_path / "jpg.npz", "jpeg90")
    assert lossy["bytes"] < 0.8 * lossless["bytes"]
    packing.unpack(tmp_path / "jpg.npz", tmp_path / "out")
    errors = []
    for path in sorted((sample_dir / "images").iterdir()):
        got = _read(tmp_path / "out", "images", path.name).astype(int)
        errors.append(np.abs(got - _read(sample_dir, "images", path.name)).mean())
        np.testing.assert_array_equal(_read(tmp_path / "out", "masks", path.name) > 127,
                                      _read(sample_dir, "masks", path.name) > 127)
    assert np.mean(errors) == pytest.approx(lossy["mean_abs_error"], rel=1e-6)
    assert np.mean(errors) < 2.0


def test_pack_names_a_missing_mask(sample_dir, tmp_path):
    folder = tmp_path / "d"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image = _read(sample_dir, "images", "1.png")
    cv2.imwrite(str(folder / "images" / "7.png"), image)
    assert packing.main(["pack", str(folder), str(tmp_path / "x.npz")]) == 2
    with pytest.raises(ValueError, match="7.png: no mask"):
        packing.pack(folder, tmp_path / "x.npz")


def test_weight_shards_rebuild_the_model_within_bfloat16_rounding(tmp_path):
    from benchmarks.gpu.weights import load_shards, save_shards
    from unet_keras.config import ArchConfig
    from unet_keras.model import build_unet

    arch = ArchConfig(input_shape=(32, 32, 3), base_filters=4, depth=2)
    model = build_unet(arch)
    rng = np.random.default_rng(0)
    for w in model.weights:  # non-trivial batch-norm statistics too
        w.assign(rng.normal(0.5, 0.2, w.shape).astype(np.float32) ** 2 + 0.01)
    paths = save_shards(model, arch, tmp_path / "w", max_bytes=4000)
    shards = [p for p in paths if p.suffix == ".bin"]
    assert len(shards) > 1 and all(p.stat().st_size <= 4000 for p in shards)
    rebuilt = load_shards(tmp_path / "w")
    for a, b in zip(model.weights, rebuilt.weights, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2**-8)
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=0.05)
    shards[-1].write_bytes(shards[-1].read_bytes()[:-2])
    with pytest.raises(ValueError, match="missing or truncated"):
        load_shards(tmp_path / "w")


@pytest.mark.slow
def test_device_script_rehearsed_on_cpu_with_jax(sample_dir, tmp_path):
    """benchmarks/gpu/device_run.sh end to end, as on the GPU machine but tiny: TensorFlow is
    never imported, Table 1 and the native-resolution test table come back, with the weights,
    in at most 8 files of at most 16 MiB."""
    pytest.importorskip("jax")
    carry, out = tmp_path / "carry", tmp_path / "out"
    packing.pack(sample_dir, carry / "data" / "pool.npz", "jpeg90")
    packing.pack(sample_dir, carry / "data" / "test.npz", "webp")
    out.mkdir()
    env = dict(os.environ, CARRY=str(carry), WORK=str(tmp_path / "work"), OUT=str(out),
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO / "tests" / "no_tensorflow"))
    proc = subprocess.run(["bash", "benchmarks/gpu/device_run.sh", "1", "jax", "--tiny"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "throughput:" in proc.stdout and "images/s" in proc.stdout
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    assert "summary.json" in files and "results.tar.gz" in files
    assert any(f.startswith("weights-") for f in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "jax" and summary["tensorflow_imported"] is False
    assert 1 <= summary["epochs_done"] <= 2
    assert summary["throughput"]["images_per_s"] > 0
    test = summary["tables"]["test-native"]["all"]
    assert 0.0 <= test["dice"]["mean"] <= 1.0 and "by_size" in test
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    for needed in ("run/history.csv", "run/curves.png", "run/table1.md", "run/metrics.json",
                   "test-native/table1.md", "weights/weights.json"):
        assert f"./{needed}" in names, names
