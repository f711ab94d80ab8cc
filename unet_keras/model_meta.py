"""What a saved model carries besides its layers: :class:`ModelMeta` inside the ``.keras`` file.

A ``.keras`` file is a zip archive (``config.json``, ``metadata.json``, ``model.weights.h5``);
Keras ignores other members. ``unet_keras.json`` is added beside them, so the model file alone
says how to use it:

* ``arch``: its :class:`~unet_keras.config.ArchConfig`;
* ``image_size``: the working resolution: slices are resized to ``image_size`` x
  ``image_size`` before the forward pass and the probabilities resized back (a size-free model
  trained on patches still has one: the scale of the slices its patches came from); ``None``
  for a model that takes slices at their own size;
* ``threshold``: the probability cut-off of its masks (chosen on the validation split, or
  0.5 by default);
* ``tta``: whether its probabilities are the mean over flips (test-time augmentation), chosen
  on the validation split with the threshold, or off by default; ``threshold`` was chosen for
  that way of predicting;
* ``keep_largest`` and ``fallback``: the post-processing of its masks (see
  :class:`~unet_keras.postprocess.PostProcess`: keep only the largest region; a best guess
  where nothing reaches the threshold, 0 = off), chosen on the validation split after the
  threshold and TTA, or none by default.

Files written before this existed have no such member; :func:`read_model_meta` then returns
``None`` and callers fall back to the model's input shape, 0.5 and no TTA. Files written before
``tta`` existed read as ``tta=False``, and those written before the post-processing fields
as no post-processing. A file with a field this version does not know (written by a newer
one) is refused with a message naming the field, not used without it.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

MEMBER = "unet_keras.json"
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ModelMeta:
    """How to use a saved U-Net (see the module docstring)."""

    arch: dict[str, Any]
    image_size: int | None = None
    threshold: float = DEFAULT_THRESHOLD
    threshold_source: str = "default"
    tta: bool = False
    tta_source: str = "default"
    keep_largest: bool = False
    fallback: float = 0.0
    postprocess_source: str = "default"

    def __post_init__(self) -> None:
        for name in ("tta", "keep_largest"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if (isinstance(self.fallback, bool) or not isinstance(self.fallback, (int, float))
                or not 0.0 <= self.fallback < 1.0):
            raise ValueError(f"fallback must be a probability in [0, 1), got {self.fallback!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if self.image_size is not None and int(self.image_size) < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size!r}")

    def replace(self, **changes: Any) -> ModelMeta:
        return ModelMeta(**{**asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_model_meta(path: str | os.PathLike, meta: ModelMeta) -> None:
    """Add (or replace) ``unet_keras.json`` in the ``.keras`` archive at ``path``.

    The archive is rewritten into a temporary file beside it and renamed into place, so a
    reader never sees a half-written model.
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-meta-{path.name}")
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for item in src.infolist():
                if item.filename != MEMBER:
                    dst.writestr(item, src.read(item.filename))
            dst.writestr(MEMBER, json.dumps(meta.to_dict(), indent=2))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_model_meta(path: str | os.PathLike) -> ModelMeta | None:
    """The :class:`ModelMeta` stored in a ``.keras`` file, or ``None`` when it has none."""
    try:
        with zipfile.ZipFile(path) as archive:
            if MEMBER not in archive.namelist():
                return None
            record = json.loads(archive.read(MEMBER))
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable model metadata ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: invalid model metadata in {MEMBER} (not a JSON object)")
    unknown = sorted(set(record) - {f.name for f in fields(ModelMeta)})
    if unknown:
        # a field this version cannot apply may change the masks: refuse rather than ignore it
        raise ValueError(f"{path}: model metadata fields {', '.join(unknown)} are unknown to "
                         f"this version of unet-keras (a newer version's, or a typo); if a "
                         f"newer version wrote the file, upgrade unet-keras to use it")
    try:
        return ModelMeta(**record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model metadata in {MEMBER} ({exc})") from None
