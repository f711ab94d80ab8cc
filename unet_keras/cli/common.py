"""What every CLI shares: bad input becomes one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from unet_keras._quiet import quiet_stderr

EXIT_BAD_INPUT = 2


def quiet_tensorflow() -> None:
    """Initialise TensorFlow's devices with its C++ chatter ("failed call to cuInit" on a
    machine without GPU) hidden; call once a CLI knows it will run a model."""
    import tensorflow as tf

    quiet_stderr(lambda: tf.config.list_physical_devices())


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
