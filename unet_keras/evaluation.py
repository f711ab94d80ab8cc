"""Evaluation: the paper's Table 1 (Dice, IoU, pixel accuracy; mean ± std) per split.

For every split three views are reported, never mixed:

* **per image** (``dice``/``iou``/``accuracy`` ``{"mean", "std"}``): each image scored on its
  own binary mask (threshold 0.5, no smoothing, both-empty = 1.0), then mean ± std over images;
* **pooled** (``dice_global``/``iou_global``): intersections and sums over the whole split, as
  Keras training logs report them — the paper's numbers are of this kind (its IoU 0.815 ≈
  D / (2 − D) for its Dice 0.897);
* **per patient** (``dice_per_patient``): pooled Dice of each patient's slices, mean ± std over
  patients (only when the dataset has patient ids).

Images are scored at the model's input resolution, after the same preprocessing as training
(area-resized image, nearest-resized mask). ``--runs A B C`` aggregates several runs (seeds or
folds): mean ± std across runs of each run's per-image mean, which is what the paper's ± means.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from unet_keras import data as data_lib
from unet_keras.atomic import write_text_atomic
from unet_keras.config import DEFAULT_IMAGE_SIZE, TrainConfig, run_config
from unet_keras.data.preprocess import preprocess_image
from unet_keras.data.splits import load_split_data
from unet_keras.inference import default_tta, load_model, mask_rule, model_meta
from unet_keras.metrics import dice_global, iou_global
from unet_keras.postprocess import PostProcess, cumulative_steps
from unet_keras.scoring import (
    MISS_DICE,
    calibrate_model,
    per_image_scores,
    split_probabilities,
)
from unet_keras.viz import write_png

#: The paper's Table 1 (Dice, IoU, accuracy as (mean, std)).
PAPER_TABLE1 = {
    "train": {"dice": (0.909, 0.005), "iou": (0.837, 0.004), "accuracy": (0.998, 0.001)},
    "val": {"dice": (0.853, 0.007), "iou": (0.747, 0.006), "accuracy": (0.997, 0.001)},
    "test": {"dice": (0.897, 0.004), "iou": (0.815, 0.003), "accuracy": (0.998, 0.001)},
}


#: Tumour-size bins: share of the slice's pixels (at its own size) that are tumour.
SIZE_BINS = (("<0.5%", 0.0, 0.005), ("0.5-1%", 0.005, 0.01), ("1-2%", 0.01, 0.02),
             ("2-5%", 0.02, 0.05), (">=5%", 0.05, 1.01))
#: Tumour contrast bins (:func:`tumour_contrast`: mean grey level inside the mask over that of
#: a ring around it). Under 1 the tumour is darker than its surroundings (cystic, necrotic or
#: not enhancing); well above 1 it is an enhancing tumour.
CONTRAST_BINS = (("<1.0", -np.inf, 1.0), ("1.0-1.2", 1.0, 1.2), ("1.2-1.5", 1.2, 1.5),
                 (">=1.5", 1.5, np.inf))


def _mean_std(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def _stack(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Masks of one size -> ``(N, H, W)``; masks of several sizes -> ``(1, 1, total)`` (their
    pixels side by side), which pooled sums treat the same way."""
    if len({np.shape(m) for m in masks}) == 1:
        return np.stack(masks)
    return np.concatenate([np.ravel(m) for m in masks])[None, None]


def score_split(truth: Sequence[np.ndarray], pred: Sequence[np.ndarray],
                patients: Sequence[str | None] | None = None,
                per_image: dict[str, np.ndarray] | None = None) -> dict:
    """Table-1 numbers for one split. ``truth``/``pred``: binary ``(N, H, W)`` or lists of
    masks of any sizes; ``per_image``: :func:`per_image_scores` of them when computed."""
    per_image = per_image if per_image is not None else per_image_scores(truth, pred)
    t_all, p_all = _stack(list(truth)), _stack(list(pred))
    result = {
        **{key: _mean_std(values) for key, values in per_image.items()},
        "dice_median": float(np.median(per_image["dice"])),
        "miss_rate": float(np.mean(per_image["dice"] < MISS_DICE)),
        "misses": miss_kinds(truth, pred, per_image["dice"]),
        "dice_global": dice_global(t_all, p_all),
        "iou_global": iou_global(t_all, p_all),
        "n_images": int(len(truth)),
    }
    if patients is not None and all(p is not None for p in patients):
        per_patient = []
        for pid in sorted(set(patients)):
            idx = [i for i, p in enumerate(patients) if p == pid]
            per_patient.append(dice_global(_stack([truth[i] for i in idx]),
                                           _stack([pred[i] for i in idx])))
        result["dice_per_patient"] = {**_mean_std(per_patient), "n_patients": len(per_patient)}
    return result


def miss_kinds(truth: Sequence[np.ndarray], pred: Sequence[np.ndarray],
               dice: np.ndarray) -> dict[str, float]:
    """What the misses (Dice < ``MISS_DICE``) are, each as a share of all slices:
    ``nothing`` (a tumour and an empty prediction: the model did not see it), ``elsewhere``
    (a tumour and a prediction that barely touches it: the model took something else for
    it) and ``false_alarm`` (no tumour, something predicted). They add up to the miss rate."""
    has_truth = np.array([bool(np.any(t)) for t in truth])
    has_pred = np.array([bool(np.any(p)) for p in pred])
    missed = np.asarray(dice) < MISS_DICE
    n = max(len(missed), 1)
    return {"nothing": float(np.sum(missed & has_truth & ~has_pred)) / n,
            "elsewhere": float(np.sum(missed & has_truth & has_pred)) / n,
            "false_alarm": float(np.sum(missed & ~has_truth)) / n}


def tumour_share(truth: Sequence[np.ndarray]) -> np.ndarray:
    """Share of each mask's pixels that are tumour, ``(N,)``."""
    return np.array([float(np.mean(np.asarray(t) > 0)) for t in truth])


def dice_by_size(truth: Sequence[np.ndarray], dice: np.ndarray) -> dict[str, dict]:
    """Per-image Dice (mean, n, share of misses: Dice < ``MISS_DICE``) in each tumour-size bin
    (:data:`SIZE_BINS`) and for empty truth masks."""
    share = tumour_share(truth)
    bins = {"empty": share == 0}
    for name, low, high in SIZE_BINS:
        bins[name] = (share > 0) & (share >= low) & (share < high)
    return _binned(bins, dice)


def tumour_contrast(image: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean grey level inside the tumour ``mask`` over the mean in a ring around it, for one
    slice at its own size (``image``: ``(H, W)`` or ``(H, W, C)``, any dtype; channels are
    averaged; the reading "under 1: cystic or necrotic" holds for T1 contrast-enhanced slices
    such as Figshare's). The ring is the mask dilated by 2% of the slice's longer side (at least 3
    pixels), minus the mask, within the head (pixels above a tenth of the slice's maximum,
    holes filled), so the black background around the head does not count. ``None`` for an
    empty mask or ring."""
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    img = img.mean(axis=-1) if img.ndim == 3 else img
    tumour = np.asarray(mask) > 0
    if not tumour.any():
        return None
    head = ndimage.binary_fill_holes(img > 0.1 * img.max())
    reach = max(3, round(0.02 * max(img.shape)))
    ring = ndimage.binary_dilation(tumour, iterations=reach) & ~tumour & head
    if not ring.any() or img[ring].mean() <= 0:
        return None
    return float(img[tumour].mean() / img[ring].mean())


def dice_by_contrast(contrast: Sequence[float | None], dice: np.ndarray,
                     has_tumour: Sequence[bool] | None = None) -> dict[str, dict]:
    """Per-image Dice (mean, n, share of misses) in each tumour-contrast bin
    (:data:`CONTRAST_BINS`; ``contrast`` from :func:`tumour_contrast`), for slices without a
    tumour (``has_tumour`` false; default: those without a value) and for tumours without a
    value (``"unmeasured"``: a tumour with no ring around it in the head)."""
    c = np.array([np.nan if v is None else v for v in contrast], dtype=np.float64)
    tumour = ~np.isnan(c) if has_tumour is None else np.asarray(has_tumour, dtype=bool)
    bins = {"no tumour": ~tumour, "unmeasured": tumour & np.isnan(c)}
    for name, low, high in CONTRAST_BINS:
        bins[name] = (c >= low) & (c < high)  # NaN compares false
    return _binned(bins, dice)


def _binned(bins: dict[str, np.ndarray], dice: np.ndarray) -> dict[str, dict]:
    out = {}
    for name, chosen in bins.items():
        d = np.asarray(dice)[chosen]
        out[name] = {"n": int(chosen.sum()),
                     "dice": float(d.mean()) if len(d) else None,
                     "miss_rate": float(np.mean(d < MISS_DICE)) if len(d) else None}
    return out


def working_size(model: keras.Model, fallback: int) -> int:
    """The side slices are resized to before the forward pass: the model file's
    ``image_size``, else its fixed input size, else ``fallback``."""
    meta = model_meta(model)
    if meta is not None and meta.image_size:
        return int(meta.image_size)
    h = model.input_shape[1]
    return int(h) if h is not None else int(fallback)


def evaluate_split(model: keras.Model, slices: Sequence[data_lib.Slice], images: np.ndarray,
                   masks: np.ndarray, rule: PostProcess | None = None,
                   resolution: str = "native", tta: bool = False, min_size: int = 64,
                   progress: bool = False, desc: str = "predicting"
                   ) -> tuple[dict, dict, list, list]:
    """Score one split's masks made by ``rule`` (threshold and post-processing; default a
    plain 0.5 threshold), and the alternatives (``progress``, ``desc``: see
    :func:`split_probabilities`).

    Returns ``(metrics, per_image, truth, pred)``: ``metrics`` has the Table-1 numbers of
    ``rule``'s masks (per image, pooled, per patient, median, share of misses), Dice by tumour
    size and by tumour contrast (:func:`dice_by_contrast`), the threshold and post-processing
    used, the same numbers' Dice at 0.5 when the threshold differs (``"at_0.5"``) and at the
    threshold alone when ``rule`` post-processes (``"threshold_only"``), and ``"postprocess"``:
    Dice (per-image mean and pooled) after each cumulative post-processing step at the
    threshold; ``per_image`` is
    :func:`per_image_scores` with each slice's ``tumour_contrast`` and ``best_guess`` (its mask is
    the fallback's, no pixel having reached the threshold; their number is ``metrics``'
    ``"best_guesses"``); ``truth`` and ``pred`` the
    binary masks.
    """
    rule = rule or PostProcess()
    threshold = rule.threshold
    truth, probs = split_probabilities(model, slices, images, masks, resolution, tta,
                                       progress, desc)
    plain = [(p >= threshold).astype(np.uint8) for p in probs]
    made = [rule.mask_and_guess(p) for p in probs]
    pred = plain if rule == PostProcess(threshold=threshold) else [m for m, _ in made]
    per_image = per_image_scores(truth, pred)
    metrics = score_split(truth, pred, [s.patient_id for s in slices], per_image)
    metrics["by_size"] = dice_by_size(truth, per_image["dice"])
    per_image["tumour_contrast"] = [tumour_contrast(s.image, s.mask) for s in slices]
    per_image["best_guess"] = [g for _, g in made]
    metrics["by_contrast"] = dice_by_contrast(per_image["tumour_contrast"], per_image["dice"],
                                              [bool(np.any(s.mask)) for s in slices])
    metrics["threshold"] = threshold
    metrics["keep_largest"] = rule.keep_largest
    metrics["fallback"] = rule.fallback
    metrics["best_guesses"] = int(sum(per_image["best_guess"]))
    if pred is not plain:
        alone = per_image_scores(truth, plain)["dice"]
        metrics["threshold_only"] = {"dice": float(alone.mean()),
                                     "dice_global": dice_global(_stack(truth), _stack(plain)),
                                     "miss_rate": float(np.mean(alone < MISS_DICE))}
    if threshold != 0.5:
        at_half = [(p >= 0.5).astype(np.uint8) for p in probs]
        metrics["at_0.5"] = {"dice": float(per_image_scores(truth, at_half)["dice"].mean()),
                             "dice_global": dice_global(_stack(truth), _stack(at_half))}
    metrics["postprocess"] = {}
    for name, step in cumulative_steps(min_size).items():
        step = dataclasses.replace(step, threshold=threshold)
        refined = plain if name == "threshold" else [step(p) for p in probs]
        metrics["postprocess"][name] = {
            "dice": float(per_image_scores(truth, refined)["dice"].mean()),
            "dice_global": dice_global(_stack(truth), _stack(refined))}
    metrics["tta"] = tta
    metrics["resolution"] = resolution
    return metrics, per_image, truth, pred


def evaluate(model_path: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
             data: str | None = None, format: str = "auto", output: str | os.PathLike | None = None,
             tta: bool | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
             save_masks: bool = False,
             min_size: int = 64, resolution: str = "native", threshold: float | None = None,
             postprocess: bool | None = None, log=print, progress: bool = False) -> dict:
    """Evaluate a run (its config and split) or a model on a data folder (split ``all``).

    Slices are scored at ``resolution`` (:data:`RESOLUTIONS`; default ``native``: each at its
    own size) with the decision ``threshold``, flip ``tta`` and ``postprocess`` (default: those
    stored in the model file, chosen on its validation split, see :mod:`unet_keras.model_meta`;
    else 0.5, no TTA, no post-processing; ``postprocess=False``: the threshold alone). Writes
    into ``output`` (default: the run dir, or ``<model dir>/eval``): ``metrics.json``,
    ``table1.md``, ``per_image.csv``, ``examples_<split>.png`` (best, median, worst),
    ``dice_hist_<split>.png``, ``dice_by_size_<split>.png`` and, with ``save_masks``,
    ``masks/<split>/<id>.png`` (0/255 at the evaluated resolution). With ``progress``, tqdm
    bars over the files read and the slices of each split go to stderr when that is a
    terminal. Returns the metrics dict.
    """
    from unet_keras import viz

    if run_dir is not None:
        run_dir = Path(run_dir)
        cfg, record = _run_config(run_dir)
        # A run trained on a TFRecord export records the dataset the export was made from.
        data = data or record.get("data_source")
        if data is not None:
            cfg = cfg.replace(data=data, format=format)
        model_path = Path(model_path) if model_path else run_dir / "model.keras"
        model = load_model(model_path)
        slices, split, arrays = load_split_data(cfg, run_dir)
        output = Path(output) if output else run_dir
    else:
        if model_path is None or data is None:
            raise ValueError("give a run directory, or both --model and --data")
        model = load_model(Path(model_path))
        channels = model.input_shape[-1]
        image_size = working_size(model, image_size)
        slices = data_lib.read_dataset(data, format=format, progress=progress)
        split = {"all": list(range(len(slices)))}
        arrays = {"all": data_lib.load_arrays(slices, image_size, channels)}
        output = Path(output) if output else Path(model_path).parent / "eval"
    rule = mask_rule(model, threshold, postprocess)
    if tta is None:
        tta = default_tta(model)
    output.mkdir(parents=True, exist_ok=True)

    results, rows = {}, []
    for name, (images, masks) in arrays.items():
        chosen = [slices[i] for i in split[name]]
        metrics, per_image, truth, pred = evaluate_split(
            model, chosen, images, masks, rule, resolution, tta, min_size, progress,
            f"{name} split")
        results[name] = metrics
        dice = per_image["dice"]
        share = tumour_share(truth)
        for s, d, i, a, f, c, g in zip(chosen, dice, per_image["iou"], per_image["accuracy"],
                                       share, per_image["tumour_contrast"],
                                       per_image["best_guess"], strict=True):
            rows.append({"split": name, "id": s.id, "patient_id": s.patient_id or "",
                         "dice": f"{d:.6f}", "iou": f"{i:.6f}", "accuracy": f"{a:.6f}",
                         "tumour_share": f"{f:.6f}",
                         "tumour_contrast": "" if c is None else f"{c:.4f}",
                         "best_guess": int(g)})
        order = np.argsort(dice)
        picks = [order[-1], order[len(order) // 2], order[0]]
        shown = (images[picks] if resolution == "model"
                 else [preprocess_image(chosen[i].image, None, 1) for i in picks])
        viz.plot_examples(shown, [truth[i] for i in picks], [pred[i] for i in picks],
                          [f"{label} {chosen[i].id} Dice {dice[i]:.3f}"
                           for label, i in zip(("best", "median", "worst"), picks, strict=True)],
                          output / f"examples_{name}.png")
        viz.plot_dice_histogram(dice, output / f"dice_hist_{name}.png", title=f"{name} split")
        viz.plot_dice_by_size(metrics["by_size"], output / f"dice_by_size_{name}.png",
                              title=f"{name} split")
        if save_masks:
            for s, m in zip(chosen, pred, strict=True):
                write_png(output / "masks" / name / f"{s.id}.png", m * 255)
        log(f"{name}: {len(truth)} images at {resolution} resolution, threshold "
            f"{rule.threshold:.2f}{', flip TTA' if tta else ''}, {rule.describe()}"
            + (f" ({metrics['best_guesses']} best guesses)" if rule.fallback else "") + ": Dice "
            f"{metrics['dice']['mean']:.4f}±{metrics['dice']['std']:.4f} "
            f"(median {metrics['dice_median']:.4f}, pooled {metrics['dice_global']:.4f}, misses "
            f"{100 * metrics['miss_rate']:.1f}%: {_miss_words(metrics['misses'])}), IoU "
            f"{metrics['iou']['mean']:.4f}, accuracy {metrics['accuracy']['mean']:.4f}")

    write_text_atomic(output / "metrics.json", json.dumps(results, indent=2))
    table = table1_markdown(results)
    write_text_atomic(output / "table1.md", table)
    _write_csv(output / "per_image.csv", rows)
    log("\n" + table)
    figures = [f"{kind}_{name}.png" for name in results
               for kind in ("examples", "dice_hist", "dice_by_size")]
    log(f"wrote {output}/: metrics.json, table1.md, per_image.csv, " + ", ".join(figures)
        + (", masks/" if save_masks else ""))
    return results


def calibrate_run(run_dir: str | os.PathLike, log=print) -> tuple[PostProcess, bool]:
    """:func:`calibrate_model` of a run's ``model.keras`` on its validation split: the
    threshold, whether flip TTA is used and the post-processing, all stored in the file."""
    run_dir = Path(run_dir)
    cfg, record = _run_config(run_dir)
    cfg = cfg.replace(data=record.get("data_source") or cfg.data)
    slices, split, arrays = load_split_data(cfg, run_dir)
    return calibrate_model(run_dir / "model.keras", [slices[i] for i in split["val"]],
                           *arrays["val"], image_size=cfg.image_size, log=log)


def _run_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    """The configuration a run was trained with (not resuming) and its whole record."""
    record = json.loads(_read(run_dir / "config.json"))
    return run_config(run_dir).replace(resume=False), record


def _read(path: Path) -> str:
    if not path.exists():
        raise data_lib.DataError(f"{path}: not found (is this a run directory?)")
    return path.read_text()


def _write_csv(path: Path, rows: list[dict]) -> None:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


def _miss_words(kinds: dict[str, float]) -> str:
    words = {"nothing": "nothing predicted", "elsewhere": "predicted elsewhere",
             "false_alarm": "false alarms"}
    return ", ".join(f"{words[k]} {100 * v:.1f}%" for k, v in kinds.items()
                     if v or k != "false_alarm")


def _fmt(ms: dict | tuple | None) -> str:
    if ms is None:
        return "–"
    mean, std = (ms["mean"], ms["std"]) if isinstance(ms, dict) else ms
    return f"{mean:.3f}±{std:.3f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(share: float | None, digits: int = 0) -> str:
    return "–" if share is None else f"{100 * share:.{digits}f}%"


def _postprocess_words(results: dict) -> str:
    """``", then largest region kept, … (threshold alone: all per-image 0.754, …)"``, or ``""``
    for masks made by the threshold alone."""
    first = next(iter(results.values()), {})
    rule = PostProcess(keep_largest=first.get("keep_largest", False),
                       fallback=first.get("fallback", 0.0))
    if rule == PostProcess():
        return ""
    alone = "; ".join(f"{split} per-image {m['threshold_only']['dice']:.3f}, pooled "
                      f"{m['threshold_only']['dice_global']:.3f}, misses "
                      f"{_pct(m['threshold_only']['miss_rate'], 1)}"
                      for split, m in results.items() if "threshold_only" in m)
    guesses = "; ".join(f"{split} {m['best_guesses']} of {m.get('n_images', '?')}"
                        for split, m in results.items() if "best_guesses" in m)
    return (f", then {rule.describe()}" + (f" (threshold alone: {alone})" if alone else "")
            + (f". Best guesses (no pixel reached the threshold): {guesses}"
               if rule.fallback and guesses else ""))


def _bins_table(results: dict, key: str, heading: str) -> list[str]:
    """Markdown lines of a binned Dice table (``by_size``, ``by_contrast``): a row per split,
    a cell per bin with its mean Dice, count and misses; none when no split has ``key``."""
    first = next((m for m in results.values() if key in m), None)
    if first is None:
        return []
    lines = ["", f"### {heading}", "", "| Dataset | " + " | ".join(first[key]) + " |",
             "|---|" + "---|" * len(first[key])]
    for split, m in results.items():
        cells = [f"{_num(b['dice'])} (n={b['n']}, misses {_pct(b['miss_rate'])})"
                 for b in m[key].values()]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return lines


def table1_markdown(results: dict, title: str = "Table 1") -> str:
    """Markdown laid out like the paper's Table 1, its numbers in adjacent columns; then, when
    the results have them, Dice by tumour size and the post-processing steps."""
    first = next(iter(results.values()), {})
    how = ""
    if "resolution" in first:
        how = (f" Scored at {first['resolution']} resolution"
               + (" (each slice at its own size)" if first["resolution"] == "native" else "")
               + f", threshold {first.get('threshold', 0.5):.2f}"
               + (", flip TTA" if first.get("tta") else "") + _postprocess_words(results) + ".")
    lines = [
        f"## {title}: Dice, IoU and accuracy",
        "",
        "Per-image mean±std; pooled = sums over the split (what the paper reports)." + how,
        "",
        "| Dataset | Dice | IoU | Accuracy | Dice (pooled) | Dice median | misses (Dice<0.1) "
        "| Paper Dice | Paper IoU | Paper Accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split, m in results.items():
        paper = PAPER_TABLE1.get(split, {})
        pooled = m.get("dice_global")
        pooled_s = f"{pooled:.3f}" if isinstance(pooled, float) else _fmt(pooled)
        miss = m.get("miss_rate")
        lines.append(
            f"| {split} (n={m.get('n_images', '?')}) | {_fmt(m['dice'])} | {_fmt(m['iou'])} "
            f"| {_fmt(m['accuracy'])} | {pooled_s} | {_num(m.get('dice_median'))} "
            f"| {_pct(miss, 1)} | {_fmt(paper.get('dice'))} "
            f"| {_fmt(paper.get('iou'))} | {_fmt(paper.get('accuracy'))} |"
        )
    lines += _bins_table(results, "by_size", "Dice by tumour size (share of the slice)")
    lines += _bins_table(results, "by_contrast", "Dice by tumour contrast (mean grey level "
                         "inside the mask over a ring around it; under 1: darker than its "
                         "surroundings)")
    if any("postprocess" in m for m in results.values()):
        lines += ["", "### Post-processing (cumulative steps): per-image Dice (pooled)", "",
                  "| Dataset | " + " | ".join(first["postprocess"]) + " |",
                  "|---|" + "---|" * len(first["postprocess"])]
        for split, m in results.items():
            cells = [f"{v['dice']:.3f} ({v['dice_global']:.3f})"
                     for v in m["postprocess"].values()]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


#: Single-number fields of a split's metrics that :func:`aggregate_runs` carries (mean ± std
#: across runs) when every run's ``metrics.json`` has them (older records lack them);
#: ``dice_global`` is in every record and always carried.
AGGREGATED_SCALARS = ("dice_median", "miss_rate", "best_guesses")


def aggregate_runs(run_dirs: Sequence[str | os.PathLike]) -> dict:
    """Mean ± std across runs of each run's per-image means of Dice, IoU and accuracy, of its
    pooled Dice, and of :data:`AGGREGATED_SCALARS` that every run has (reads each
    ``metrics.json``)."""
    per_run = [json.loads(_read(Path(d) / "metrics.json")) for d in run_dirs]
    splits = [s for s in per_run[0] if all(s in r for r in per_run)]
    out = {}
    for split in splits:
        out[split] = {key: _mean_std([r[split][key]["mean"] for r in per_run])
                      for key in ("dice", "iou", "accuracy")}
        out[split]["dice_global"] = _mean_std([r[split]["dice_global"] for r in per_run])
        for key in AGGREGATED_SCALARS:
            if all(key in r[split] for r in per_run):
                out[split][key] = _mean_std([r[split][key] for r in per_run])
        out[split]["n_runs"] = len(per_run)
        out[split]["n_images"] = per_run[0][split]["n_images"]
    return out
