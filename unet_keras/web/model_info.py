"""What ``GET /api/model`` reports: the served model's architecture, read off its layers.

The layers are the truth about what is served, whether it came from a run directory (with its
``config.json``) or a bare ``.keras`` file. The run's training record is added when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras

from unet_keras.config import ArchConfig


def architecture_of(model: keras.Model) -> ArchConfig:
    """Recover the :class:`ArchConfig` of a model built by :func:`unet_keras.build_unet`.

    Raises ``ValueError`` if the model lacks the U-Net's named layers.
    """
    names = {layer.name for layer in model.layers}
    depth = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    needed = {"down1_conv1", "down1_bn1", f"up{depth}_transpose"}
    if depth == 0 or not needed <= names:
        raise ValueError(f"model {model.name!r} is not a unet_keras U-Net "
                         f"(missing layers {sorted(needed - names)})")
    bn = model.get_layer("down1_bn1")
    dropout = model.get_layer("bottleneck_dropout").rate if "bottleneck_dropout" in names else 0.0
    return ArchConfig(
        input_shape=tuple(model.input_shape[1:]),
        base_filters=model.get_layer("down1_conv1").filters,
        depth=depth,
        dropout=float(dropout),
        attention=f"up{depth}_att_psi" in names,
        transpose_kernel=model.get_layer(f"up{depth}_transpose").kernel_size[0],
        bn_momentum=float(bn.momentum),
        bn_epsilon=float(bn.epsilon),
    )


def run_record(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/config.json`` (a training run's record), or ``None`` if there is none."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable run record ({exc})") from None
