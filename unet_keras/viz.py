"""Figures (matplotlib, headless Agg backend), saved as PNG atomically.

* :func:`plot_curves`: the paper's Figures 2-5, accuracy, IoU, Dice and loss, train vs val.
* :func:`plot_examples`: image / truth / prediction / overlay rows for chosen cases.
* :func:`plot_dice_histogram`: distribution of per-image Dice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from unet_keras.atomic import atomic_path  # noqa: E402

CURVES = (("accuracy", "Accuracy"), ("iou_coef", "IoU coefficient"),
          ("dice_coef", "Dice coefficient"), ("loss", "Loss"))


def encode_png(array: np.ndarray) -> bytes:
    """uint8 ``(H, W)`` grayscale or ``(H, W, 3)`` RGB -> PNG bytes."""
    import cv2

    a = np.asarray(array)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {a.shape}")
    return buf.tobytes()


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or RGB ``(H, W, 3)`` array as PNG, atomically."""
    data = encode_png(np.asarray(array, dtype=np.uint8))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_curves(history: Sequence[dict[str, float]], path: str | os.PathLike) -> None:
    """Four panels (accuracy, IoU, Dice, loss), train vs val, against epoch (1-based)."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    epochs = [int(r["epoch"]) + 1 for r in history]
    for ax, (key, title) in zip(axes, CURVES, strict=True):
        for prefix, label in (("", "train"), ("val_", "val")):
            values = [r.get(prefix + key, np.nan) for r in history]
            ax.plot(epochs, values, marker="o" if len(epochs) < 20 else None, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def overlay(image: np.ndarray, mask: np.ndarray, color=(1.0, 0.1, 0.1),
            alpha: float = 0.45) -> np.ndarray:
    """RGB float image ``(H, W, 3)`` in [0, 1] with ``mask`` (H, W; nonzero = tumor) tinted."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img[..., 0]
    rgb = np.repeat(img[..., None], 3, axis=-1)
    m = np.asarray(mask).reshape(img.shape) > 0
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, dtype=np.float32)
    return np.clip(rgb, 0.0, 1.0)


def _mask_note(mask: np.ndarray) -> str | None:
    """``"empty"`` for a mask without tumour, ``"all tumour (N%)"`` when over half is tumour."""
    share = float(np.mean(np.asarray(mask) > 0))
    if share == 0:
        return "empty"
    return f"all tumour ({100 * share:.0f}%)" if share > 0.5 else None


def plot_examples(images: np.ndarray, truths: np.ndarray, preds: np.ndarray,
                  titles: Sequence[str], path: str | os.PathLike) -> None:
    """One row per case: image, truth, prediction, overlay (truth green, prediction red).

    Shapes: images ``(N, H, W[, C])`` in [0, 1]; truths and preds ``(N, H, W[, 1])`` binary.
    """
    n = len(images)
    fig, axes = plt.subplots(n, 4, figsize=(12, 3 * n), squeeze=False)
    for row, (img, t, p, title) in enumerate(zip(images, truths, preds, titles, strict=True)):
        gray = np.asarray(img)[..., 0] if np.asarray(img).ndim == 3 else img
        t2, p2 = np.squeeze(t), np.squeeze(p)
        both = overlay(overlay(gray, t2, color=(0.1, 0.9, 0.1)), p2)
        for ax, pic, name in zip(axes[row], (gray, t2, p2, both),
                                 ("image", "truth", "prediction", "overlay"), strict=True):
            ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(f"{name}: {title}" if name == "image" else name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            note = _mask_note(pic) if name in ("truth", "prediction") else None
            if note:  # an empty or all-tumour mask is easy to misread as an image: say so
                ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center",
                        color="tab:red", fontsize=12, fontweight="bold",
                        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "tab:red"})
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:red" if note else "0.6")
                spine.set_linewidth(2 if note else 0.5)
    _save(fig, path)


def plot_dice_histogram(dice: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """Histogram of per-image Dice in [0, 1] with the mean marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(dice, bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white")
    ax.axvline(float(np.mean(dice)), color="tab:red", label=f"mean {np.mean(dice):.3f}")
    ax.set_xlabel("Dice per image")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def plot_dice_by_size(by_size: dict[str, dict], path: str | os.PathLike, title: str = "") -> None:
    """Bars of mean per-image Dice per tumour-size bin (``n`` and miss share on each bar), as
    in :func:`unet_keras.evaluation.dice_by_size`; empty bins are left out."""
    names = [k for k, v in by_size.items() if v["n"]]
    dice = [by_size[k]["dice"] for k in names]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(names, dice, color="tab:blue")
    for bar, k in zip(bars, names, strict=True):
        b = by_size[k]
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02,
                f"n={b['n']}\nmiss {100 * b['miss_rate']:.0f}%", ha="center", fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("tumour share of the slice")
    ax.set_ylabel("mean Dice per image")
    ax.set_title(title)
    _save(fig, path)


def plot_val_dice_vs_minutes(histories: dict[str, Sequence[dict[str, float]]],
                             path: str | os.PathLike) -> None:
    """Validation Dice (pooled, as logged) against training minutes, one line per run; each
    history needs the ``minutes`` column that budgeted runs log."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in histories.items():
        rows = [r for r in rows if "minutes" in r and "val_dice_coef" in r]
        ax.plot([r["minutes"] for r in rows], [r["val_dice_coef"] for r in rows], label=name)
    ax.set_xlabel("training minutes (wall clock, this CPU)")
    ax.set_ylabel("validation Dice (pooled)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
