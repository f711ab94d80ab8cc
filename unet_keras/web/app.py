"""The web app: one page (``/``) and the JSON API behind it.

* ``POST /api/segment`` — field ``file``: a slice (PNG, JPEG, TIFF, Figshare ``.mat``) ->
  the slice, the predicted mask and the overlay as PNG ``data:`` URLs, the tumor area.
* ``POST /api/dice`` — field ``truth``: the ground-truth mask, and either ``image`` (the slice,
  segmented now) or ``prediction`` (a predicted mask, e.g. the one ``/api/segment`` returned)
  -> Dice and IoU (:func:`unet_keras.dice_per_image`, :func:`unet_keras.iou_per_image`).
  With ``image``, also the agreement overlay: true positives, false positives and false
  negatives tinted in the colours ``GET /api/model`` lists as ``agreement_colors``.
* ``GET /api/health``, ``GET /api/model`` (architecture, run name, limits),
  ``GET /openapi.json``.
* ``GET /model-card``: the run's ``MODEL_CARD.md`` (404 with a sentence if it has none);
  ``GET /favicon.ico``.

Bad requests get a JSON ``{"detail": "<a sentence for a person>"}``: 413 past the upload
limit, 415 for an unsupported file type, 422 for a corrupt file or a mask of another size.
Uploads stay in memory; nothing is written to disk. Predictions run on one worker thread
(:class:`~unet_keras.web.segmenter.Segmenter`), so concurrent requests are safe.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from unet_keras import __version__, dice_per_image, iou_per_image
from unet_keras.data import DataError, read_image_bytes, read_mask_bytes
from unet_keras.data.preprocess import preprocess_image
from unet_keras.inference import (
    BUNDLED_MODEL,
    default_tta,
    inference_model,
    load_unet,
    mask_rule,
)
from unet_keras.model import arch_config_of
from unet_keras.web.model_info import MODEL_CARD, model_card_text, run_dir_of, run_name, run_record
from unet_keras.web.rendering import outlined_overlay, png_data_url, to_uint8
from unet_keras.web.segmenter import Segmenter
from unet_keras.web.uploads import SUFFIXES, Upload, UploadError, check_type, read_uploads

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
DEFAULT_MAX_SIDE = 2048
#: The page loads nothing from elsewhere; images arrive as data: URLs.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self' data:; object-src 'none'; base-uri 'none'")
#: Agreement overlay: each class of pixel tinted with its colour (RGB), blended with the slice.
#: Okabe-Ito-like hues, told apart with the common colour-vision deficiencies.
AGREEMENT_RGB: dict[str, tuple[int, int, int]] = {
    "true_positive": (0, 200, 140),    # tumor in the truth and in the prediction
    "false_positive": (255, 140, 0),   # predicted, not in the truth
    "false_negative": (60, 110, 255),  # in the truth, missed
}
AGREEMENT_ALPHA = 0.55


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, in a sentence for a person")


class SegmentOut(BaseModel):
    filename: str
    width: int = Field(description="slice width in pixels")
    height: int = Field(description="slice height in pixels")
    image: str = Field(description="the slice as the model saw it, PNG data URL")
    mask: str = Field(description="predicted tumor mask, PNG data URL (0 / 255)")
    overlay: str = Field(description="the slice with the tumor tinted and outlined, PNG data URL")
    tumor_area_px: int = Field(description="tumor pixels in the predicted mask")
    tumor_area_percent: float = Field(description="tumor pixels / all pixels * 100")
    threshold: float = Field(description="probability cut-off used for the mask (a fallback "
                             "mask, see postprocess, reaches below it)")
    tta: bool = Field(description="whether the probabilities are the mean over flips")
    postprocess: str = Field(description="what was done to the thresholded mask, in words "
                             "(e.g. 'largest region'; 'no post-processing')")
    best_guess: bool = Field(description="no pixel reached the threshold: the mask is the "
                             "fallback's best guess (see GET /api/model fallback), less sure "
                             "than a mask that reached it")
    inference_ms: float = Field(description="time from queueing the slice to its probabilities")


class DiceOut(BaseModel):
    dice: float = Field(description="2|A∩B| / (|A| + |B|); 1.0 if both masks are empty")
    iou: float = Field(description="|A∩B| / |A∪B|; 1.0 if both masks are empty")
    truth_area_px: int
    predicted_area_px: int
    width: int
    height: int
    compared: Literal["image", "prediction"] = Field(
        description="'image': the slice was segmented now; 'prediction': a given mask")
    true_positive_px: int = Field(description="tumor in both the truth and the prediction")
    false_positive_px: int = Field(description="predicted tumor that the truth does not have")
    false_negative_px: int = Field(description="truth tumor that the prediction missed")
    agreement: str | None = Field(
        default=None, description="with 'image': the slice with true positives, false "
        "positives and false negatives tinted (colours: GET /api/model agreement_colors), "
        "PNG data URL; null with 'prediction'")
    best_guess: bool | None = Field(
        default=None, description="with 'image': no pixel reached the threshold and the mask "
        "is the fallback's best guess (as in /api/segment); null with 'prediction'")


class HealthOut(BaseModel):
    status: Literal["ok"]
    run_name: str = Field(description="the model's run: the name of the folder holding it")
    pending: int = Field(description="slices waiting for the model")


class ModelOut(BaseModel):
    run_name: str = Field(description="the model's run: the name of the folder holding it")
    model_card_url: str = Field(description="where the page links the run's model card")
    architecture: dict[str, Any] = Field(description="ArchConfig of the served model")
    parameters: int
    threshold: float
    tta: bool = Field(description="flip test-time augmentation: probabilities are the mean "
                      "over the slice and its two flips")
    keep_largest: bool = Field(description="post-processing: only the largest region is kept")
    fallback: float = Field(description="post-processing: where nothing reaches the threshold "
                            "but the most probable pixel reaches this, the region around it "
                            "(probabilities at least half its value) is the mask; 0 = off")
    postprocess: str = Field(description="the post-processing in words")
    precision: str = Field(description="compute precision of the forward pass: float32 or "
                           "bfloat16")
    max_upload_bytes: int
    max_side: int = Field(description="largest accepted slice height / width in pixels")
    accepted_suffixes: list[str]
    run: dict[str, Any] | None = Field(description="the run's config.json, when there is one")
    agreement_colors: dict[str, str] = Field(
        description="CSS hex colour of each class of the agreement overlay")


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "the upload is larger than the limit"},
    415: {"model": ErrorOut, "description": "not multipart, or an unsupported file type"},
    422: {"model": ErrorOut, "description": "corrupt file, missing field, or size mismatch"},
}


def _multipart(fields: dict[str, str], required: list[str]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a multipart form of file fields (name -> description)."""
    properties = {name: {"type": "string", "format": "binary", "description": text}
                  for name, text in fields.items()}
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}


def create_app(model_path: str | Path | None = None, *, threshold: float | None = None,
               tta: bool | None = None, postprocess: bool | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_side: int = DEFAULT_MAX_SIDE, max_batch: int = 8,
               precision: str = "float32", jit_compile: bool = False) -> FastAPI:
    """Build the app around one model.

    Args:
        model_path: a ``.keras`` file or a run directory holding ``model.keras``; default: the
            bundled sample model. Loaded now, so a bad path fails here, naming the path.
        threshold: probability cut-off for the predicted mask; default: the model's own
            (chosen on its validation split), else 0.5.
        tta: average the probabilities over flips; default: the model's own choice (made on
            its validation split), else no.
        postprocess: apply the post-processing stored with the model (keep the largest region,
            a best guess where nothing reaches the threshold; chosen on its validation split);
            default yes (none for models that store none); ``False``: the threshold alone.
        max_upload_bytes: request body limit (all files of a request together); past it, 413.
        max_side: largest accepted slice height or width in pixels; past it, 422.
        max_batch: most slices per forward pass (see :class:`Segmenter`).
        precision, jit_compile: how the forward pass runs (see
            :func:`unet_keras.inference.inference_model`).
    """
    source = Path(model_path) if model_path is not None else BUNDLED_MODEL
    model = load_unet(source)
    rule = mask_rule(model, threshold, postprocess)
    threshold = rule.threshold
    tta = default_tta(model) if tta is None else tta
    channels = int(model.input_shape[-1])
    run_dir = run_dir_of(source)
    info = ModelOut(
        run_name=run_name(source),
        model_card_url="/model-card",
        architecture=arch_config_of(model).to_dict(),
        parameters=model.count_params(),
        threshold=threshold,
        tta=tta,
        keep_largest=rule.keep_largest,
        fallback=rule.fallback,
        postprocess=rule.describe(),
        precision=precision,
        max_upload_bytes=max_upload_bytes,
        max_side=max_side,
        accepted_suffixes=list(SUFFIXES),
        run=run_record(run_dir),
        agreement_colors={name: "#{:02x}{:02x}{:02x}".format(*rgb)
                          for name, rgb in AGREEMENT_RGB.items()},
    )
    segmenter = Segmenter(inference_model(model, precision, jit_compile), max_batch=max_batch,
                          tta=tta)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(segmenter.close)

    # No /docs or /redoc: their pages load scripts from a CDN. The schema is /openapi.json.
    app = FastAPI(title="unet-keras", version=__version__, lifespan=lifespan,
                  description=__doc__, docs_url=None, redoc_url=None)
    app.state.model_path = str(source.resolve())  # for the server's log, never sent
    app.state.threshold = threshold
    app.state.tta = tta
    app.state.rule = rule

    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(DataError)
    async def data_error(_: Request, exc: DataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def decode_image(upload: Upload) -> np.ndarray:
        """Upload -> the model's input ``(H, W, channels)`` float32 in [0, 1]."""
        check_type(upload)
        raw = read_image_bytes(upload.data, upload.filename, max_side=max_side)
        if max(raw.shape[:2]) > max_side:
            raise UploadError(422, f"{upload.filename}: the slice is {raw.shape[1]}x"
                                   f"{raw.shape[0]} pixels; the limit is {max_side} a side")
        return preprocess_image(raw, image_size=None, channels=channels)

    def decode_mask(upload: Upload) -> np.ndarray:
        """Upload -> ``(H, W)`` uint8 0/1."""
        check_type(upload)
        return read_mask_bytes(upload.data, upload.filename, max_side=max_side)

    async def probabilities(x: np.ndarray) -> np.ndarray:
        return await asyncio.wrap_future(segmenter.submit(x))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html",
                            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")

    @app.get("/model-card", include_in_schema=False)
    async def model_card() -> HTMLResponse:
        """The run's MODEL_CARD.md as a plain page (the Markdown text, escaped)."""
        text = await run_in_threadpool(model_card_text, run_dir)
        headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
        if text is None:
            message = (f"The model run \u201c{info.run_name}\u201d has no model card: its "
                       f"folder has no {MODEL_CARD}. The model is for research, not diagnosis.")
            return HTMLResponse(_text_page("No model card", message, pre=False),
                                status_code=404, headers=headers)
        return HTMLResponse(_text_page(f"Model card \u00b7 {info.run_name}", text, pre=True),
                            headers=headers)

    @app.post("/api/segment", response_model=SegmentOut, responses=_ERRORS,
              openapi_extra=_multipart({"file": "the slice"}, ["file"]))
    async def segment(request: Request) -> SegmentOut:
        """Segment one slice at its own size."""
        uploads = await read_uploads(request, ("file",), max_upload_bytes)
        if "file" not in uploads:
            raise UploadError(422, "no file: send the slice in the form field 'file'")
        upload = uploads["file"]
        x = await run_in_threadpool(decode_image, upload)
        start = time.perf_counter()
        probs = await probabilities(x)
        inference_ms = (time.perf_counter() - start) * 1e3
        mask, guessed = rule.mask_and_guess(probs)

        def render() -> SegmentOut:
            area = int(mask.sum())
            return SegmentOut(
                filename=upload.filename, width=mask.shape[1], height=mask.shape[0],
                image=png_data_url(to_uint8(x)), mask=png_data_url(mask * 255),
                overlay=png_data_url(outlined_overlay(x, mask)), tumor_area_px=area,
                tumor_area_percent=100.0 * area / mask.size, threshold=threshold, tta=tta,
                postprocess=rule.describe(), best_guess=guessed,
                inference_ms=inference_ms)

        return await run_in_threadpool(render)

    @app.post("/api/dice", response_model=DiceOut, responses=_ERRORS,
              openapi_extra=_multipart(
                  {"truth": "ground-truth mask",
                   "image": "the slice, to segment now (or send 'prediction')",
                   "prediction": "a predicted mask (or send 'image')"}, ["truth"]))
    async def dice(request: Request) -> DiceOut:
        """Dice and IoU of a prediction against a ground-truth mask (empty-mask rule)."""
        uploads = await read_uploads(request, ("truth", "image", "prediction"),
                                     max_upload_bytes)
        if "truth" not in uploads:
            raise UploadError(422, "no ground truth: send the mask in the form field 'truth'")
        if ("image" in uploads) == ("prediction" in uploads):
            raise UploadError(422, "send exactly one of 'image' (a slice to segment) or "
                                   "'prediction' (a predicted mask) along with 'truth'")
        truth_upload = uploads["truth"]
        truth = await run_in_threadpool(decode_mask, truth_upload)
        x, guessed = None, None
        if "image" in uploads:
            other = uploads["image"]
            x = await run_in_threadpool(decode_image, other)
            _check_same_size(truth, truth_upload, x, other)
            pred, guessed = rule.mask_and_guess(await probabilities(x))
        else:
            other = uploads["prediction"]
            pred = await run_in_threadpool(decode_mask, other)
            _check_same_size(truth, truth_upload, pred, other)

        def score() -> DiceOut:
            t, p = truth > 0, pred > 0
            return DiceOut(dice=float(dice_per_image(truth, pred)[0]),
                           iou=float(iou_per_image(truth, pred)[0]),
                           truth_area_px=int(t.sum()), predicted_area_px=int(p.sum()),
                           width=truth.shape[1], height=truth.shape[0],
                           compared="image" if x is not None else "prediction",
                           true_positive_px=int((t & p).sum()),
                           false_positive_px=int((p & ~t).sum()),
                           false_negative_px=int((t & ~p).sum()),
                           agreement=None if x is None else
                           png_data_url(agreement_overlay(x, truth, pred)),
                           best_guess=guessed)

        return await run_in_threadpool(score)

    @app.get("/api/health", response_model=HealthOut)
    async def health() -> HealthOut:
        """Liveness: the model is loaded and the worker takes requests."""
        return HealthOut(status="ok", run_name=info.run_name, pending=segmenter.pending())

    @app.get("/api/model", response_model=ModelOut)
    async def model_info() -> ModelOut:
        """The served model: architecture, parameters, path, limits."""
        return info

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def agreement_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The slice ``(H, W[, C])`` in [0, 1] with the true positives, false positives and false
    negatives of ``pred`` against ``truth`` (both ``(H, W)``, nonzero = tumor) tinted in the
    :data:`AGREEMENT_RGB` colours (blended, ``AGREEMENT_ALPHA``); uint8 RGB ``(H, W, 3)``.
    Pixels that are tumor in neither keep the slice's grey."""
    base = to_uint8(image)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    out = base.astype(np.float32)
    t, p = np.asarray(truth) > 0, np.asarray(pred) > 0
    for name, where in (("true_positive", t & p), ("false_positive", p & ~t),
                        ("false_negative", t & ~p)):
        colour = np.asarray(AGREEMENT_RGB[name], np.float32)
        out[where] = (1 - AGREEMENT_ALPHA) * out[where] + AGREEMENT_ALPHA * colour
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _text_page(title: str, text: str, *, pre: bool) -> str:
    """A plain local page (the app's style sheet) showing ``text`` escaped."""
    body = (f"<pre class=\"card-text\">{html.escape(text)}</pre>" if pre
            else f"<p class=\"error\" role=\"alert\">{html.escape(text)}</p>")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title>"
            "<link rel=\"icon\" href=\"/favicon.ico\">"
            "<link rel=\"stylesheet\" href=\"/static/style.css\"></head>"
            f"<body><p><a href=\"/\">\u2190 Back to the segmentation page</a></p>"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>\n")


def _check_same_size(truth: np.ndarray, truth_upload: Upload, other: np.ndarray,
                     other_upload: Upload) -> None:
    if truth.shape[:2] != other.shape[:2]:
        raise UploadError(
            422, f"{truth_upload.filename} is {truth.shape[1]}x{truth.shape[0]} pixels but "
                 f"{other_upload.filename} is {other.shape[1]}x{other.shape[0]}; "
                 "the mask must have the slice's size")
