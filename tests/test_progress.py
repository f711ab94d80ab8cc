"""Progress display (issue 15, item 5): Keras' bar with ETA while training on a terminal, one
line per epoch into files and pipes, nothing with ``--quiet``; tqdm bars on stderr for
evaluation and ``unet-predict``, only when stderr is a terminal and ``--quiet`` is not given.

"Terminal" is checked two ways: a stand-in stream whose ``isatty()`` is true (what tqdm and
:func:`~unet_keras.training.fit_verbosity` ask), and a real pseudo-terminal (``pty``) for one
``unet-predict`` run in its own process.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import keras
import numpy as np
import pytest

from unet_keras import evaluation, scoring, training
from unet_keras.cli import predict as predict_cli
from unet_keras.cli import train as train_cli
from unet_keras.config import ArchConfig, TrainConfig
from unet_keras.inference import predict_batch
from unet_keras.model import build_unet

REPO = Path(__file__).resolve().parents[1]


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(0)
    model = build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2))
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def test_fit_verbosity_follows_the_stream_and_quiet():
    main_fd, other_fd = pty.openpty()
    try:
        with os.fdopen(other_fd, "w", closefd=False) as terminal:
            assert training.fit_verbosity(stream=terminal) == 1  # Keras' bar with ETA
            assert training.fit_verbosity(quiet=True, stream=terminal) == 0
    finally:
        os.close(main_fd)
        os.close(other_fd)
    assert training.fit_verbosity(stream=io.StringIO()) == 2  # one line per epoch
    assert training.fit_verbosity(quiet=True, stream=io.StringIO()) == 0


class StopFit(Exception):
    pass


@pytest.mark.parametrize("quiet, stdout, expected", [
    (False, FakeTerminal, 1), (False, io.StringIO, 2), (True, FakeTerminal, 0)])
def test_train_passes_the_verbosity_to_fit(quiet, stdout, expected, tmp_path, monkeypatch):
    seen = {}

    def fit(self, *args, verbose="auto", **kwargs):
        seen["verbose"] = verbose
        raise StopFit

    monkeypatch.setattr(keras.Model, "fit", fit)
    monkeypatch.setattr(sys, "stdout", stdout())
    cfg = TrainConfig(epochs=1, image_size=32, arch=ArchConfig(base_filters=4, depth=2),
                      batch_size=4, output=str(tmp_path / "run"))
    with pytest.raises(StopFit):
        training.train(cfg, log=lambda *_: None, quiet=quiet)
    assert seen["verbose"] == expected


def test_train_cli_quiet_reaches_train(monkeypatch):
    seen = {}

    def train(cfg, quiet=False):
        seen["quiet"] = quiet
        raise KeyboardInterrupt  # the CLI turns it into exit code 130

    monkeypatch.setattr(training, "train", train)
    assert train_cli.main(["--quiet", "--output", "x"]) == 130
    assert seen == {"quiet": True}
    assert train_cli.main(["--output", "x"]) == 130
    assert seen == {"quiet": False}


def test_evaluation_bar_only_on_a_terminal_and_same_numbers(tiny_model_file, monkeypatch):
    model = keras.saving.load_model(tiny_model_file)
    images = np.random.default_rng(0).random((scoring.PROGRESS_CHUNK + 5, 32, 32, 3),
                                             dtype=np.float32)
    expected = predict_batch(model, images)

    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    probs = scoring.predict_split(model, images, progress=True, desc="val split")
    np.testing.assert_array_equal(probs, expected)
    shown = terminal.getvalue()
    assert "val split" in shown and f"/{len(images)} [" in shown

    for progress, stream in ((False, FakeTerminal()), (True, io.StringIO())):
        monkeypatch.setattr(sys, "stderr", stream)
        np.testing.assert_array_equal(
            scoring.predict_split(model, images, progress=progress), expected)
        assert stream.getvalue() == ""


def test_evaluate_shows_a_bar_per_split(tiny_model_file, sample_dir, tmp_path, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    evaluation.evaluate(model_path=tiny_model_file, data=str(sample_dir), image_size=32,
                        output=tmp_path / "eval", log=lambda *_: None, progress=True)
    assert "all split" in terminal.getvalue()
    quiet = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    evaluation.evaluate(model_path=tiny_model_file, data=str(sample_dir), image_size=32,
                        output=tmp_path / "eval2", log=lambda *_: None, progress=False)
    assert quiet.getvalue() == ""


def _three_slices(sample_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in sorted(os.listdir(sample_dir / "images"))[:3]:
        shutil.copy(sample_dir / "images" / name, folder / name)
    return folder


def test_predict_cli_bar_and_quiet(tiny_model_file, sample_dir, tmp_path, monkeypatch, capsys):
    inputs = _three_slices(sample_dir, tmp_path / "in")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert predict_cli.main([str(inputs), "--model", str(tiny_model_file),
                             "-o", str(tmp_path / "out")]) == 0
    assert "segmenting" in terminal.getvalue() and "/3 [" in terminal.getvalue()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("tumor px" in line for line in lines)

    quiet = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert predict_cli.main([str(inputs), "--model", str(tiny_model_file), "--quiet",
                             "-o", str(tmp_path / "out2")]) == 0
    assert "segmenting" not in quiet.getvalue()
    assert len(capsys.readouterr().out.splitlines()) == 3


def _run_with_stderr_on(argv: list[str], terminal: bool) -> tuple[str, str]:
    """Run ``argv`` with stdout to a pipe and stderr to a pseudo-terminal (or a pipe);
    return ``(stdout, stderr)``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if not terminal:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr
    main_fd, other_fd = pty.openpty()
    # a new pty is 0x0; tqdm sizes its bar to the terminal, like on a real 80-column one
    fcntl.ioctl(other_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=other_fd, env=env)
    os.close(other_fd)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=600)
    os.close(main_fd)
    assert proc.returncode == 0, seen.decode(errors="replace")
    return out.decode(), seen.decode(errors="replace")


@pytest.mark.slow
def test_predict_bar_in_a_real_terminal_not_in_a_pipe(tiny_model_file, sample_dir, tmp_path):
    inputs = _three_slices(sample_dir, tmp_path / "in")
    argv = [sys.executable, "-m", "unet_keras.cli.predict", str(inputs), "--model",
            str(tiny_model_file)]
    out, err = _run_with_stderr_on(argv + ["-o", str(tmp_path / "a")], terminal=True)
    assert "segmenting" in err and "/3 [" in err
    assert out.count("tumor px") == 3 and "\r" not in out  # stdout stays clean
    out, err = _run_with_stderr_on(argv + ["-o", str(tmp_path / "b")], terminal=False)
    assert "segmenting" not in err and "\r" not in err
    assert out.count("tumor px") == 3
