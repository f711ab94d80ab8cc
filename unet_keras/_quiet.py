"""Hide TensorFlow's unsilenceable C++ start-up lines (they go to file descriptor 2)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def quiet_stderr(fn: Callable[[], T]) -> T:
    """Run ``fn`` with file descriptor 2 pointed at ``/dev/null`` (unless
    ``UNET_KERAS_TF_LOGS=1``); Python exceptions still propagate normally."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if os.environ.get("UNET_KERAS_TF_LOGS") == "1":
        return fn()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        return fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
