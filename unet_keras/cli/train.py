"""``python train.py`` / ``unet-train``: train the U-Net (see ``--help``).

Every flag can also come from a JSON file (``--config run.json``, keys = flag names with
underscores); flags given on the command line win. The resolved configuration is saved in
the run directory as ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing
from dataclasses import Field, fields
from typing import Any

from unet_keras.cli.common import HelpFormatter, cli_errors, description, quiet_tensorflow
from unet_keras.config import PRESETS, ArchConfig, TrainConfig, run_config


def _flag_fields() -> list[tuple[Field, type]]:
    """Every setting that is a flag, in ``--help`` order, with the dataclass that owns it: the
    run's fields, and the network's (:class:`ArchConfig`) in place of ``arch``."""
    out: list[tuple[Field, type]] = []
    for f in fields(TrainConfig):
        if f.name == "arch":
            out += [(a, ArchConfig) for a in fields(ArchConfig) if a.metadata.get("help")]
        elif f.metadata.get("help"):
            out.append((f, TrainConfig))
    return out


def _argparse_type(hint: Any) -> type:
    """``int``, ``float`` or ``str`` from a field's annotation (``X | None`` -> ``X``)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def build_parser(defaults: TrainConfig) -> argparse.ArgumentParser:
    """``train.py``'s parser: one flag per setting (:func:`_flag_fields`), its type, help and
    choices from the field, its default from ``defaults``."""
    parser = argparse.ArgumentParser(
        prog="train.py", formatter_class=HelpFormatter,
        description="Train the brain-tumor U-Net (Keras). "
                    + description(__doc__).split("\n\n", 1)[1])
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="a named recipe applied before --config and the flags: paper "
                             "(the defaults), cpu (the bundled model's recipe) or quickstart "
                             "(1,200 steps on the bundled sample, 2-3 minutes)")
    parser.add_argument("--config", help="JSON file with any of the options below")
    values = defaults.settings()
    hints = {cls: typing.get_type_hints(cls) for cls in (TrainConfig, ArchConfig)}
    for f, owner in _flag_fields():
        flag = "--" + f.name.replace("_", "-")
        default, help_text = values[f.name], f.metadata["help"]
        if hints[owner][f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
            continue
        allowed = f.metadata["choices"]() if f.metadata.get("choices") is not None else None
        if allowed:
            help_text += ": " + "; ".join(f"{name} = {what}" for name, what in allowed.items())
        parser.add_argument(flag, type=_argparse_type(hints[owner][f.name]), default=default,
                            choices=tuple(allowed) if allowed else None, help=help_text)
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (by default: Keras' bar with ETA on a terminal, "
                             "one line per epoch when the output goes to a file or pipe)")
    return parser


def resolve_config(argv: list[str] | None) -> TrainConfig:
    """The run's configuration from the command line (see :func:`resolve`)."""
    return resolve(argv)[0]


def resolve(argv: list[str] | None) -> tuple[TrainConfig, bool]:
    """``(config, quiet)``: the configuration from defaults <- ``--preset`` <- ``--config``
    JSON <- command-line flags, and whether ``--quiet`` was given. With ``--resume`` the run's
    own ``config.json`` (read once, here) takes the place of the defaults and the preset, and
    what ``--config`` and the flags change goes through :meth:`TrainConfig.resumed`, which
    keeps the run's network."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--preset", choices=sorted(PRESETS))
    pre.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False)
    pre.add_argument("--output")
    known, _ = pre.parse_known_args(argv)
    saved = None
    base = TrainConfig()
    if known.resume:
        if known.output is None:
            raise ValueError("--resume needs --output (the run directory to continue)")
        if known.preset:
            raise ValueError("--preset starts a new run; --resume continues one with its own "
                             "settings (give only the flags to change)")
        base = saved = run_config(known.output)
    elif known.preset:
        base = base.replace(**PRESETS[known.preset])
    if known.config:
        try:
            overrides = json.loads(open(known.config).read())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{known.config}: not a readable JSON config ({exc})") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"{known.config}: a JSON config is an object of settings")
        nested = dict(overrides.pop("arch", None) or {})
        nested.pop("input_shape", None)  # derived from image_size, patch_size, channels
        base = base.replace(**{**nested, **overrides})
    args = vars(build_parser(base).parse_args(argv))
    args.pop("config")
    args.pop("preset")
    quiet = args.pop("quiet")
    if saved is not None:
        before = saved.settings()
        changes = {k: v for k, v in args.items() if v != before[k]}
        return saved.resumed(known.output, **changes), quiet
    if args["output"] is None:
        if args["resume"]:
            raise ValueError("--resume needs --output (the run directory to continue)")
        args["output"] = time.strftime("saved_models/run-%Y%m%d-%H%M%S")
    return TrainConfig.from_dict(args), quiet


@cli_errors
def main(argv: list[str] | None = None) -> int:
    cfg, quiet = resolve(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow()
    from unet_keras.training import train

    result = train(cfg, quiet=quiet)
    print(f"done: {result.run_dir} (best {result.monitor} {result.best_value:.4f} at epoch "
          f"{result.best_epoch + 1}); evaluate with: python evaluate.py {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
