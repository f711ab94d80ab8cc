"""The training record ``GET /api/model`` reports beside the served model's architecture.

The architecture is read off the model's layers (:func:`unet_keras.model.arch_config_of`),
whether it came from a run directory or a bare ``.keras`` file; a run directory also has the
``config.json`` its training wrote, which is added when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_record(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/config.json`` (a training run's record), or ``None`` if there is none."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable run record ({exc})") from None
