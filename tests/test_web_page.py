"""What the page needs from the server (issue 15, items 9 and 10), without a browser:

* the agreement overlay of ``POST /api/dice``: every pixel's colour class (true positive, false
  positive, false negative, neither) read off its channel order and checked against numpy's
  ``truth & pred`` etc., black-slice pixels of known colour, and the legend colours the page
  gets from ``GET /api/model``;
* the run name instead of the server path, the model card page, the favicon, the research-use
  notice.

The model is a tiny untrained size-agnostic U-Net whose head bias is shifted so that a chosen
fraction of a real slice comes out as "tumor"; the slices and masks are the bundled real ones.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

import unet_keras  # noqa: E402
from unet_keras import ArchConfig, build_unet, predict_any_size  # noqa: E402
from unet_keras.data import SAMPLE_DIR  # noqa: E402
from unet_keras.data.preprocess import preprocess_image  # noqa: E402
from unet_keras.inference import BUNDLED_MODEL  # noqa: E402
from unet_keras.web.app import agreement_overlay, create_app  # noqa: E402
from unet_keras.web.model_info import run_name  # noqa: E402

ARCH = ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)
IMAGES, MASKS = SAMPLE_DIR / "images", SAMPLE_DIR / "masks"


def shifted_unet(gray: np.ndarray, tumor_fraction: float) -> keras.Model:
    """The tiny U-Net with its head bias set so ``tumor_fraction`` of ``gray`` is tumor
    (0: nothing, 1: everything)."""
    keras.utils.set_random_seed(0)
    model = build_unet(ARCH)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    if tumor_fraction in (0.0, 1.0):
        head.set_weights([kernel, bias + (50.0 if tumor_fraction else -50.0)])
        return model
    x = preprocess_image(gray, None, 3)
    features = keras.Model(model.input, head.input)(x[None], training=False)
    logits = np.asarray(features)[0] @ kernel[0, 0] + bias  # the head is a 1x1 conv
    head.set_weights([kernel, bias - np.quantile(logits, 1 - tumor_fraction) - 1e-6])
    return model


def read_gray(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def decode_rgb(url: str) -> np.ndarray:
    """``data:image/png;base64,...`` of an RGB image -> uint8 ``(H, W, 3)`` RGB."""
    assert url.startswith("data:image/png;base64,")
    bgr = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8),
                       cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colour_classes(rgb: np.ndarray) -> np.ndarray:
    """Each pixel's class by the order of its channels, independent of the exact blend:
    0 grey (R = G = B), 1 true positive (G > B > R, green-teal), 2 false positive
    (R > G > B, orange), 3 false negative (B > G > R, blue); -1 anything else."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    out = np.full(r.shape, -1)
    out[(r == g) & (g == b)] = 0
    out[(g > b) & (b > r)] = 1
    out[(r > g) & (g > b)] = 2
    out[(b > g) & (g > r)] = 3
    return out


def expected_classes(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    t, p = truth.astype(bool), pred.astype(bool)
    return np.select([t & p, p & ~t, t & ~p], [1, 2, 3], default=0)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[k:k + 2], 16) for k in (1, 3, 5))


@pytest.fixture(scope="module")
def slice_1() -> dict:
    return {"image": (IMAGES / "1.png").read_bytes(), "mask": (MASKS / "1.png").read_bytes(),
            "gray": read_gray(IMAGES / "1.png"),
            "truth": (read_gray(MASKS / "1.png") > 127).astype(np.uint8)}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, slice_1):
    """A run folder ``glioma-run-7/model.keras`` whose model marks 10% of slice 1 as tumor."""
    run = tmp_path_factory.mktemp("runs") / "glioma-run-7"
    run.mkdir()
    shifted_unet(slice_1["gray"], 0.1).save(run / "model.keras")
    return run


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir / "model.keras")) as c:
        yield c


# --- the agreement overlay ---------------------------------------------------------------------

def test_agreement_overlay_known_pixels():
    """A black slice: each class is its colour at 55%; a grey slice shows through unchanged
    where neither mask has tumor."""
    truth = np.zeros((6, 8), np.uint8)
    pred = np.zeros((6, 8), np.uint8)
    truth[1:4, 1:5] = 1
    pred[2:5, 3:7] = 1  # overlap: rows 2-3, cols 3-4
    black = agreement_overlay(np.zeros((6, 8, 3), np.float32), truth, pred)
    assert black.dtype == np.uint8 and black.shape == (6, 8, 3)
    assert tuple(black[2, 3]) == (0, 110, 77)     # TP: 0.55 * (0, 200, 140)
    assert tuple(black[4, 6]) == (140, 77, 0)     # FP: 0.55 * (255, 140, 0)
    assert tuple(black[1, 1]) == (33, 60, 140)    # FN: 0.55 * (60, 110, 255), rounded
    assert tuple(black[0, 0]) == (0, 0, 0)
    grey = agreement_overlay(np.full((6, 8, 1), 0.4, np.float32), truth, pred)
    assert tuple(grey[0, 0]) == (102, 102, 102)
    assert tuple(grey[2, 3]) == (46, 156, 123)    # 0.45 * 102 + 0.55 * (0, 200, 140)
    np.testing.assert_array_equal(colour_classes(grey), expected_classes(truth, pred))


def test_dice_answers_agreement_overlay_of_the_same_prediction(client, slice_1, run_dir):
    r = client.post("/api/dice", files={"truth": ("1_mask.png", slice_1["mask"]),
                                        "image": ("1.png", slice_1["image"])})
    assert r.status_code == 200, r.text
    out = r.json()
    model = keras.models.load_model(run_dir / "model.keras")
    x = preprocess_image(slice_1["gray"], None, 3)
    pred = (predict_any_size(model, x) >= 0.5).astype(np.uint8)
    truth = slice_1["truth"]
    t, p = truth.astype(bool), pred.astype(bool)
    assert out["true_positive_px"] == int((t & p).sum()) > 0
    assert out["false_positive_px"] == int((p & ~t).sum()) > 0
    assert out["false_negative_px"] == int((t & ~p).sum()) > 0
    assert out["dice"] == unet_keras.dice_per_image(truth, pred)[0]
    assert out["dice"] == pytest.approx(
        2 * out["true_positive_px"] / (2 * out["true_positive_px"] + out["false_positive_px"]
                                       + out["false_negative_px"]))
    rgb = decode_rgb(out["agreement"])
    assert rgb.shape == (512, 512, 3)
    np.testing.assert_array_equal(colour_classes(rgb), expected_classes(truth, pred))
    # Where neither has tumor, the slice as the model saw it.
    slice_seen = np.round(x[..., 0] * 255).astype(np.uint8)
    neither = ~t & ~p
    np.testing.assert_array_equal(rgb[neither][:, 0], slice_seen[neither])


@pytest.mark.parametrize("fraction", [1.0, 0.0], ids=["everything", "nothing"])
def test_agreement_all_or_nothing_predicted(tmp_path, slice_1, fraction):
    """A model that marks everything (nothing) as tumor: the truth is all true positive (false
    negative), the rest false positive (untouched)."""
    shifted_unet(slice_1["gray"], fraction).save(tmp_path / "m.keras")
    with TestClient(create_app(tmp_path / "m.keras")) as c:
        out = c.post("/api/dice", files={"truth": ("t.png", slice_1["mask"]),
                                         "image": ("1.png", slice_1["image"])}).json()
    truth_px = int(slice_1["truth"].sum())
    other = 512 * 512 - truth_px
    expected = ({"true_positive_px": truth_px, "false_positive_px": other,
                 "false_negative_px": 0, "dice": 2 * truth_px / (truth_px + 512 * 512)}
                if fraction else
                {"true_positive_px": 0, "false_positive_px": 0, "false_negative_px": truth_px,
                 "dice": 0.0})
    assert {k: out[k] for k in expected} == pytest.approx(expected)
    classes = colour_classes(decode_rgb(out["agreement"]))
    on_truth = 1 if fraction else 3
    assert (classes[slice_1["truth"] == 1] == on_truth).all()
    assert (classes[slice_1["truth"] == 0] == (2 if fraction else 0)).all()


def test_dice_with_a_prediction_mask_has_counts_but_no_overlay(client, slice_1):
    truth = slice_1["truth"]
    pred = np.zeros_like(truth)
    pred[200:260, 200:300] = 1
    ok, png = cv2.imencode(".png", pred * 255)
    out = client.post("/api/dice", files={"truth": ("t.png", slice_1["mask"]),
                                          "prediction": ("p.png", png.tobytes())}).json()
    t, p = truth.astype(bool), pred.astype(bool)
    assert out["agreement"] is None
    assert (out["true_positive_px"], out["false_positive_px"], out["false_negative_px"]) == (
        int((t & p).sum()), int((p & ~t).sum()), int((t & ~p).sum()))


def test_legend_colours_match_the_overlay(client):
    """The page colours its legend with ``agreement_colors``: each must fall in the class that
    the overlay's pixels of that kind fall in."""
    colours = client.get("/api/model").json()["agreement_colors"]
    assert set(colours) == {"true_positive", "false_positive", "false_negative"}
    for name, klass in (("true_positive", 1), ("false_positive", 2), ("false_negative", 3)):
        swatch = np.array([[hex_rgb(colours[name])]], np.uint8)
        assert colour_classes(swatch)[0, 0] == klass, (name, colours[name])


# --- run name, model card, favicon, notice -----------------------------------------------------

def test_model_is_named_by_its_run_folder(client, run_dir, tmp_path):
    info = client.get("/api/model").json()
    assert info["run_name"] == "glioma-run-7"
    assert info["model_card_url"] == "/model-card"
    assert run_name(run_dir) == run_name(run_dir / "model.keras") == "glioma-run-7"
    assert run_name(BUNDLED_MODEL) == "sample"
    assert str(tmp_path.parent) not in info["run_name"]


def test_model_card_missing_is_a_clear_404(client, run_dir):
    assert not (run_dir / "MODEL_CARD.md").exists()
    r = client.get("/model-card")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "glioma-run-7" in r.text and "no model card" in r.text and "MODEL_CARD.md" in r.text
    assert str(run_dir) not in r.text


def test_model_card_is_served_escaped(tmp_path, run_dir):
    run = tmp_path / "carded"
    run.mkdir()
    (run / "model.keras").write_bytes((run_dir / "model.keras").read_bytes())
    with TestClient(create_app(run)) as c:
        assert c.get("/model-card").status_code == 404
        # Written while the server runs: read on each request.
        (run / "MODEL_CARD.md").write_text("# Model card\n\nResearch use only <script>x</script>"
                                           " & not for diagnosis.\n", encoding="utf-8")
        r = c.get("/model-card")
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "# Model card" in r.text
    assert "&lt;script&gt;x&lt;/script&gt; &amp; not for diagnosis." in r.text
    assert "<script>" not in r.text
    assert 'href="/"' in r.text


def test_favicon_is_an_icon(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00"  # ICO header: reserved 0, type 1 (icon)
    icon = Image.open(io.BytesIO(r.content))
    assert icon.format == "ICO"
    assert {(16, 16), (32, 32)} <= set(icon.info["sizes"])


def test_page_says_research_only_and_links_the_card(client):
    html = client.get("/").text
    assert "For research only, not for" in html and "diagnosis" in html
    assert 'href="/model-card"' in html
    assert 'rel="icon" href="/favicon.ico"' in html
    for field in ("segment-error", "dice-error", "batch-error"):
        assert f'id="{field}"' in html
    assert 'id="batch-input" multiple' in html and "webkitdirectory" in html


def test_the_page_uses_the_model_s_own_threshold(tmp_path):
    from unet_keras.config import ArchConfig
    from unet_keras.model import build_unet
    from unet_keras.model_meta import ModelMeta, write_model_meta

    arch = ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)
    path = tmp_path / "run" / "model.keras"
    path.parent.mkdir()
    build_unet(arch).save(path)
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), image_size=64, threshold=0.35))
    with TestClient(create_app(path)) as c:
        assert c.get("/api/model").json()["threshold"] == 0.35
        assert c.get("/api/model").json()["tta"] is False
    with TestClient(create_app(path, threshold=0.6)) as c:
        assert c.get("/api/model").json()["threshold"] == 0.6


def test_the_page_uses_the_model_s_own_flip_tta_choice(tmp_path):
    from unet_keras.data.preprocess import preprocess_image
    from unet_keras.model_meta import ModelMeta, write_model_meta

    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    path = tmp_path / "run" / "model.keras"
    path.parent.mkdir()
    model = build_unet(arch)
    model.save(path)
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), image_size=None, threshold=0.5,
                                     tta=True))
    image = (np.random.default_rng(2).random((32, 32)) * 255).astype(np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    x = preprocess_image(image, image_size=None, channels=1)[None]

    def forward(a):
        return np.asarray(model.predict_on_batch(np.ascontiguousarray(a)))[..., 0]

    flips = (forward(x) + forward(x[:, :, ::-1])[:, :, ::-1] + forward(x[:, ::-1])[:, ::-1]) / 3
    areas = {}
    for tta, probs in ((None, flips[0]), (False, forward(x)[0])):
        with TestClient(create_app(path, tta=tta)) as c:
            assert c.get("/api/model").json()["tta"] is (tta is None)
            out = c.post("/api/segment", files={"file": ("s.png", io.BytesIO(png))}).json()
        assert out["tta"] is (tta is None)
        # the served copy folds batch norm: pixels within 1e-4 of the cut may go either way
        area = out["tumor_area_px"]
        assert (probs >= 0.5 + 1e-4).sum() <= area <= (probs >= 0.5 - 1e-4).sum()
        areas[tta] = area
    assert abs(areas[None] - areas[False]) > 10  # TTA changed the mask: the check can fail


def fresh_model_and_slice(tmp_path, seed: int) -> tuple[ArchConfig, Path, bytes, np.ndarray]:
    """A fresh size-free U-Net saved to ``tmp_path/run/model.keras``, a random 32x32 slice as
    PNG bytes, and the model's probabilities for it: ``(arch, path, png, probs)``."""
    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    path = tmp_path / "run" / "model.keras"
    path.parent.mkdir()
    model = build_unet(arch)
    model.save(path)
    image = (np.random.default_rng(seed).random((32, 32)) * 255).astype(np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    probs = np.asarray(model.predict_on_batch(
        preprocess_image(image, image_size=None, channels=1)[None]))[0, ..., 0]
    return arch, path, png, probs


def test_the_page_uses_the_model_s_own_postprocessing(tmp_path):
    from scipy import ndimage

    from unet_keras.model_meta import ModelMeta, write_model_meta

    arch, path, png, probs = fresh_model_and_slice(tmp_path, seed=3)
    t = float(np.quantile(probs, 0.7))  # several regions at this cut
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), threshold=t, keep_largest=True))
    labels, n = ndimage.label(probs >= t, structure=np.ones((3, 3)))
    sizes = np.sort(np.bincount(labels.ravel())[1:])
    assert n > 1 and sizes[-1] > sizes[-2] + 2  # so the two masks below differ for sure
    for postprocess, area in ((None, sizes[-1]), (False, sizes.sum())):
        with TestClient(create_app(path, postprocess=postprocess)) as c:
            info = c.get("/api/model").json()
            out = c.post("/api/segment", files={"file": ("s.png", io.BytesIO(png))}).json()
        assert info["keep_largest"] is (postprocess is None) and info["fallback"] == 0.0
        assert ("largest region" in out["postprocess"]) is (postprocess is None)
        # the served copy folds batch norm: allow a pixel or two at the cut
        assert abs(out["tumor_area_px"] - area) <= 2


def test_segment_says_when_its_mask_is_a_best_guess(tmp_path):
    from unet_keras.model_meta import ModelMeta, write_model_meta

    arch, path, png, probs = fresh_model_and_slice(tmp_path, seed=4)
    above = float(probs.max()) + 0.05  # no pixel reaches it
    for threshold, fallback, guessed in ((above, 0.1, True), (above, 0.0, False),
                                         (float(np.median(probs)), 0.1, False)):
        write_model_meta(path, ModelMeta(arch=arch.to_dict(), threshold=threshold,
                                         fallback=fallback))
        truth = cv2.imencode(".png", np.zeros((32, 32), np.uint8))[1].tobytes()
        with TestClient(create_app(path)) as c:
            out = c.post("/api/segment", files={"file": ("s.png", io.BytesIO(png))}).json()
            scored = c.post("/api/dice", files={"truth": ("t.png", io.BytesIO(truth)),
                                                "image": ("s.png", io.BytesIO(png))}).json()
            given = c.post("/api/dice", files={"truth": ("t.png", io.BytesIO(truth)),
                                               "prediction": ("p.png", io.BytesIO(truth))})
        assert out["best_guess"] is guessed and scored["best_guess"] is guessed
        assert given.json()["best_guess"] is None  # a given mask: not the model's to say
        assert (out["tumor_area_px"] > 0) is (guessed or fallback == 0.1)
        assert scored["predicted_area_px"] == out["tumor_area_px"]
