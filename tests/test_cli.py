"""Bad input through every data-reading CLI: one line on stderr naming the file, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=180)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_pair(folder: Path, stem: str, image: np.ndarray, mask: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "images" / f"{stem}.png"), image)
    cv2.imwrite(str(folder / "masks" / f"{stem}.png"), mask)


@pytest.fixture
def bad_folders(tmp_path: Path, sample_dir: Path) -> dict[str, tuple[Path, str]]:
    """Each bad dataset and the file name its error must mention."""
    img = cv2.imread(str(next((sample_dir / "images").glob("*.png"))), 0)
    mask = np.zeros_like(img)
    mask[10:40, 10:40] = 255
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    for i in range(4):
        write_pair(corrupt, str(i), img, mask)
    (corrupt / "images" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    wrong = tmp_path / "wrong_size"
    for i in range(4):
        write_pair(wrong, str(i), img, mask if i != 1 else mask[:100, :100])
    return {
        "missing": (tmp_path / "does-not-exist", "does-not-exist"),
        "empty": (empty, "empty"),
        "corrupt": (corrupt, "2.png"),
        "wrong_size": (wrong, "1.png"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "wrong_size"])
def test_train_rejects_bad_data_with_one_line(bad_folders, tmp_path: Path, case: str):
    path, needle = bad_folders[case]
    proc = run("train.py", "--data", str(path), "--epochs", "1", "--base-filters", "4",
               "--depth", "2", "--image-size", "32", "--output", str(tmp_path / "run"))
    assert_one_line_error(proc, needle)


def test_evaluate_and_predict_reject_bad_input(bad_folders, tmp_path: Path):
    path, needle = bad_folders["corrupt"]
    model = tmp_path / "m.keras"
    proc = run("evaluate.py", "--model", str(model), "--data", str(path))
    assert_one_line_error(proc, "m.keras")
    proc = run("evaluate.py", str(tmp_path / "no-run"))
    assert_one_line_error(proc, "no-run")
    proc = run("-m", "unet_keras.cli.predict", str(path / "images" / "2.png"),
               "--model", str(model), "-o", str(tmp_path / "out"))
    assert_one_line_error(proc)
    proc = run("-m", "unet_keras.cli.predict", str(tmp_path / "nothing.png"))
    assert_one_line_error(proc, "nothing.png")
