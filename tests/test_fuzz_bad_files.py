"""Issue 14's property test: generated bad files through the readers, ``unet-predict`` and the
web endpoint.

Cases (``badfiles``): random bytes under every suffix; every good format (PNG 8/16-bit, JPEG,
BMP, TIFF plain and zlib, ``.mat`` v7.3, v5 and v5 compressed) truncated at seeded random
points; wrong pixel types (complex, text) and shapes (stacks, 2 channels, 1x1, 3x3, 1x200);
NaN / inf; huge declared dimensions (PNG, TIFF, JPEG, BMP, ``.mat``). The properties:

* readers: a bad file raises :class:`DataError` whose one-line message starts with the file's
  name; a truncated file either does the same or (cut only in trailing bytes no pixel needs)
  reads back exactly the original pixels: never a silent wrong answer;
* ``unet-predict``: exit 2, exactly one stderr line ``error: <path>: ...``, no traceback, no
  output file or folder left behind;
* web: a 4xx answer whose ``detail`` is one line naming the file, nothing spooled to disk, and
  the server still answers ``/api/health`` and segments a good slice afterwards.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import badfiles  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from unet_keras import ArchConfig, build_unet  # noqa: E402
from unet_keras.cli import predict as predict_cli  # noqa: E402
from unet_keras.data import DataError, read_image_bytes, read_image_file  # noqa: E402
from unet_keras.web.app import create_app  # noqa: E402

BAD = badfiles.bad_files()
VALID = badfiles.valid_files()


def truncations(seed: int = 14, per_file: int = 6) -> dict[str, tuple[str, bytes, bytes]]:
    """``case -> (name, truncated bytes, the whole file)``: seeded random cut points plus the
    first byte, the first half and all but the last byte of every good file."""
    rng = np.random.default_rng(seed)
    out = {}
    for fmt, (name, data) in VALID.items():
        cuts = {1, len(data) // 2, len(data) - 1,
                *rng.integers(2, len(data) - 1, per_file).tolist()}
        for cut in sorted(cuts):
            out[f"{fmt} cut at {cut} of {len(data)}"] = (f"cut{cut}-{name}", data[:cut], data)
    return out


TRUNCATED = truncations()


def one_line_naming(message: str, name: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(f"{name}: "), message


@pytest.mark.parametrize("case", list(BAD))
def test_readers_refuse_bad_files(case, tmp_path):
    name, data, words = BAD[case]
    path = tmp_path / name
    path.write_bytes(data)
    for read, label in ((lambda: read_image_bytes(data, name), name),
                        (lambda: read_image_file(path), str(path))):
        with pytest.raises(DataError) as info:
            read()
        one_line_naming(str(info.value), label)
        for word in words:
            assert word in str(info.value)


@pytest.mark.parametrize("case", list(TRUNCATED))
def test_truncated_files_are_refused_or_read_exactly(case):
    name, data, whole = TRUNCATED[case]
    original = read_image_bytes(whole, name)
    try:
        image = read_image_bytes(data, name)
    except DataError as exc:
        one_line_naming(str(exc), name)
    else:  # only trailing bytes no pixel needs were cut
        np.testing.assert_array_equal(image, original)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)).save(path)
    return path


# One file of each kind through the whole CLI (each run loads the model).
CLI_CASES = ["random bytes .png 0", "random bytes .mat 1", "nan tiff", "complex tiff",
             "multi-page tiff", "3-D mat", "3x3 png", "png bomb", "jpeg bomb", "mat bomb",
             "gif named png"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_predict_cli_on_bad_files(case, tmp_path, model_file, capfd):
    name, data, words = BAD[case]
    path = tmp_path / "in" / name
    path.parent.mkdir()
    path.write_bytes(data)
    out = tmp_path / "out"
    assert predict_cli.main([str(path), "-o", str(out), "--model", str(model_file)]) == 2
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {path}: ") and "Traceback" not in captured.err
    for word in words:
        assert word in lines[0]
    assert not out.exists()
    assert {p.name for p in tmp_path.rglob("*")} == {"in", name}


@pytest.fixture(scope="module")
def client(model_file):
    with TestClient(create_app(model_file)) as c:
        yield c


def test_web_endpoint_on_every_bad_file(client, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where an upload would be spooled
    cases = {**{k: (n, d) for k, (n, d, _) in BAD.items()},
             **{k: (n, d) for k, (n, d, whole) in TRUNCATED.items()
                if _refused(d, n)}}
    statuses = {}
    for case, (name, data) in cases.items():
        r = client.post("/api/segment", files={"file": (name, data)})
        statuses[case] = r.status_code
        assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail, (case, detail)
        assert name in detail and "Traceback" not in detail, (case, detail)
        if r.status_code == 422:  # (415: a type the page does not take, e.g. .bmp)
            for word in BAD.get(case, ("", b"", []))[2]:
                assert word in detail, (case, detail)
        r = client.post("/api/dice", files={"truth": (name, data),
                                            "image": ("ok.png", VALID["png"][1])})
        assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
        assert client.get("/api/health").json()["status"] == "ok"
    assert list(spool.iterdir()) == []
    assert len(statuses) > 60
    good = client.post("/api/segment", files={"file": VALID["png"]})
    assert good.status_code == 200 and good.json()["width"] == 64


def _refused(data: bytes, name: str) -> bool:
    try:
        read_image_bytes(data, name)
    except DataError:
        return True
    return False
