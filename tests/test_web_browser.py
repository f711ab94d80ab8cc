"""End to end in headless Chromium (issue 6): the page, a real server on a loopback port, a real
slice uploaded, the overlay and area shown, the Dice shown == unet_keras's Dice in-process.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it) at
``/usr/bin/chromium`` or ``$UNET_KERAS_CHROMIUM``. Without it the test fails; it never skips.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

import unet_keras  # noqa: E402
from unet_keras import ArchConfig, build_unet, predict_any_size  # noqa: E402
from unet_keras.data import SAMPLE_DIR  # noqa: E402
from unet_keras.data.preprocess import preprocess_image  # noqa: E402
from unet_keras.web.app import create_app  # noqa: E402
from unet_keras.web.loopback import serve_in_thread  # noqa: E402

CHROMIUM = os.environ.get("UNET_KERAS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000


@pytest.mark.slow
def test_segment_and_score_in_chromium(tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Debian chromium is needed at {CHROMIUM} for the browser test: "
                    "`apt-get install -y chromium` (.ci/run installs it), or point "
                    "UNET_KERAS_CHROMIUM at a Chromium binary")
    image_path, mask_path = SAMPLE_DIR / "images" / "1.png", SAMPLE_DIR / "masks" / "1.png"
    keras.utils.set_random_seed(1)
    model_path = tmp_path / "tiny.keras"
    build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)).save(model_path)

    # The same prediction and Dice, in this process, from the model file.
    model = keras.models.load_model(model_path)
    x = preprocess_image(cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED), None, 3)
    pred = (predict_any_size(model, x) >= 0.5).astype(np.uint8)
    truth = (cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
    dice = float(unet_keras.dice_per_image(truth, pred)[0])
    iou = float(unet_keras.iou_per_image(truth, pred)[0])

    bad_file = tmp_path / "notes.txt"
    bad_file.write_text("not an image")
    with serve_in_thread(create_app(model_path)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            requested, page_errors = [], []
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(url)
            expect(page.locator("#model-info")).to_contain_text("depth 2, 4 base filters")

            # A bad upload shows a sentence, and the page and server go on working.
            page.set_input_files("#slice-input", str(bad_file))
            expect(page.locator("#error")).to_contain_text("notes.txt: not a supported file type")
            expect(page.locator("#error")).to_contain_text("HTTP 415")

            page.set_input_files("#slice-input", str(image_path))
            overlay = page.locator("#overlay-img")
            expect(overlay).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
            page.wait_for_function("document.getElementById('overlay-img').naturalWidth === 512")
            expect(page.locator("#area-px")).to_have_text(f"{int(pred.sum()):,}")
            expect(page.locator("#area-pct")).to_have_text(f"{100 * pred.mean():.2f}")
            expect(page.locator("#error")).to_be_hidden()
            expect(page.locator("#mask-download")).to_have_attribute("download", "1_mask.png")

            page.set_input_files("#truth-input", str(mask_path))
            expect(page.locator("#scores")).to_be_visible()
            expect(page.locator("#dice-value")).to_have_text(re.compile(r"^\d\.\d{4}$"))
            shown_dice = float(page.locator("#dice-value").inner_text())
            shown_iou = float(page.locator("#iou-value").inner_text())
            exact_dice = float(page.locator("#dice-value").get_attribute("data-value"))
            page.screenshot(path=str(tmp_path / "web_ui.png"), full_page=True)
        finally:
            browser.close()

    print(f"\nbrowser: Dice shown {shown_dice} (exact {exact_dice}), in-process {dice}; "
          f"IoU shown {shown_iou}, in-process {iou}; screenshot {tmp_path / 'web_ui.png'}")
    assert shown_dice == round(dice, 4) and shown_iou == round(iou, 4)
    assert exact_dice == dice
    assert 0.0 < dice < 1.0
    assert page_errors == []
    assert all(u.startswith(url) or u.startswith("data:") for u in requested), requested
    assert (tmp_path / "web_ui.png").stat().st_size > 10_000
