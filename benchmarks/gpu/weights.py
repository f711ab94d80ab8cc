"""A trained U-Net's weights as bfloat16 shards small enough to come back from the GPU machine.

The GPU machine returns at most 8 files of 16 MiB (64 MiB in all). The paper's model in float32
is 124 MB; in bfloat16 it is 59.2 MiB, which fits as 4 shards. :func:`save_shards` writes

* ``weights-00.bin`` ... : the model's weights (``model.weights`` order, both trainable and
  batch-norm statistics) rounded to bfloat16 and concatenated, cut into files of at most
  ``max_bytes``;
* ``weights.json``: the ``ArchConfig``, and each weight's path, shape and offset.

:func:`load_shards` rebuilds the float32 model from them (``build_unet`` with Keras' batch
norm), so it can be saved as a ``.keras`` file and evaluated anywhere, TensorFlow included.
Rounding to bfloat16 keeps 8 bits of mantissa: predictions move by about 1e-3, which the
measured Dice barely notices (the rehearsal test bounds it).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import ml_dtypes
import numpy as np

from unet_keras.config import ArchConfig
from unet_keras.model import build_unet

MAX_SHARD_BYTES = 16 * 2**20 - 4096


def save_shards(model: keras.Model, arch: ArchConfig, folder: str | Path,
                max_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Write ``model``'s weights as bfloat16 shards plus ``weights.json``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index, chunks, offset = [], [], 0
    for weight in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(weight), np.float32)
        raw = value.astype(ml_dtypes.bfloat16).view(np.uint16).tobytes()
        index.append({"path": weight.path, "shape": list(value.shape), "offset": offset})
        chunks.append(raw)
        offset += len(raw)
    blob = b"".join(chunks)
    paths = []
    for i, start in enumerate(range(0, len(blob), max_bytes)):
        path = folder / f"weights-{i:02d}.bin"
        path.write_bytes(blob[start:start + max_bytes])
        paths.append(path)
    meta = {"arch": arch.to_dict(), "dtype": "bfloat16", "bytes": len(blob),
            "shards": [p.name for p in paths], "weights": index}
    (folder / "weights.json").write_text(json.dumps(meta, indent=1))
    return [*paths, folder / "weights.json"]


def load_shards(folder: str | Path) -> keras.Model:
    """The float32 U-Net whose weights :func:`save_shards` wrote into ``folder``."""
    folder = Path(folder)
    meta = json.loads((folder / "weights.json").read_text())
    blob = b"".join((folder / name).read_bytes() for name in meta["shards"])
    if len(blob) != meta["bytes"]:
        raise ValueError(f"{folder}: the shards hold {len(blob)} bytes, weights.json says "
                         f"{meta['bytes']}: a shard is missing or truncated")
    model = build_unet(ArchConfig.from_dict(meta["arch"]))
    by_path = {w.path: w for w in model.weights}
    for entry in meta["weights"]:
        count = int(np.prod(entry["shape"]))
        raw = np.frombuffer(blob, np.uint16, count, entry["offset"])
        value = raw.view(ml_dtypes.bfloat16).astype(np.float32).reshape(entry["shape"])
        if entry["path"] not in by_path:
            raise ValueError(f"{folder}: weight {entry['path']} is not in the rebuilt model")
        by_path[entry["path"]].assign(value)
    return model
