"""Atomic file output: write to a temporary sibling, then ``os.replace`` it into place.

A run killed at any moment (``kill -9``) leaves either the previous file or the new one, never
a truncated file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder (same suffixes) and rename it to ``path``.

    The temporary name keeps the full suffix (``x.weights.h5`` -> ``.tmp-x.weights.h5``) so
    Keras' suffix checks still pass. On error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
