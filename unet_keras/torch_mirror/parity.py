"""Keras vs PyTorch on the same inputs: how far apart are the probabilities and the masks?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np
import torch

from unet_keras.torch_mirror.network import TorchUNet


@dataclass(frozen=True)
class ParityReport:
    """Agreement of two models' outputs over ``n_images`` images of ``height x width``.

    Attributes:
        max_abs_diff: largest ``|p_keras - p_torch|`` over all pixels (probability units).
        mean_abs_diff: mean of ``|p_keras - p_torch|``.
        dice: Dice between the two thresholded masks, pooled over all pixels (1.0 when both
            masks are empty everywhere).
        pixel_agreement: fraction of pixels whose thresholded labels agree.
        threshold: probability threshold of the masks.
    """

    n_images: int
    height: int
    width: int
    max_abs_diff: float
    mean_abs_diff: float
    dice: float
    pixel_agreement: float
    threshold: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary, one measure per line."""
        return [
            f"images:           {self.n_images} x {self.height}x{self.width}",
            f"max |diff|:       {self.max_abs_diff:.3e}",
            f"mean |diff|:      {self.mean_abs_diff:.3e}",
            f"Dice (masks):     {self.dice:.6f}  (threshold {self.threshold})",
            f"pixel agreement:  {100 * self.pixel_agreement:.4f}%",
        ]


def predict_both(keras_model: keras.Model, module: TorchUNet, images: np.ndarray,
                 batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(N, H, W)`` float32 of both models for NHWC float32 ``images``.

    Both run in inference mode (BatchNorm moving statistics, no dropout); ``module`` is put in
    ``eval()`` and runs on the device of its parameters.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
    p_keras = keras_model.predict(x, batch_size=batch_size, verbose=0)[..., 0]
    module.eval()
    device = next(module.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start:start + batch_size]).permute(0, 3, 1, 2)
            out.append(module(batch.to(device))[:, 0].cpu().numpy())
    return p_keras.astype(np.float32), np.concatenate(out).astype(np.float32)


def compare_probabilities(p_a: np.ndarray, p_b: np.ndarray, threshold: float = 0.5
                          ) -> ParityReport:
    """:class:`ParityReport` of two probability stacks of equal shape ``(N, H, W)``."""
    if p_a.shape != p_b.shape or p_a.ndim != 3:
        raise ValueError(f"need two (N, H, W) stacks of one shape, got {p_a.shape}, {p_b.shape}")
    diff = np.abs(p_a.astype(np.float64) - p_b.astype(np.float64))
    m_a, m_b = p_a >= threshold, p_b >= threshold
    total = int(m_a.sum()) + int(m_b.sum())
    dice = 1.0 if total == 0 else 2.0 * int(np.logical_and(m_a, m_b).sum()) / total
    return ParityReport(
        n_images=p_a.shape[0], height=p_a.shape[1], width=p_a.shape[2],
        max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()), dice=dice,
        pixel_agreement=float((m_a == m_b).mean()), threshold=threshold,
    )


def parity_report(keras_model: keras.Model, module: TorchUNet, images: np.ndarray,
                  threshold: float = 0.5, batch_size: int = 4) -> ParityReport:
    """Run both models on NHWC ``images`` (in [0, 1], size accepted by the Keras model) and
    compare probabilities and thresholded masks."""
    p_keras, p_torch = predict_both(keras_model, module, images, batch_size)
    return compare_probabilities(p_keras, p_torch, threshold)
