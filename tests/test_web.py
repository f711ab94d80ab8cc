"""The web API (issue 6): every endpoint, every bad input, Dice against unet_keras in-process,
nothing written to disk, and a bounded load check over loopback.

The model is a tiny untrained size-agnostic U-Net whose head bias is shifted so that up to 10%
of a real slice comes out as "tumor" (a non-trivial mask); the slices are the bundled real ones.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import httpx  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import starlette.formparsers  # noqa: E402
import tifffile  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import unet_keras  # noqa: E402,F401 - registers the custom objects
from benchmarks.loadcheck import run_load  # noqa: E402
from benchmarks.loopback import serve_in_thread  # noqa: E402
from unet_keras import ArchConfig, build_unet, predict_any_size  # noqa: E402
from unet_keras.cli import serve  # noqa: E402
from unet_keras.data import SAMPLE_DIR  # noqa: E402
from unet_keras.data.figshare import write_figshare_mat  # noqa: E402
from unet_keras.data.preprocess import preprocess_image  # noqa: E402
from unet_keras.web import app as web_app  # noqa: E402
from unet_keras.web.app import create_app  # noqa: E402
from unet_keras.web.segmenter import Segmenter  # noqa: E402

ARCH = ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)
MAX_UPLOAD = 3 * 2**20
IMAGES, MASKS = SAMPLE_DIR / "images", SAMPLE_DIR / "masks"


def tiny_model(slice_png: bytes, tumor_fraction: float = 0.1) -> keras.Model:
    """The tiny U-Net with its head bias set so ``tumor_fraction`` of the slice is tumor."""
    keras.utils.set_random_seed(0)
    model = build_unet(ARCH)
    x = preprocess_image(cv2.imdecode(np.frombuffer(slice_png, np.uint8), 0), None, 3)
    head = model.get_layer("head")
    features = keras.Model(model.input, head.input)(x[None], training=False)
    kernel, bias = head.get_weights()
    logits = np.asarray(features)[0] @ kernel[0, 0] + bias  # the head is a 1x1 conv
    # Strictly above the quantile: ReLUs that are dead at random init tie many logits at 0.
    head.set_weights([kernel, bias - np.quantile(logits, 1 - tumor_fraction) - 1e-6])
    return model


def decode_data_url(url: str) -> np.ndarray:
    """``data:image/png;base64,...`` -> the decoded array (grayscale or BGR)."""
    assert url.startswith("data:image/png;base64,")
    return cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8),
                        cv2.IMREAD_UNCHANGED)


def png_bytes(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


@pytest.fixture(scope="module")
def slice_1() -> dict:
    """Real slice 1 of the bundled sample: bytes, arrays, and the expected prediction."""
    image = (IMAGES / "1.png").read_bytes()
    mask = (MASKS / "1.png").read_bytes()
    return {"image": image, "mask": mask,
            "gray": cv2.imdecode(np.frombuffer(image, np.uint8), 0),
            "truth": (cv2.imdecode(np.frombuffer(mask, np.uint8), 0) > 127).astype(np.uint8)}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, slice_1) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model(slice_1["image"]).save(path)
    return str(path)


@pytest.fixture(scope="module")
def reference(model_file):
    """The same model, loaded separately, predicting in this process (no server)."""
    model = keras.models.load_model(model_file)

    def predict(gray: np.ndarray) -> np.ndarray:
        return (predict_any_size(model, preprocess_image(gray, None, 3)) >= 0.5).astype(np.uint8)

    return predict


@pytest.fixture(scope="module")
def client(model_file):
    with TestClient(create_app(model_file, max_upload_bytes=MAX_UPLOAD)) as c:
        yield c


def segment(client, name: str, data: bytes) -> httpx.Response:
    return client.post("/api/segment", files={"file": (name, data)})


# --- /api/segment ------------------------------------------------------------------------------

def test_segment_real_slice_matches_in_process_prediction(client, slice_1, reference):
    r = segment(client, "1.png", slice_1["image"])
    assert r.status_code == 200, r.text
    out = r.json()
    expected = reference(slice_1["gray"])
    mask = decode_data_url(out["mask"])
    assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask // 255, expected)
    assert (out["width"], out["height"], out["filename"]) == (512, 512, "1.png")
    assert out["tumor_area_px"] == int(expected.sum())
    assert 2 < out["tumor_area_percent"] <= 10  # the head bias aims at 10%
    assert out["tumor_area_percent"] == pytest.approx(100 * expected.sum() / 512**2)
    # The slice as the model saw it: min-max scaled 8-bit, here the PNG itself (0..255 range).
    shown = decode_data_url(out["image"])
    assert shown.shape == (512, 512, 3)
    np.testing.assert_array_equal(shown[..., 0], slice_1["gray"])
    # Overlay: untouched gray away from the tumor, red-tinted inside, outline at the border.
    overlay = cv2.cvtColor(decode_data_url(out["overlay"]), cv2.COLOR_BGR2RGB).astype(int)
    kernel = np.ones((5, 5), np.uint8)
    outside = cv2.dilate(expected, kernel) == 0
    inside = cv2.erode(expected, kernel) == 1
    gray = slice_1["gray"].astype(int)
    for c in range(3):
        np.testing.assert_array_equal(overlay[..., c][outside], gray[outside])
    assert (overlay[..., 0][inside] > overlay[..., 1][inside]).all()
    border = (expected == 1) & ~inside
    yellow = (overlay[..., 0] == 255) & (overlay[..., 1] == 230) & (overlay[..., 2] == 0)
    assert yellow[border].mean() > 0.3


def test_segment_mat_tiff_jpeg_agree_with_png(client, slice_1, tmp_path):
    png = segment(client, "1.png", slice_1["image"]).json()
    expected = decode_data_url(png["mask"])
    write_figshare_mat(tmp_path / "1.mat", slice_1["gray"].astype(np.int16) * 7 - 100,
                       slice_1["truth"], label=1, pid="100360")
    mat = segment(client, "1.mat", (tmp_path / "1.mat").read_bytes())
    assert mat.status_code == 200, mat.text
    np.testing.assert_array_equal(decode_data_url(mat.json()["mask"]), expected)

    buf = io.BytesIO()
    tifffile.imwrite(buf, slice_1["gray"].astype(np.uint16) * 257)  # 16-bit TIFF
    tif = segment(client, "1.tif", buf.getvalue())
    assert tif.status_code == 200, tif.text
    agree = (decode_data_url(tif.json()["mask"]) == expected).mean()
    assert agree > 0.999

    jpg = segment(client, "1.jpg", cv2.imencode(".jpg", slice_1["gray"])[1].tobytes())
    assert jpg.status_code == 200, jpg.text
    assert (jpg.json()["width"], jpg.json()["height"]) == (512, 512)
    assert (decode_data_url(jpg.json()["mask"]) == expected).mean() > 0.9


def test_segment_any_size(client, slice_1, reference):
    crop = slice_1["gray"][37:370, 11:528]  # 333 x 501: no multiple of 4
    r = segment(client, "crop.png", png_bytes(crop))
    assert r.status_code == 200, r.text
    assert (r.json()["width"], r.json()["height"]) == (501, 333)
    np.testing.assert_array_equal(decode_data_url(r.json()["mask"]) // 255, reference(crop))


def test_uploads_over_one_mib_stay_in_memory(client, slice_1, monkeypatch):
    """Starlette spools file parts past 1 MiB to a temporary file; ours must not roll over."""
    rolled = []

    class Recording(starlette.formparsers.SpooledTemporaryFile):
        def rollover(self):
            rolled.append(True)
            super().rollover()

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", Recording)
    buf = io.BytesIO()
    big = np.tile(slice_1["gray"].astype(np.uint16) * 257, (2, 2))  # 1024x1024x2 B = 2 MiB
    tifffile.imwrite(buf, big)
    assert 2**20 < len(buf.getvalue()) < MAX_UPLOAD
    r = segment(client, "big.tif", buf.getvalue())
    assert r.status_code == 200, r.text
    assert r.json()["width"] == 1024
    assert rolled == []


# --- /api/dice ---------------------------------------------------------------------------------

def numpy_dice_iou(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    t, p = truth.astype(bool), pred.astype(bool)
    inter, total, union = (t & p).sum(), t.sum() + p.sum(), (t | p).sum()
    return 2 * inter / total, inter / union


def test_dice_with_image_equals_in_process(client, slice_1, reference):
    r = client.post("/api/dice", files={"truth": ("1_mask.png", slice_1["mask"]),
                                        "image": ("1.png", slice_1["image"])})
    assert r.status_code == 200, r.text
    out = r.json()
    pred = reference(slice_1["gray"])
    expected = unet_keras.dice_per_image(slice_1["truth"], pred)[0]
    assert out["dice"] == expected
    assert out["iou"] == unet_keras.iou_per_image(slice_1["truth"], pred)[0]
    assert (out["dice"], out["iou"]) == pytest.approx(numpy_dice_iou(slice_1["truth"], pred))
    assert 0.0 < out["dice"] < 1.0
    assert out["truth_area_px"] == int(slice_1["truth"].sum()) == 4569
    assert out["predicted_area_px"] == int(pred.sum())
    assert out["compared"] == "image"


def test_dice_with_predicted_mask_and_mat_truth(client, slice_1, tmp_path):
    seg = segment(client, "1.png", slice_1["image"]).json()
    mask_png = base64.b64decode(seg["mask"].split(",", 1)[1])
    by_image = client.post("/api/dice", files={"truth": ("t.png", slice_1["mask"]),
                                               "image": ("1.png", slice_1["image"])}).json()
    r = client.post("/api/dice", files={"truth": ("t.png", slice_1["mask"]),
                                        "prediction": ("1_mask.png", mask_png)})
    assert r.status_code == 200, r.text
    assert r.json()["dice"] == by_image["dice"]
    assert r.json()["compared"] == "prediction"
    write_figshare_mat(tmp_path / "1.mat", slice_1["gray"].astype(np.int16), slice_1["truth"],
                       label=1, pid="100360")
    r = client.post("/api/dice", files={"truth": ("1.mat", (tmp_path / "1.mat").read_bytes()),
                                        "prediction": ("1_mask.png", mask_png)})
    assert r.status_code == 200, r.text
    assert r.json()["dice"] == by_image["dice"]


def test_dice_empty_mask_rule(client, slice_1):
    empty = png_bytes(np.zeros((64, 48), np.uint8))
    blob = np.zeros((64, 48), np.uint8)
    blob[10:20, 5:25] = 255
    both_empty = client.post("/api/dice", files={"truth": ("t.png", empty),
                                                 "prediction": ("p.png", empty)}).json()
    assert (both_empty["dice"], both_empty["iou"]) == (1.0, 1.0)
    one_empty = client.post("/api/dice", files={"truth": ("t.png", empty),
                                                "prediction": ("p.png", png_bytes(blob))}).json()
    assert (one_empty["dice"], one_empty["iou"]) == (0.0, 0.0)
    half = blob.copy()
    half[10:20, 15:25] = 0  # 100 of the 200 pixels
    r = client.post("/api/dice", files={"truth": ("t.png", png_bytes(blob)),
                                        "prediction": ("p.png", png_bytes(half))}).json()
    assert (r["dice"], r["iou"]) == pytest.approx((2 * 100 / 300, 100 / 200))


# --- bad input: status, a sentence naming the problem, and the server keeps serving -----------

def _truncated_png(slice_1):
    return {"file": ("1.png", slice_1["image"][: len(slice_1["image"]) // 2])}


BAD_REQUESTS = {
    "gif": (lambda s: {"files": {"file": ("scan.gif", b"GIF89a" + bytes(100))}}, 415,
            ["scan.gif", "PNG, JPEG, TIFF"]),
    "text": (lambda s: {"files": {"file": ("notes.txt", b"hello")}}, 415, ["notes.txt"]),
    "json body": (lambda s: {"json": {"file": "1.png"}}, 415, ["multipart/form-data"]),
    "truncated png": (lambda s: {"files": _truncated_png(s)}, 422, ["1.png", "decode"]),
    "png named jpg": (lambda s: {"files": {"file": ("x.tif", s["image"])}}, 422, ["x.tif"]),
    "corrupt mat": (lambda s: {"files": {"file": ("9.mat", b"MATLAB 7.3" + bytes(600))}}, 422,
                    ["9.mat"]),
    "empty file": (lambda s: {"files": {"file": ("1.png", b"")}}, 422, ["1.png", "empty"]),
    "no file field": (lambda s: {"files": {"image": ("1.png", s["image"])}}, 422, ["'image'"]),
    "two files": (lambda s: {"files": [("file", ("a.png", s["image"])),
                                       ("file", ("b.png", s["image"]))]}, 422, ["file"]),
    "too large": (lambda s: {"files": {"file": ("big.png", bytes(MAX_UPLOAD + 1))}}, 413,
                  ["3 MB"]),
    "huge side": (lambda s: {"files": {"file": ("wide.png", png_bytes(np.zeros((40, 3000),
                                                                               np.uint8)))}},
                  422, ["3000x40", "2048"]),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_segment_bad_input(client, slice_1, case):
    make, status, words = BAD_REQUESTS[case]
    r = client.post("/api/segment", **make(slice_1))
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail
    for word in words:
        assert word in detail
    assert client.get("/api/health").json()["status"] == "ok"


def test_body_over_limit_without_content_length_is_413(client):
    """A chunked upload (no Content-Length) is cut off by counting while reading."""
    boundary = "xyz"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.png\"\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(MAX_UPLOAD // 2**16 + 2):
            yield bytes(2**16)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/api/segment", content=chunks(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    assert "3 MB" in r.json()["detail"]


BAD_DICE = {
    "size mismatch": (lambda s: {"truth": ("t.png", png_bytes(cv2.resize(s["truth"] * 255,
                                                                         (256, 256)))),
                                 "image": ("1.png", s["image"])}, ["256x256", "512x512"]),
    "prediction size mismatch": (
        lambda s: {"truth": ("t.png", s["mask"]),
                   "prediction": ("p.png", png_bytes(np.zeros((512, 500), np.uint8)))},
        ["500x512"]),
    "no truth": (lambda s: {"image": ("1.png", s["image"])}, ["'truth'"]),
    "image and prediction": (lambda s: {"truth": ("t.png", s["mask"]),
                                        "image": ("1.png", s["image"]),
                                        "prediction": ("p.png", s["mask"])}, ["exactly one"]),
    "truth only": (lambda s: {"truth": ("t.png", s["mask"])}, ["exactly one"]),
    "corrupt truth": (lambda s: {"truth": ("t.png", b"\x89PNG\r\n\x1a\n" + bytes(50)),
                                 "image": ("1.png", s["image"])}, ["t.png"]),
}


@pytest.mark.parametrize("case", list(BAD_DICE))
def test_dice_bad_input_is_422(client, slice_1, case):
    make, words = BAD_DICE[case]
    r = client.post("/api/dice", files=make(slice_1))
    assert r.status_code == 422, r.text
    for word in words:
        assert word in r.json()["detail"]


def test_dice_unsupported_truth_type_is_415(client, slice_1):
    r = client.post("/api/dice", files={"truth": ("t.bmpx", slice_1["mask"]),
                                        "image": ("1.png", slice_1["image"])})
    assert r.status_code == 415
    assert "t.bmpx" in r.json()["detail"]


def test_still_serving_after_bad_requests(client, slice_1, reference):
    for make, _, _ in BAD_REQUESTS.values():
        client.post("/api/segment", **make(slice_1))
    r = segment(client, "1.png", slice_1["image"])
    assert r.status_code == 200
    np.testing.assert_array_equal(decode_data_url(r.json()["mask"]) // 255,
                                  reference(slice_1["gray"]))


# --- /api/health, /api/model, /openapi.json, the page -----------------------------------------

def test_health(client, model_file):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "run_name": Path(model_file).parent.name, "pending": 0}
    assert str(Path(model_file).parent) not in r.text  # never the server's paths


def test_model_info(client, model_file):
    info = client.get("/api/model").json()
    assert info["run_name"] == Path(model_file).parent.name and "model_path" not in info
    assert info["architecture"] == ARCH.to_dict()
    assert info["parameters"] == build_unet(ARCH).count_params()
    assert info["max_upload_bytes"] == MAX_UPLOAD
    assert info["threshold"] == 0.5
    assert info["precision"] == "float32"
    assert info["run"] is None


def test_bfloat16_serving_agrees_with_float32(model_file, slice_1, reference):
    with TestClient(create_app(model_file, precision="bfloat16")) as c:
        assert c.get("/api/model").json()["precision"] == "bfloat16"
        r = segment(c, "1.png", slice_1["image"])
    assert r.status_code == 200, r.text
    mask = decode_data_url(r.json()["mask"]) // 255
    expected = reference(slice_1["gray"])
    assert mask.shape == expected.shape
    assert (mask == expected).mean() > 0.98
    assert abs(int(mask.sum()) - int(expected.sum())) < 0.1 * expected.sum()


def test_run_directory_model_reports_its_record(tmp_path, model_file):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(open(model_file, "rb").read())
    record = {"arch": ARCH.to_dict(), "train": {"epochs": 3}, "data_path": "data/sample"}
    (run / "config.json").write_text(json.dumps(record))
    with TestClient(create_app(run)) as c:
        info = c.get("/api/model").json()
    assert info["run"] == record
    assert info["architecture"] == ARCH.to_dict()
    assert info["run_name"] == "run" and str(tmp_path) not in json.dumps(info)


def test_openapi_schema_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/segment", "/api/dice", "/api/health", "/api/model"} <= set(schema["paths"])
    segment_body = schema["paths"]["/api/segment"]["post"]["requestBody"]["content"]
    assert segment_body["multipart/form-data"]["schema"]["required"] == ["file"]
    dice_props = (schema["paths"]["/api/dice"]["post"]["requestBody"]["content"]
                  ["multipart/form-data"]["schema"]["properties"])
    assert set(dice_props) == {"truth", "image", "prediction"}
    assert {"413", "415", "422"} <= set(schema["paths"]["/api/segment"]["post"]["responses"])
    assert "tumor_area_px" in schema["components"]["schemas"]["SegmentOut"]["properties"]


def test_page_and_assets_are_local(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert f'"{asset}"' in html
        assert client.get(asset).status_code == 200
    for text in (html, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


# --- the worker thread -------------------------------------------------------------------------

def test_segmenter_batches_mixed_sizes_correctly(model_file, slice_1):
    model = keras.models.load_model(model_file)
    a = preprocess_image(slice_1["gray"][100:356, 100:356], None, 3)
    b = preprocess_image(slice_1["gray"][100:300, 50:250], None, 3)
    images = [a, b, a[::-1].copy(), b[:, ::-1].copy()]
    segmenter = Segmenter(model, max_batch=8)
    try:
        futures = [segmenter.submit(x) for x in images]
        results = [f.result(timeout=60) for f in futures]
    finally:
        segmenter.close()
    for x, probs in zip(images, results, strict=True):
        want = predict_any_size(model, x)
        assert probs.shape == want.shape
        np.testing.assert_allclose(probs, want, atol=1e-5)
    with pytest.raises(RuntimeError, match="closed"):
        segmenter.submit(a)


# --- unet-serve --------------------------------------------------------------------------------

def test_serve_without_bundled_model_fails_in_one_line(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "saved_models" / "sample" / "model.keras"
    monkeypatch.setattr(web_app, "BUNDLED_MODEL", missing)
    assert serve.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and err.startswith("error:")
    assert "--model" in err


def test_serve_binds_loopback_by_default(monkeypatch, model_file, capsys):
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append((app, kw)))
    assert serve.main(["--model", model_file]) == 0
    assert calls[0][1]["host"] == "127.0.0.1" and calls[0][1]["port"] == 8000
    assert serve.main(["--model", model_file, "--host", "0.0.0.0", "--port", "9123"]) == 0
    assert (calls[1][1]["host"], calls[1][1]["port"]) == ("0.0.0.0", 9123)
    assert serve.main(["--model", model_file, "--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err


# --- load over loopback ------------------------------------------------------------------------

def test_load_check_over_loopback(model_file, slice_1):
    """Small and fast here (256x256 versions of 8 real slices); benchmarks/load_web.py runs
    the full 200 x 8."""
    files = [(p.name, png_bytes(cv2.resize(cv2.imread(str(p), 0), (256, 256),
                                           interpolation=cv2.INTER_AREA)))
             for p in sorted(IMAGES.glob("*.png"))[:8]]
    with serve_in_thread(create_app(model_file)) as url:
        assert httpx.get(f"{url}/api/health").json()["status"] == "ok"
        run_load(url, files[:1], requests=1, concurrency=1)  # warm-up
        report = run_load(url, files, requests=32, concurrency=8)
        after = httpx.post(f"{url}/api/segment", files={"file": ("1.png", slice_1["image"])})
    print(f"\nweb load check (tiny model, 256x256 slices, loopback): {report}")
    assert report.failures == 0, report.errors[:3]
    assert report.requests == 32 and report.p50_ms <= report.p95_ms <= report.max_ms
    assert after.status_code == 200
