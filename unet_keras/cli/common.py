"""What every CLI shares: bad input becomes one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

EXIT_BAD_INPUT = 2


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cli_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a ``main``: ValueError (incl. ``DataError``), OSError and KeyboardInterrupt end the
    program with a one-line message on stderr and a non-zero exit code, never a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except (ValueError, OSError) as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"error: {message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
