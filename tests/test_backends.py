"""The same code under Keras' three backends: TensorFlow (the reference, in this process), JAX
and PyTorch (each in a subprocess with ``KERAS_BACKEND`` set, which must never import
TensorFlow).

TensorFlow is hidden from those subprocesses (tests/no_tensorflow), as on the GPU machine.

* one ``.keras`` file gives the same probabilities under the three backends (<= 1e-4);
* ``train.py`` on each backend, from the same weights (``--init-from``) on the same full
  batch, gives the same losses epoch by epoch (<= 2e-3 relative: float32 convolutions summed in
  different orders, through a few Adam steps);
* a model trained under JAX evaluates under TensorFlow to the Dice JAX measured (<= 1e-4), and
  ``unet-predict`` writes the same masks under every backend.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["jax", "torch"]
TINY = ["--base-filters", "4", "--depth", "2", "--image-size", "32"]


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def without_tensorflow(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a subprocess in which TensorFlow cannot be imported, as on the GPU machine
    (tests/no_tensorflow/sitecustomize.py), on the CPU."""
    paths = [str(REPO / "tests" / "no_tensorflow"), str(REPO), env.get("PYTHONPATH", "")]
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}


def run_backend(backend: str, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` under ``KERAS_BACKEND=backend``, with TensorFlow hidden."""
    if not _have(backend):
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    env = without_tensorflow({**os.environ, "KERAS_BACKEND": backend})
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, f"{backend}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


SCRIPT_PREDICT = """
import sys, numpy as np, keras
from unet_keras.inference import load_model
model = load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(model.predict(x, verbose=0), np.float32))
assert sys.modules.get("tensorflow") is None, "tensorflow was imported"
print(keras.backend.backend())
"""


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A small U-Net with non-trivial weights and batch-norm statistics, saved by TensorFlow."""
    from unet_keras.config import ArchConfig
    from unet_keras.model import build_unet

    path = tmp_path_factory.mktemp("backends") / "small.keras"
    model = build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2))
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
        elif "moving_mean" in w.path:
            w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    model.save(path)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_keras_file_same_probabilities_under_every_backend(small_model, tmp_path, backend):
    import keras

    from unet_keras.inference import load_model

    x = np.random.default_rng(1).random((2, 64, 48, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    reference = np.asarray(load_model(small_model).predict(x, verbose=0))
    assert keras.backend.backend() == "tensorflow"
    proc = run_backend(backend, ["-c", SCRIPT_PREDICT, str(small_model), str(tmp_path / "x.npy"),
                                 str(tmp_path / "y.npy")])
    assert proc.stdout.strip().splitlines()[-1] == backend
    got = np.load(tmp_path / "y.npy")
    assert got.shape == reference.shape == (2, 64, 48, 1)
    np.testing.assert_allclose(got, reference, atol=1e-4)


def _losses(run: Path) -> list[float]:
    with (run / "history.csv").open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def start_model(tmp_path_factory) -> Path:
    """The weights every backend's training starts from (TINY architecture, 32x32x3)."""
    from unet_keras.config import ArchConfig
    from unet_keras.model import build_unet

    path = tmp_path_factory.mktemp("start") / "start.keras"
    build_unet(ArchConfig(input_shape=(32, 32, 3), base_filters=4, depth=2)).save(path)
    return path


def _train_args(data: Path, start: Path, out: Path) -> list[str]:
    # One full batch of 8 slices per epoch, no augmentation, no shuffle effect: the loss path
    # depends only on the maths of the model, loss and optimizer.
    return ["train.py", "--data", str(data), "--output", str(out), *TINY, "--batch-size", "8",
            "--epochs", "3", "--no-augment", "--init-from", str(start), "--val-fraction", "0.2",
            "--test-fraction", "0", "--split-by", "image", "--mixed-precision", "off", "--quiet"]


@pytest.fixture(scope="module")
def eight_slices(sample_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "eight"
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True)
        for path in sorted((sample_dir / kind).iterdir())[:10]:
            (root / kind / path.name).write_bytes(path.read_bytes())
    return root


@pytest.fixture(scope="module")
def tf_run(eight_slices, start_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tf") / "run"
    proc = subprocess.run([sys.executable, *_train_args(eight_slices, start_model, out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_training_from_the_same_weights_gives_the_same_losses(eight_slices, start_model, tf_run,
                                                              tmp_path, backend):
    out = tmp_path / "run"
    proc = run_backend(backend, _train_args(eight_slices, start_model, out))
    assert f"backend {backend}" in proc.stdout + proc.stderr
    reference, got = _losses(tf_run), _losses(out)
    assert len(got) == len(reference) == 3
    np.testing.assert_allclose(got, reference, rtol=2e-3)
    assert json.loads((out / "config.json").read_text())["backend"] == backend


@pytest.mark.slow
def test_a_model_trained_under_jax_evaluates_the_same_under_tensorflow(eight_slices, start_model,
                                                                      tmp_path):
    out = tmp_path / "run"
    run_backend("jax", _train_args(eight_slices, start_model, out))
    run_backend("jax", ["evaluate.py", str(out), "--output", str(tmp_path / "jax-eval"),
                        "--quiet"])
    jax_metrics = json.loads((tmp_path / "jax-eval" / "metrics.json").read_text())
    from unet_keras.evaluation import evaluate

    tf_metrics = evaluate(run_dir=out, output=tmp_path / "tf-eval", log=lambda *a: None)
    assert set(jax_metrics) == set(tf_metrics) and jax_metrics
    for split in tf_metrics:
        for key in ("dice", "iou"):
            assert jax_metrics[split][key]["mean"] == pytest.approx(
                tf_metrics[split][key]["mean"], abs=1e-4)
        assert jax_metrics[split]["dice_global"] == pytest.approx(
            tf_metrics[split]["dice_global"], abs=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unet_predict_writes_the_same_masks_under_every_backend(small_model, sample_dir,
                                                                tmp_path, backend):
    image = sorted((sample_dir / "images").iterdir())[0]
    script = "from unet_keras.cli.predict import main; import sys; sys.exit(main())"
    reference = tmp_path / "tf"
    proc = subprocess.run([sys.executable, "-c", script, "--model", str(small_model), str(image),
                           "-o", str(reference)], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / backend
    run_backend(backend, ["-c", script, "--model", str(small_model), str(image), "-o", str(out)])
    masks = sorted(p.relative_to(reference) for p in reference.rglob("*.png"))
    assert masks and masks == sorted(p.relative_to(out) for p in out.rglob("*.png"))
    for rel in masks:
        a = cv2.imread(str(reference / rel), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED)
        # probabilities agree to 1e-4, so at most a handful of pixels sit on the threshold
        assert a.shape == b.shape and np.mean(a != b) < 1e-3
