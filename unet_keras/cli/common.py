"""What every CLI shares: bad input becomes one line on stderr and exit code 2; ``--help``
texts that state each default once and read as plain text."""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Callable

from unet_keras._quiet import quiet_stderr

EXIT_BAD_INPUT = 2
#: Help of ``--tta/--no-tta`` (evaluate, predict, serve): its default is the model's own.
TTA_HELP = ("average the probabilities over flips (test-time augmentation: 3 forward passes); "
            "default: the model's own choice, made on its validation split together with the "
            "threshold (off for models that store none)")
def add_mask_options(parser: argparse.ArgumentParser) -> None:
    """``--tta/--no-tta`` and ``--postprocess/--no-postprocess`` (evaluate, predict, serve):
    both default to ``None``, the model's own choice."""
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help=TTA_HELP)
    parser.add_argument("--postprocess", action=argparse.BooleanOptionalAction, default=None,
                        help=POSTPROCESS_HELP)


#: Help of ``--postprocess/--no-postprocess`` (evaluate, predict, serve).
POSTPROCESS_HELP = ("apply the post-processing stored with the model (keep the largest region; a "
                    "best guess on slices where nothing reaches the threshold), chosen on its "
                    "validation split after the threshold and TTA; default: yes (models that "
                    "store none have none), also with --threshold; --no-postprocess: the "
                    "threshold alone")


class _StatedDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: X)`` to an option's help only where it says something: not when the
    help already states its default (it mentions "default"), and not for a default of
    ``None`` (an optional value left unset) or a ``store_true`` switch's ``False``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if (action.default is None or action.default is argparse.SUPPRESS
                or (action.default is False and action.const is True)  # store_true
                or "default" in help_text.lower()):
            return help_text
        return super()._get_help_string(action)


class HelpFormatter(_StatedDefaults, argparse.HelpFormatter):
    """Every CLI's ``--help``: prose re-wrapped to the terminal, defaults stated once."""


class RawDescriptionHelpFormatter(_StatedDefaults, argparse.RawDescriptionHelpFormatter):
    """:class:`HelpFormatter` keeping the description's own lines (usage examples)."""


def description(doc: str | None) -> str:
    """A module docstring as ``--help`` text, with reStructuredText's double back-ticks
    removed (the help shows --output where the docstring has it in back-ticks)."""
    return re.sub(r"``(.+?)``", r"\1", doc or "", flags=re.DOTALL).strip()


def quiet_tensorflow() -> None:
    """Initialise TensorFlow's devices with its C++ chatter ("failed call to cuInit" on a
    machine without GPU) hidden; call once a CLI knows it will run a model. Nothing to do
    under the JAX and PyTorch backends."""
    from unet_keras.backend import is_tensorflow

    if not is_tensorflow():
        return
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
