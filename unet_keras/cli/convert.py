"""``unet-convert``: Keras ``.keras`` <-> PyTorch ``.pt``, and a Keras-vs-PyTorch parity report.

    unet-convert saved_models/RUN/model.keras --to pt         # writes saved_models/RUN/model.pt
    unet-convert saved_models/RUN/model.pt --to keras -o back.keras
    unet-convert saved_models/RUN/model.keras --parity [--pt FILE] [--data DIR]

The parity report runs both models on the same slices (``--data``, else the bundled sample,
else synthetic noise) and prints the max/mean absolute difference of the probabilities and the
Dice between the two thresholded masks; it exits with 1 when the max difference exceeds
``--tolerance``. Needs the ``torch`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from unet_keras.cli.common import (
    RawDescriptionHelpFormatter,
    cli_errors,
    description,
    quiet_tensorflow,
)

SUFFIX = {"pt": ".pt", "keras": ".keras"}
SYNTHETIC_IMAGES = 4


def _resolve_input(model: str, suffix: str) -> Path:
    """The model file: ``model`` itself, or ``model<suffix>`` inside a run directory."""
    path = Path(model)
    if path.is_dir():
        path = path / f"model{suffix}"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix != suffix:
        raise ValueError(f"{path}: expected a {suffix} file, got {path.suffix or 'no suffix'!r}")
    return path


def _resolve_output(source: Path, output: str | None, suffix: str, force: bool) -> Path:
    out = Path(output) if output else source.with_suffix(suffix)
    if out.suffix != suffix:
        raise ValueError(f"{out}: the output must end in {suffix}")
    if out.exists() and not force:
        raise ValueError(f"{out}: already exists (pass --force to overwrite, or -o OUT)")
    return out


def _import_torch_mirror():
    try:
        from unet_keras import torch_mirror
    except ImportError as exc:
        raise ValueError(f"PyTorch is needed ({exc}); install it with "
                         "pip install 'unet-keras[torch]'") from None
    return torch_mirror


def _parity_images(config, data: str | None, limit: int | None) -> tuple[np.ndarray, str]:
    """NHWC float32 inputs for the parity report (sized for the model of ``config``) and a
    phrase saying where they come from."""
    from unet_keras.config import DEFAULT_IMAGE_SIZE
    from unet_keras.data import SAMPLE_DIR, load_arrays, read_dataset

    height, width, channels = config.input_shape
    image_size = height if height is not None and height == width else None
    source = Path(data) if data else SAMPLE_DIR
    if data or SAMPLE_DIR.is_dir():
        slices = read_dataset(source)[:limit]
        images, _ = load_arrays(slices, image_size, channels)
        what = f"{len(images)} slices of {source}"
    else:
        side = image_size or DEFAULT_IMAGE_SIZE
        rng = np.random.default_rng(0)
        images = rng.random((SYNTHETIC_IMAGES, side, side, channels), dtype=np.float32)
        what = f"{SYNTHETIC_IMAGES} synthetic noise images (no bundled sample found)"
    if images.shape[1] % config.size_multiple or images.shape[2] % config.size_multiple:
        raise ValueError(f"{source}: slices of {images.shape[1]}x{images.shape[2]} are not "
                         f"multiples of {config.size_multiple}; use a model with a fixed "
                         "input size")
    return images, what


def _parity(args: argparse.Namespace) -> int:
    source = _resolve_input(args.model, ".keras")
    pt_path = Path(args.pt) if args.pt else source.with_suffix(".pt")
    if args.pt and not pt_path.is_file():
        raise FileNotFoundError(f"{pt_path}: no such file")
    quiet_tensorflow()
    mirror = _import_torch_mirror()
    from unet_keras.inference import load_unet

    model = load_unet(source)
    if pt_path.is_file():
        module, origin = mirror.load_pt(pt_path), str(pt_path)
    else:
        module, origin = mirror.keras_to_torch(model), "converted in memory (no .pt found)"
    images, what = _parity_images(module.config, args.data, args.limit)
    report = mirror.parity_report(model, module, images, threshold=args.threshold)
    print(f"Keras:   {source}\nPyTorch: {origin}\ninputs:  {what}")
    print("\n".join(report.lines()))
    ok = report.max_abs_diff <= args.tolerance
    print(f"{'PASS' if ok else 'FAIL'}: max |diff| {'<=' if ok else '>'} {args.tolerance:g}")
    return 0 if ok else 1


def _convert(args: argparse.Namespace) -> int:
    source = _resolve_input(args.model, ".keras" if args.to == "pt" else ".pt")
    out = _resolve_output(source, args.output, SUFFIX[args.to], args.force)
    quiet_tensorflow()
    mirror = _import_torch_mirror()
    if args.to == "pt":
        from unet_keras.inference import load_unet

        mirror.save_pt(mirror.keras_to_torch(load_unet(source)), out)
    else:
        from unet_keras.inference import save_model

        save_model(mirror.torch_to_keras(mirror.load_pt(source)), out)
    print(f"{source} -> {out}")
    return 0


@cli_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="unet-convert", description=description(__doc__),
                                formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .keras or .pt file, or a run directory")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to", choices=sorted(SUFFIX), help="convert to this format")
    mode.add_argument("--parity", action="store_true",
                      help="compare the Keras model with its PyTorch twin")
    p.add_argument("-o", "--output", help="output file (default: beside MODEL, new suffix)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--pt", help="parity: the .pt to compare (default: MODEL with .pt suffix if "
                                "it exists, else converted in memory)")
    p.add_argument("--data", help="parity: dataset folder (default: the bundled sample)")
    p.add_argument("--limit", type=int, help="parity: use at most this many slices")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="parity: probability threshold of the masks")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="parity: largest accepted max |diff|")
    args = p.parse_args(argv)
    return _parity(args) if args.parity else _convert(args)


if __name__ == "__main__":
    sys.exit(main())
