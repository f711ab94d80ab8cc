"""End to end in headless Chromium (issues 6 and 15): the page, a real server on a loopback port,
real slices uploaded, at 1400x1000 (a laptop screen):

* one slice: the overlay and the area; its truth mask: the agreement overlay, whose true
  positive, false positive and false negative pixels (known from the same model in this process)
  carry the legend's colours, and the Dice and IoU == unet_keras's, visible without scrolling;
* errors shown next to the field that caused them;
* several slices (multi-select with ``_mask`` files, a ``.zip`` of ``images/`` + ``masks/``
  and a ``.mat``, a folder): the table's areas and Dice == unet_keras's, and their means;
* the run name, never the server path; the research-use notice; the favicon.

Needs Debian's ``chromium`` at ``/usr/bin/chromium`` (or ``$UNET_KERAS_CHROMIUM``) and the
``playwright`` package. Without them the test is skipped, saying what to install; under CI
(``CI=true``) it fails instead, so CI cannot pass without running it.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import unet_keras  # noqa: E402
from benchmarks.loopback import serve_in_thread  # noqa: E402
from unet_keras import ArchConfig, build_unet, predict_any_size  # noqa: E402
from unet_keras.data import SAMPLE_DIR  # noqa: E402
from unet_keras.data.figshare import write_figshare_mat  # noqa: E402
from unet_keras.data.preprocess import preprocess_image  # noqa: E402
from unet_keras.inference import inference_model  # noqa: E402
from unet_keras.web.app import create_app  # noqa: E402

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by require_browser(), which skips or fails
    expect = sync_playwright = None

CHROMIUM = os.environ.get("UNET_KERAS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1400, "height": 1000}
IMAGES, MASKS = SAMPLE_DIR / "images", SAMPLE_DIR / "masks"


def under_ci(environ=os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_browser(chromium: str = CHROMIUM, playwright_found: bool | None = None,
                    environ=os.environ) -> None:
    """Skip (locally) or fail (under CI) when Chromium or playwright is missing, saying how to
    install it."""
    if playwright_found is None:
        playwright_found = sync_playwright is not None
    missing = []
    if not playwright_found:
        missing.append('the playwright package: `pip install -e ".[dev]"`')
    if not Path(chromium).is_file():
        missing.append(f"Chromium at {chromium}: `sudo apt-get install -y chromium` (Debian; "
                       ".ci/run installs it), or point UNET_KERAS_CHROMIUM at a Chromium binary")
    if not missing:
        return
    reason = "the browser test needs " + "; and ".join(missing)
    if under_ci(environ):
        pytest.fail(f"{reason} (CI=true: the browser test must run in CI)")
    pytest.skip(reason)


def test_missing_browser_skips_locally_and_fails_under_ci(tmp_path):
    absent = str(tmp_path / "no-chromium")
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        require_browser(absent, True, environ={})
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_browser(absent, True, environ={"CI": "true"})
    with pytest.raises(pytest.skip.Exception, match=r"pip install -e \"\.\[dev\]\""):
        require_browser(absent, False, environ={"CI": "false"})
    present = tmp_path / "chromium"
    present.write_bytes(b"")
    require_browser(str(present), True, environ={"CI": "true"})  # nothing missing: no error


def probe_unet(gray: np.ndarray, truth: np.ndarray, tumor_fraction: float) -> keras.Model:
    """A tiny untrained U-Net whose 1x1 head is a least-squares fit of ``truth`` on its random
    features, cut so that ``tumor_fraction`` of ``gray`` is tumor: masks that overlap the truth
    in part, so that true positives, false positives and false negatives all show."""
    keras.utils.set_random_seed(0)
    model = build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2))
    head = model.get_layer("head")
    kernel, _ = head.get_weights()
    x = preprocess_image(gray, None, 3)
    features = np.asarray(keras.Model(model.input, head.input)(x[None], training=False))[0]
    a = np.concatenate([features.reshape(-1, features.shape[-1]),
                        np.ones((features[..., 0].size, 1), np.float32)], axis=1)
    w = np.linalg.lstsq(a, truth.ravel().astype(np.float64), rcond=None)[0]
    cut = np.quantile(a @ w, 1 - tumor_fraction)
    head.set_weights([w[:-1].reshape(kernel.shape).astype(np.float32),
                      np.array([w[-1] - cut], np.float32)])
    return model


def gray(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def truth_of(n: int) -> np.ndarray:
    return (gray(MASKS / f"{n}.png") > 127).astype(np.uint8)


def decode_rgb(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    data = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def css_rgb(value: str) -> np.ndarray:
    """``rgb(0, 200, 140)`` (a computed style) -> array."""
    return np.array([int(v) for v in re.findall(r"\d+", value)[:3]], np.float64)


def row_values(page, path: str) -> dict[str, str | None]:
    row = page.locator(f'#batch-rows tr[data-slice="{path}"]')
    return {k: row.locator(f"td.{k}").get_attribute("data-value")
            for k in ("area-px", "dice", "iou")}


@pytest.mark.slow
def test_page_in_chromium(tmp_path):
    require_browser()
    # --- the model, and what it predicts, in this process ---
    run = tmp_path / "glioma-run-3"
    run.mkdir()
    probe_unet(gray(IMAGES / "1.png"), truth_of(1), 0.025).save(run / "model.keras")
    # The server's forward pass (batch norm folded), in this process.
    model = inference_model(keras.models.load_model(run / "model.keras"), "float32")
    slices = {n: preprocess_image(gray(IMAGES / f"{n}.png"), None, 3) for n in range(1, 8)}
    preds = {n: (predict_any_size(model, x) >= 0.5).astype(np.uint8) for n, x in slices.items()}
    dice = {n: float(unet_keras.dice_per_image(truth_of(n), preds[n])[0]) for n in preds}
    iou = {n: float(unet_keras.iou_per_image(truth_of(n), preds[n])[0]) for n in preds}
    t1, p1 = truth_of(1).astype(bool), preds[1].astype(bool)
    classes = {"tp": t1 & p1, "fp": p1 & ~t1, "fn": t1 & ~p1, "none": ~t1 & ~p1}
    assert all(where.any() for where in classes.values()), "slice 1 needs TP, FP and FN pixels"

    # --- the files a user picks ---
    bad_file = tmp_path / "notes.txt"
    bad_file.write_text("not an image")
    small_mask = tmp_path / "small_mask.png"
    cv2.imwrite(str(small_mask), cv2.resize(truth_of(1) * 255, (256, 256)))
    picked = tmp_path / "picked"
    picked.mkdir()
    for n in (1, 2, 3):
        (picked / f"{n}.png").write_bytes((IMAGES / f"{n}.png").read_bytes())
    for n in (1, 2):
        (picked / f"{n}_mask.png").write_bytes((MASKS / f"{n}.png").read_bytes())
    multi = [picked / name for name in ("3.png", "1.png", "2_mask.png", "2.png", "1_mask.png")]
    multi.append(bad_file)
    archive = tmp_path / "patient.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for n in (4, 5):
            z.write(IMAGES / f"{n}.png", f"images/{n}.png", zipfile.ZIP_DEFLATED)
            z.write(MASKS / f"{n}.png", f"masks/{n}.png", zipfile.ZIP_STORED)
        write_figshare_mat(tmp_path / "6.mat", gray(IMAGES / "6.png").astype(np.int16),
                           truth_of(6), label=1, pid="100360")
        z.write(tmp_path / "6.mat", "6.mat", zipfile.ZIP_DEFLATED)
        z.writestr("README.txt", "slices of one patient")
    folder = tmp_path / "patient-7"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "images" / "7.png").write_bytes((IMAGES / "7.png").read_bytes())
    (folder / "masks" / "7.png").write_bytes((MASKS / "7.png").read_bytes())
    shot = tmp_path / "web_ui_1400x1000.png"

    with serve_in_thread(create_app(run)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            requested, page_errors, failed = [], [], []
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            page.goto(url)
            info = page.locator("#model-info")
            expect(info).to_contain_text("Model “glioma-run-3”: U-Net, depth 2, 4 base filters")
            assert str(tmp_path) not in page.content()
            expect(page.locator("#research-notice")).to_contain_text(
                "For research only, not for diagnosis.")
            expect(page.locator("#research-notice")).to_be_in_viewport()
            expect(page.locator("#model-card-link")).to_have_attribute("href", "/model-card")
            favicon = page.request.get(f"{url}/favicon.ico")
            assert favicon.status == 200 and favicon.headers["content-type"] == "image/x-icon"

            # A bad slice: the sentence appears by its field, in view; the page goes on working.
            page.set_input_files("#slice-input", str(bad_file))
            error = page.locator("#segment-error")
            expect(error).to_contain_text("notes.txt: not a supported file type")
            expect(error).to_contain_text("HTTP 415")
            expect(error).to_be_in_viewport()
            expect(page.locator("#slice-input")).to_have_attribute("aria-invalid", "true")
            field = page.locator("#slice-input").bounding_box()
            assert 0 < error.bounding_box()["y"] - field["y"] < 80  # right under the field

            page.set_input_files("#slice-input", str(IMAGES / "1.png"))
            expect(page.locator("#overlay-img")).to_have_attribute(
                "src", re.compile(r"^data:image/png;base64,"))
            page.wait_for_function("document.getElementById('overlay-img').naturalWidth === 512")
            expect(error).to_be_hidden()
            expect(page.locator("#area-px")).to_have_text(f"{int(preds[1].sum()):,}")
            expect(page.locator("#area-pct")).to_have_text(f"{100 * preds[1].mean():.2f}")
            expect(page.locator("#mask-download")).to_have_attribute("download", "1_mask.png")
            expect(page.locator("#best-guess")).to_be_hidden()  # its model stores no fallback

            # A truth mask of another size: a sentence by the truth field.
            page.set_input_files("#truth-input", str(small_mask))
            expect(page.locator("#dice-error")).to_contain_text("256x256")
            expect(page.locator("#dice-error")).to_be_in_viewport()

            # The truth mask: Dice and IoU in view, the overlay shows agreement.
            page.set_input_files("#truth-input", str(MASKS / "1.png"))
            expect(page.locator("#overlay-caption")).to_have_text("Agreement with 1.png")
            expect(page.locator("#dice-error")).to_be_hidden()
            for shown in ("#dice-value", "#iou-value", "#legend", "#overlay-img"):
                expect(page.locator(shown)).to_be_in_viewport()
            expect(page.locator("#dice-value")).to_have_text(f"{dice[1]:.4f}")
            expect(page.locator("#iou-value")).to_have_text(f"{iou[1]:.4f}")
            assert float(page.locator("#dice-value").get_attribute("data-value")) == dice[1]
            for key in ("tp", "fp", "fn"):
                expect(page.locator(f"#{key}-px")).to_have_text(f"{int(classes[key].sum()):,}")
            page.screenshot(path=str(shot))  # the viewport only: what the user sees
            agreement = decode_rgb(page.locator("#overlay-img").get_attribute("src"))
            swatches = {key: css_rgb(page.locator(f"#swatch-{key}").evaluate(
                "e => getComputedStyle(e).backgroundColor")) for key in ("tp", "fp", "fn")}

            # Several slices picked at once, with _mask files and a file that is no slice.
            page.set_input_files("#batch-input", [str(f) for f in multi])
            expect(page.locator("#batch-status")).to_have_attribute("data-done", "true")
            expect(page.locator("#batch-status")).to_contain_text("notes.txt")
            multi_rows = page.locator("#batch-rows tr").evaluate_all(
                "rows => rows.map(r => r.dataset.slice)")
            multi_table = {n: row_values(page, f"{n}.png") for n in (1, 2, 3)}
            multi_mean = page.locator("#mean-dice").get_attribute("data-value")
            multi_mean_area = page.locator("#mean-area-px").get_attribute("data-value")
            expect(page.locator("#mean-label")).to_have_text("Mean (3 of 3 slices)")

            # A .zip of a patient: images/ + masks/ (deflated and stored) and a .mat.
            page.set_input_files("#batch-input", str(archive))
            expect(page.locator("#batch-status")).to_have_attribute("data-done", "true")
            expect(page.locator("#batch-status")).to_contain_text("README.txt")
            zip_table = {n: row_values(page, f"patient.zip/{p}") for n, p in
                         ((4, "images/4.png"), (5, "images/5.png"), (6, "6.mat"))}
            zip_mean = page.locator("#mean-dice").get_attribute("data-value")

            # "Show" brings a row's slice and its agreement up to the single-slice view.
            page.locator('#batch-rows tr[data-slice="patient.zip/images/5.png"] button').click()
            expect(page.locator("#overlay-caption")).to_have_text("Agreement with 5.png")
            expect(page.locator("#dice-value")).to_have_text(f"{dice[5]:.4f}")

            # A folder.
            page.set_input_files("#folder-input", str(folder))
            expect(page.locator("#batch-status")).to_have_attribute("data-done", "true")
            folder_table = row_values(page, "patient-7/images/7.png")
            card = page.request.get(f"{url}/model-card")
            model_card = (card.status, card.text())

            # A small window (two columns, the scores below the fold): the page scrolls to them.
            small = browser.new_page(viewport={"width": 800, "height": 600})
            small.set_default_timeout(TIMEOUT_MS)
            small.goto(url)
            small.set_input_files("#slice-input", str(IMAGES / "1.png"))
            expect(small.locator("#results")).to_be_visible()
            small.evaluate("window.scrollTo(0, 0)")
            small.set_input_files("#truth-input", str(MASKS / "1.png"))
            expect(small.locator("#dice-value")).to_have_text(f"{dice[1]:.4f}")
            expect(small.locator("#dice-value")).to_be_in_viewport()
            scrolled = small.evaluate("window.scrollY")
        finally:
            browser.close()

    print(f"\nbrowser: Dice {dice}; screenshot {shot}")
    # The agreement overlay: at each known pixel, the slice blended with its legend colour.
    seen = np.round(slices[1][..., 0] * 255)
    for key in ("tp", "fp", "fn"):
        ys, xs = np.nonzero(classes[key])
        for y, x in zip(ys[:: max(1, len(ys) // 50)], xs[:: max(1, len(xs) // 50)],
                        strict=True):
            expected = 0.45 * seen[y, x] + 0.55 * swatches[key]
            assert np.abs(agreement[y, x] - expected).max() <= 1, (key, y, x, agreement[y, x])
    ys, xs = np.nonzero(classes["none"])
    np.testing.assert_array_equal(agreement[ys, xs], np.repeat(seen[ys, xs, None], 3, 1))

    assert multi_rows == ["1.png", "2.png", "3.png"]
    for n in (1, 2):
        assert int(multi_table[n]["area-px"]) == int(preds[n].sum())
        assert float(multi_table[n]["dice"]) == dice[n] and float(multi_table[n]["iou"]) == iou[n]
    assert int(multi_table[3]["area-px"]) == int(preds[3].sum())
    assert multi_table[3]["dice"] is None  # no mask: no Dice
    assert float(multi_mean) == pytest.approx((dice[1] + dice[2]) / 2, abs=1e-12)
    assert float(multi_mean_area) == pytest.approx(np.mean([preds[n].sum() for n in (1, 2, 3)]))
    for n in (4, 5, 6):
        assert int(zip_table[n]["area-px"]) == int(preds[n].sum())
        assert float(zip_table[n]["dice"]) == dice[n], n
    assert float(zip_mean) == pytest.approx(np.mean([dice[n] for n in (4, 5, 6)]), abs=1e-12)
    assert float(folder_table["dice"]) == dice[7]
    assert model_card[0] == 404 and "no model card" in model_card[1]
    assert scrolled > 0  # the scores were below the fold

    assert page_errors == []
    assert all(u.startswith(url) or u.startswith("data:") or u.startswith("blob:")
               for u in requested), requested
    # The failing requests are only the ones the test provoked (bad slice, small mask, card).
    assert {u.removeprefix(url) for u in failed} <= {"/api/segment", "/api/dice", "/model-card"}
    assert "/favicon.ico" not in {u.removeprefix(url) for u in failed}
    assert shot.stat().st_size > 10_000


@pytest.mark.slow
def test_page_states_the_model_s_post_processing(tmp_path):
    require_browser()
    from unet_keras.model_meta import ModelMeta, write_model_meta

    arch = ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)
    plain, post = tmp_path / "plain.keras", tmp_path / "post.keras"
    build_unet(arch).save(plain)
    build_unet(arch).save(post)
    write_model_meta(post, ModelMeta(arch=arch.to_dict(), threshold=0.35, tta=True,
                                     keep_largest=True, fallback=0.3))
    guess = tmp_path / "guess.keras"
    build_unet(arch).save(guess)
    write_model_meta(guess, ModelMeta(arch=arch.to_dict(), threshold=0.99, fallback=0.1))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for path, words in ((post, ["threshold 0.35", "flip TTA", "then largest region "
                                        "kept", "if a pixel reaches 0.30"]), (plain, []),
                                (guess, ["threshold 0.99", "if a pixel reaches 0.10"])):
                with serve_in_thread(create_app(path)) as url:
                    page = browser.new_page(viewport=VIEWPORT)
                    page.goto(url)
                    info = page.locator("#model-info")
                    expect(info).to_contain_text("parameters, threshold")
                    for w in words:
                        expect(info).to_contain_text(w)
                    if not words:
                        expect(info).not_to_contain_text("then")
                    # a fresh head's probabilities are near 0.5: only 'guess' falls back
                    page.set_input_files("#slice-input", str(IMAGES / "1.png"))
                    expect(page.locator("#results")).to_be_visible()
                    note = page.locator("#best-guess")
                    if path == guess:
                        expect(note).to_be_visible()
                        expect(note).to_contain_text("best guess")
                        # and in the batch table, scored against its truth (/api/dice)
                        pair = [tmp_path / "1.png", tmp_path / "1_mask.png"]
                        shutil.copy(IMAGES / "1.png", pair[0])
                        shutil.copy(MASKS / "1.png", pair[1])
                        page.set_input_files("#batch-input", [str(f) for f in pair])
                        expect(page.locator("#batch-status")).to_have_attribute("data-done",
                                                                                "true")
                        row = page.locator("#batch-rows tr")
                        expect(row).to_have_count(1)
                        expect(row.locator(".dice")).not_to_have_text("—")
                        expect(row.locator(".area-px")).to_contain_text("(best guess)")
                    else:
                        expect(note).to_be_hidden()
                    page.close()
        finally:
            browser.close()
