"""Predicting a split and scoring it slice by slice; choosing the decision threshold.

The part of evaluation that training needs too: :func:`split_probabilities` predicts a split
(:func:`predict_split`, :data:`PROGRESS_CHUNK` slices at a time) and brings the probabilities
to each slice's own size (:func:`to_native`) or keeps the model's working size
(:data:`RESOLUTIONS`); :func:`per_image_scores` scores binary masks image by image;
:func:`calibrate_model` chooses the threshold of the best mean per-image Dice on the
validation split (:func:`choose_threshold`), whether flip TTA pays, and then which
post-processing pays (:func:`choose_postprocess`), and stores all three with the model. The
report built on these (Table 1, figures, per-patient views) is :mod:`unet_keras.evaluation`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import keras
import numpy as np
from tqdm import tqdm

from unet_keras.atomic import write_text_atomic
from unet_keras.data import Slice
from unet_keras.inference import load_model, mean_over_flips, model_meta, predict_batch
from unet_keras.metrics import accuracy_per_image, dice_per_image, iou_per_image
from unet_keras.model import arch_config_of
from unet_keras.model_meta import ModelMeta, write_model_meta
from unet_keras.postprocess import PostProcess

#: How slices are scored: ``native`` = probabilities resized back to each slice's own size and
#: compared with its original mask (what a user of ``unet-predict`` or the page sees);
#: ``model`` = at the model's working resolution, against the resized mask.
RESOLUTIONS = ("native", "model")

#: Slices per progress-bar step of :func:`predict_split` (a multiple of ``predict_batch``'s
#: batch of 8, so the forward passes are the same with or without a bar).
PROGRESS_CHUNK = 32
#: A slice with Dice below this counts as a miss (evaluation's miss rate; hard examples).
MISS_DICE = 0.1
#: Thresholds tried when choosing the decision threshold on the validation split.
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.91, 0.05))
#: ``fallback`` values tried by :func:`choose_postprocess` (those below the threshold: a
#: fallback at or above it never acts).
FALLBACKS = (0.1, 0.2, 0.3, 0.4, 0.5)



def per_image_scores(truth: Sequence[np.ndarray], pred: Sequence[np.ndarray]
                     ) -> dict[str, np.ndarray]:
    """``{"dice", "iou", "accuracy"}``, each ``(N,)``, for binary masks: ``(N, H, W)`` arrays
    or lists of ``(H_i, W_i)`` masks of any sizes (each pair of one size)."""
    if isinstance(truth, np.ndarray) and isinstance(pred, np.ndarray):
        return {"dice": dice_per_image(truth, pred), "iou": iou_per_image(truth, pred),
                "accuracy": accuracy_per_image(truth, pred)}
    scores = [per_image_scores(np.asarray(t)[None], np.asarray(p)[None])
              for t, p in zip(truth, pred, strict=True)]
    return {key: np.array([s[key][0] for s in scores]) for key in ("dice", "iou", "accuracy")}


def to_native(probs: np.ndarray, slices: Sequence[Slice]) -> list[np.ndarray]:
    """Probabilities at the working size -> each slice's own ``(H, W)`` (bilinear)."""
    out = []
    for p, s in zip(probs, slices, strict=True):
        h, w = s.mask.shape
        out.append(p if p.shape == (h, w)
                   else cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR))
    return out


def predict_split(model: keras.Model, images: np.ndarray, tta: bool = False,
                  progress: bool = False, desc: str = "predicting") -> np.ndarray:
    """:func:`~unet_keras.inference.predict_batch` of ``images``, :data:`PROGRESS_CHUNK` at a
    time; with ``progress`` a tqdm bar over the slices goes to stderr when that is a terminal
    (cleared when done)."""
    if len(images) == 0:
        return predict_batch(model, images, tta=tta)  # its error for an empty split
    parts = []
    with tqdm(total=len(images), desc=desc, unit="slice", leave=False,
              disable=None if progress else True) as bar:  # None: only on a terminal
        for start in range(0, len(images), PROGRESS_CHUNK):
            parts.append(predict_batch(model, images[start:start + PROGRESS_CHUNK], tta=tta))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def split_probabilities(model: keras.Model, slices: Sequence[Slice],
                        images: np.ndarray, masks: np.ndarray, resolution: str = "native",
                        tta: bool = False, progress: bool = False, desc: str = "predicting"
                        ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(truths, probs)``: binary truth masks and tumour probabilities of a split, at each
    slice's own size (``native``) or at the working size of ``images`` (``model``); with
    ``progress`` a bar (:func:`predict_split`) labelled ``desc``."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    probs = predict_split(model, images, tta, progress, desc)
    if resolution == "model":
        return list((masks[..., 0] >= 0.5).astype(np.uint8)), list(probs)
    return [s.mask for s in slices], to_native(probs, slices)


def choose_threshold(truths: Sequence[np.ndarray], probs: Sequence[np.ndarray],
                     thresholds: Sequence[float] = THRESHOLDS) -> tuple[float, dict[str, float]]:
    """The threshold of the highest mean per-image Dice (ties: the one nearest 0.5), and the
    mean Dice at each threshold tried."""
    curve = {f"{t:.2f}": float(per_image_scores(
        truths, [(p >= t).astype(np.uint8) for p in probs])["dice"].mean()) for t in thresholds}
    best = max(thresholds, key=lambda t: (curve[f"{t:.2f}"], -abs(t - 0.5)))
    return float(best), curve


def choose_threshold_and_tta(truths: Sequence[np.ndarray], plain: Sequence[np.ndarray],
                             flipped: Sequence[np.ndarray]
                             ) -> tuple[float, bool, dict[bool, dict[str, float]]]:
    """``(threshold, tta, curves)``: flip TTA when the best mean per-image Dice of the
    ``flipped`` probabilities (the mean over flips) beats that of the ``plain`` ones, strictly
    (a tie keeps one forward pass); the threshold is :func:`choose_threshold`'s for the chosen
    probabilities. ``curves[tta]``: the mean Dice at each threshold, without and with TTA."""
    (t_plain, c_plain), (t_tta, c_tta) = (choose_threshold(truths, plain),
                                          choose_threshold(truths, flipped))
    tta = max(c_tta.values()) > max(c_plain.values())
    return (t_tta if tta else t_plain), tta, {False: c_plain, True: c_tta}


def choose_postprocess(truths: Sequence[np.ndarray], probs: Sequence[np.ndarray],
                       threshold: float) -> tuple[PostProcess, dict[str, float]]:
    """The post-processing of the highest mean per-image Dice at ``threshold``, and the mean
    Dice of each candidate (keyed ``keep_largest=…, fallback=…``).

    Candidates: keep only the largest region or not, times no fallback or each of
    :data:`FALLBACKS` below ``threshold`` (see :class:`~unet_keras.postprocess.PostProcess`).
    Ties go to the more cautious: no ``keep_largest`` before it, no fallback before one, and a
    higher fallback before a lower one (it acts on fewer slices). So a candidate is chosen only
    when it is strictly better on these slices than every more cautious one.
    """
    candidates = [PostProcess(threshold=threshold, keep_largest=k, fallback=f)
                  for k in (False, True)
                  for f in (0.0, *(f for f in FALLBACKS if f < threshold))]
    scores = {rule: float(per_image_scores(truths, [rule(p) for p in probs])["dice"].mean())
              for rule in candidates}
    best = max(candidates, key=lambda r: (scores[r], not r.keep_largest, r.fallback == 0.0,
                                          r.fallback))
    return best, {f"keep_largest={r.keep_largest}, fallback={r.fallback:.2f}": score
                  for r, score in scores.items()}


def calibrate_model(model_path: str | os.PathLike, slices: Sequence[Slice],
                    images: np.ndarray, masks: np.ndarray, image_size: int | None = None,
                    log=print) -> tuple[PostProcess, bool]:
    """Choose how the model predicts, on validation slices, and store it in the model file's
    metadata: the decision threshold (:func:`choose_threshold`, mean per-image Dice at each
    slice's own size) for plain predictions and for flip TTA, and flip TTA when its best mean
    Dice is higher than the plain one's (strictly: ties keep one forward pass); then, for the
    probabilities and threshold chosen, the post-processing (:func:`choose_postprocess`). The
    curves go to ``threshold.json`` beside the model file.

    ``images``/``masks`` are the slices preprocessed at the model's working size
    (``image_size``, recorded too when the file has no metadata yet). Returns the mask rule
    (threshold and post-processing) and whether TTA was chosen.
    """
    model = load_model(model_path)
    plain = predict_split(model, images)
    flipped = mean_over_flips(model, images, plain)  # reuses the plain pass: 3 passes, not 4
    truths, plain, flipped = ([s.mask for s in slices], to_native(plain, slices),
                              to_native(flipped, slices))
    threshold, tta, curves = choose_threshold_and_tta(truths, plain, flipped)
    rule, pp_curve = choose_postprocess(truths, flipped if tta else plain, threshold)
    score = {mode: max(curves[mode].values()) for mode in (False, True)}
    source = (f"validation split ({len(slices)} slices): best mean per-image Dice at native "
              "resolution")
    meta = model_meta(model) or ModelMeta(arch=arch_config_of(model).to_dict(),
                                          image_size=image_size)
    write_model_meta(model_path, meta.replace(
        threshold=threshold, threshold_source=source, tta=tta,
        tta_source=f"{source}: {score[True]:.4f} with flip TTA, {score[False]:.4f} without",
        keep_largest=rule.keep_largest, fallback=rule.fallback,
        postprocess_source=f"{source} after the threshold and TTA: " + (
            f"{max(pp_curve.values()):.4f} with it, {score[tta]:.4f} without"
            if rule != PostProcess(threshold=threshold)
            else f"none chosen (none scored above {score[tta]:.4f})")))
    write_text_atomic(Path(model_path).parent / "threshold.json", json.dumps(
        {"threshold": threshold, "tta": tta, "keep_largest": rule.keep_largest,
         "fallback": rule.fallback, "val_dice_by_threshold": curves[False],
         "val_dice_by_threshold_tta": curves[True], "val_dice_by_postprocess": pp_curve},
        indent=2))
    log(f"threshold {threshold:.2f}, flip TTA {'on' if tta else 'off'}, "
        f"{rule.describe()} (val per-image Dice {max(pp_curve.values()):.4f}; "
        f"before post-processing {score[tta]:.4f}; best with TTA {score[True]:.4f}, without "
        f"{score[False]:.4f}; without TTA at 0.50: {curves[False]['0.50']:.4f}) stored in "
        f"{model_path}")
    return rule, tta
