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
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from unet_keras import data as data_lib
from unet_keras.atomic import write_text_atomic
from unet_keras.config import TrainConfig
from unet_keras.inference import load_model, predict_batch
from unet_keras.metrics import (
    accuracy_per_image,
    dice_global,
    dice_per_image,
    iou_global,
    iou_per_image,
)
from unet_keras.postprocess import PostProcess, cumulative_steps
from unet_keras.predict import write_png

#: The paper's Table 1 (Dice, IoU, accuracy as (mean, std)).
PAPER_TABLE1 = {
    "train": {"dice": (0.909, 0.005), "iou": (0.837, 0.004), "accuracy": (0.998, 0.001)},
    "val": {"dice": (0.853, 0.007), "iou": (0.747, 0.006), "accuracy": (0.997, 0.001)},
    "test": {"dice": (0.897, 0.004), "iou": (0.815, 0.003), "accuracy": (0.998, 0.001)},
}


def _mean_std(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def per_image_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """``{"dice", "iou", "accuracy"}``, each ``(N,)``, for binary ``(N, H, W)`` masks."""
    return {"dice": dice_per_image(truth, pred), "iou": iou_per_image(truth, pred),
            "accuracy": accuracy_per_image(truth, pred)}


def score_split(truth: np.ndarray, pred: np.ndarray,
                patients: Sequence[str | None] | None = None,
                per_image: dict[str, np.ndarray] | None = None) -> dict:
    """Table-1 numbers for one split. ``truth``/``pred``: binary ``(N, H, W)``;
    ``per_image``: :func:`per_image_scores` of them when already computed."""
    per_image = per_image if per_image is not None else per_image_scores(truth, pred)
    result = {
        **{key: _mean_std(values) for key, values in per_image.items()},
        "dice_global": dice_global(truth, pred),
        "iou_global": iou_global(truth, pred),
        "n_images": int(len(truth)),
    }
    if patients is not None and all(p is not None for p in patients):
        per_patient = []
        for pid in sorted(set(patients)):
            idx = [i for i, p in enumerate(patients) if p == pid]
            per_patient.append(dice_global(truth[idx], pred[idx]))
        result["dice_per_patient"] = {**_mean_std(per_patient), "n_patients": len(per_patient)}
    return result


def evaluate_split(model: keras.Model, images: np.ndarray, masks: np.ndarray,
                   patients: Sequence[str | None] | None = None, tta: bool = False,
                   min_size: int = 64) -> tuple[dict, dict[str, np.ndarray], np.ndarray,
                                                np.ndarray]:
    """Score one split with and without post-processing.

    Returns ``(metrics, per_image, truth, pred)``: ``metrics`` has the Table-1 numbers of the
    plain 0.5 threshold plus ``"postprocess"``, Dice (per-image mean and pooled) after each
    cumulative post-processing step; ``per_image`` is :func:`per_image_scores` of the plain
    threshold; ``truth`` and ``pred`` are the binary ``(N, H, W)`` uint8 masks.
    """
    truth = (masks[..., 0] >= 0.5).astype(np.uint8)
    probs = predict_batch(model, images, tta=tta)
    pred = PostProcess().apply(probs)
    per_image = per_image_scores(truth, pred)
    metrics = score_split(truth, pred, patients, per_image)
    metrics["postprocess"] = {}
    for name, step in cumulative_steps(min_size).items():
        refined = pred if step == PostProcess() else step.apply(probs)
        metrics["postprocess"][name] = {"dice": float(dice_per_image(truth, refined).mean()),
                                        "dice_global": dice_global(truth, refined)}
    metrics["tta"] = tta
    return metrics, per_image, truth, pred


def _model_size(model: keras.Model, fallback: int) -> tuple[int, int]:
    _, h, _, c = model.input_shape
    return (h if h is not None else fallback), c


def evaluate(model_path: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
             data: str | None = None, format: str = "auto", output: str | os.PathLike | None = None,
             tta: bool = False, image_size: int = 256, save_masks: bool = False,
             min_size: int = 64, log=print) -> dict:
    """Evaluate a run (its config and split) or a model on a data folder (split ``all``).

    Writes into ``output`` (default: the run dir, or ``<model dir>/eval``): ``metrics.json``,
    ``table1.md``, ``per_image.csv``, ``examples_<split>.png`` (best, median, worst),
    ``dice_hist_<split>.png`` and, with ``save_masks``, ``masks/<split>/<id>.png`` (0/255 at
    the evaluated resolution). Returns the metrics dict.
    """
    from unet_keras import viz

    if run_dir is not None:
        run_dir = Path(run_dir)
        record = json.loads(_read(run_dir / "config.json"))
        cfg = TrainConfig.from_dict({**record["train"], "resume": False})
        # A run trained on a TFRecord export records the dataset the export was made from.
        data = data or record.get("data_source")
        if data is not None:
            cfg = TrainConfig.from_dict({**cfg.to_dict(), "data": data, "format": format})
        model_path = Path(model_path) if model_path else run_dir / "model.keras"
        model = load_model(model_path)
        slices, split, arrays = _run_split(cfg, run_dir)
        output = Path(output) if output else run_dir
    else:
        if model_path is None or data is None:
            raise ValueError("give a run directory, or both --model and --data")
        model = load_model(Path(model_path))
        size, channels = _model_size(model, image_size)
        slices = data_lib.read_dataset(data, format=format)
        split = {"all": list(range(len(slices)))}
        arrays = {"all": data_lib.load_arrays(slices, size, channels)}
        output = Path(output) if output else Path(model_path).parent / "eval"
    output.mkdir(parents=True, exist_ok=True)

    results, rows = {}, []
    for name, (images, masks) in arrays.items():
        chosen = [slices[i] for i in split[name]]
        patients = [s.patient_id for s in chosen]
        metrics, per_image, truth, pred = evaluate_split(model, images, masks, patients, tta,
                                                         min_size)
        results[name] = metrics
        dice = per_image["dice"]
        for s, d, i, a in zip(chosen, dice, per_image["iou"], per_image["accuracy"],
                              strict=True):
            rows.append({"split": name, "id": s.id, "patient_id": s.patient_id or "",
                         "dice": f"{d:.6f}", "iou": f"{i:.6f}", "accuracy": f"{a:.6f}"})
        order = np.argsort(dice)
        picks = [order[-1], order[len(order) // 2], order[0]]
        viz.plot_examples(images[picks], truth[picks], pred[picks],
                          [f"{label} {chosen[i].id} Dice {dice[i]:.3f}"
                           for label, i in zip(("best", "median", "worst"), picks, strict=True)],
                          output / f"examples_{name}.png")
        viz.plot_dice_histogram(dice, output / f"dice_hist_{name}.png", title=f"{name} split")
        if save_masks:
            for s, m in zip(chosen, pred, strict=True):
                write_png(output / "masks" / name / f"{s.id}.png", m * 255)
        log(f"{name}: {len(truth)} images, Dice {metrics['dice']['mean']:.4f}"
            f"±{metrics['dice']['std']:.4f} (pooled {metrics['dice_global']:.4f}), IoU "
            f"{metrics['iou']['mean']:.4f}, accuracy {metrics['accuracy']['mean']:.4f}")

    write_text_atomic(output / "metrics.json", json.dumps(results, indent=2))
    write_text_atomic(output / "table1.md", table1_markdown(results))
    _write_csv(output / "per_image.csv", rows)
    return results


def _run_split(cfg: TrainConfig, run_dir: Path):
    from unet_keras.training import load_split_data

    return load_split_data(cfg, run_dir)


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


def _fmt(ms: dict | tuple | None) -> str:
    if ms is None:
        return "–"
    mean, std = (ms["mean"], ms["std"]) if isinstance(ms, dict) else ms
    return f"{mean:.3f}±{std:.3f}"


def table1_markdown(results: dict, title: str = "Table 1") -> str:
    """Markdown table laid out like the paper's, with its numbers in adjacent columns."""
    lines = [
        f"## {title}: Dice, IoU and accuracy (per-image mean±std; pooled Dice in brackets)",
        "",
        "| Dataset | Dice | IoU | Accuracy | Dice (pooled) | Paper Dice | Paper IoU "
        "| Paper Accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, m in results.items():
        paper = PAPER_TABLE1.get(split, {})
        pooled = m.get("dice_global")
        pooled_s = f"{pooled:.3f}" if isinstance(pooled, float) else _fmt(pooled)
        lines.append(
            f"| {split} (n={m.get('n_images', '?')}) | {_fmt(m['dice'])} | {_fmt(m['iou'])} "
            f"| {_fmt(m['accuracy'])} | {pooled_s} | {_fmt(paper.get('dice'))} "
            f"| {_fmt(paper.get('iou'))} | {_fmt(paper.get('accuracy'))} |"
        )
    lines.append("")
    return "\n".join(lines)


def aggregate_runs(run_dirs: Sequence[str | os.PathLike]) -> dict:
    """Mean ± std across runs of each run's per-image means (reads each ``metrics.json``)."""
    per_run = [json.loads(_read(Path(d) / "metrics.json")) for d in run_dirs]
    splits = [s for s in per_run[0] if all(s in r for r in per_run)]
    out = {}
    for split in splits:
        out[split] = {key: _mean_std([r[split][key]["mean"] for r in per_run])
                      for key in ("dice", "iou", "accuracy")}
        out[split]["dice_global"] = _mean_std([r[split]["dice_global"] for r in per_run])
        out[split]["n_runs"] = len(per_run)
        out[split]["n_images"] = per_run[0][split]["n_images"]
    return out
