"""What the app says about the served model: its run name, its training record, its model card.

The architecture is the one the model carries (:func:`unet_keras.model.arch_config_of`),
whether it came from a run directory or a bare ``.keras`` file; a run directory also has the
``config.json`` its training wrote, which is added when present, and may have a
``MODEL_CARD.md`` (what the model is for, its data, its limits), which the page links.

The page names a model by its run (the folder holding it), never by its path on the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_CARD = "MODEL_CARD.md"


def run_dir_of(source: Path) -> Path:
    """The run directory of a served model: ``source`` itself if it is a directory (a run),
    else the folder holding the ``.keras`` file."""
    return source if source.is_dir() else source.parent


def run_name(source: Path) -> str:
    """The run's folder name (``saved_models/sample/model.keras`` -> ``"sample"``): what the
    page shows instead of the absolute path."""
    return run_dir_of(source.resolve()).name


def run_record(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/config.json`` (a training run's record), or ``None`` if there is none."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable run record ({exc})") from None


def model_card_text(run_dir: Path) -> str | None:
    """The run's ``MODEL_CARD.md`` (Markdown text), or ``None`` if it has none; read on each
    call, so a card written while the server runs is served."""
    path = run_dir / MODEL_CARD
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
