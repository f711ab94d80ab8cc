"""What ``GET /api/model`` reports: the served model's architecture, read off its layers.

The layers are the truth about what is served, whether it came from a run directory (with its
``config.json``) or a bare ``.keras`` file. The run's training record is added when present.
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
